//! `tocsin`: the operator CLI, a client of the collector's HTTP API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value as Json;
use tocsin_collector::cli::{self, ApiClient, CliError, query_string};

#[derive(Debug, Parser)]
#[command(name = "tocsin", version, about = "tocsin operator CLI")]
struct Cli {
    /// Collector API address.
    #[arg(
        long,
        global = true,
        env = "TOCSIN_API",
        default_value = "http://127.0.0.1:8080"
    )]
    api: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List incidents.
    Incidents {
        /// open | resolved | closed
        #[arg(long)]
        state: Option<String>,
    },
    /// List tickets.
    Tickets {
        /// new | acknowledged | in_progress | resolved | closed
        #[arg(long)]
        state: Option<String>,
        /// P1 | P2 | P3 | P4
        #[arg(long)]
        priority: Option<String>,
    },
    /// Show one ticket with its full record and log.
    Ticket {
        /// Ticket number (INC-000001) or id.
        id: String,
    },
    /// List nodes.
    Nodes,
}

async fn call(cli: &Cli) -> Result<String, CliError> {
    let client = ApiClient::new(&cli.api);
    let (path, render): (String, fn(&Json) -> String) = match &cli.command {
        Command::Incidents { state } => (
            format!(
                "/api/v1/incidents{}",
                query_string(&[("state", state.as_deref())])
            ),
            cli::incidents_table,
        ),
        Command::Tickets { state, priority } => (
            format!(
                "/api/v1/tickets{}",
                query_string(&[
                    ("state", state.as_deref()),
                    ("priority", priority.as_deref())
                ])
            ),
            cli::tickets_table,
        ),
        Command::Ticket { id } => (
            format!(
                "/api/v1/tickets/{}",
                form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            ),
            cli::ticket_detail,
        ),
        Command::Nodes => ("/api/v1/nodes".to_string(), cli::nodes_table),
    };
    let v = client.get(&path).await?;
    Ok(if cli.json {
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    } else {
        render(&v)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(call(&cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
