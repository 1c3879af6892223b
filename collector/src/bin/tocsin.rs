//! `tocsin`: the operator CLI, a client of the collector's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value as Json, json};
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
    /// File holding the bearer token (operator token for changes, viewer token for reads).
    #[arg(long, global = true, env = "TOCSIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
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
        /// open | resolved | closed | merged
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one incident: root cause, symptoms, nodes affected, problem, alerts.
    Incident {
        /// Incident id.
        id: String,
    },
    /// List tickets.
    Tickets {
        /// new | acknowledged | in_progress | pending | resolved | closed
        #[arg(long)]
        state: Option<String>,
        /// P1 | P2 | P3 | P4
        #[arg(long)]
        priority: Option<String>,
        /// Assignment group.
        #[arg(long)]
        group: Option<String>,
        /// The person working on it.
        #[arg(long)]
        assignee: Option<String>,
        /// incident | request
        #[arg(long)]
        kind: Option<String>,
    },
    /// Show a ticket (`tocsin ticket INC-000001`), open one (`ticket new`) or act on one
    /// (`ticket ack INC-000001`, `ticket resolve …`).
    Ticket(TicketArgs),
    /// List the notification outbox (webhooks, e-mails, MQTT events) and its delivery state.
    Notifications {
        /// pending | delivered | failed
        #[arg(long)]
        state: Option<String>,
        /// Only those of this ticket (number or id).
        #[arg(long)]
        ticket: Option<String>,
    },
    /// List problem records (recurring incidents of one signature).
    Problems {
        /// open | known_error | resolved
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one problem with its incidents, or change it.
    Problem {
        /// Problem number (PRB-000001) or id.
        id: String,
        #[command(subcommand)]
        action: Option<ProblemAction>,
    },
    /// Maintenance windows: alerts of matching nodes open no incidents while one lasts.
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// Rule files.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// List nodes.
    Nodes,
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "ACTION",
    override_usage = "tocsin ticket <ID>\n       tocsin ticket <ACTION> <ID> [OPTIONS]\n       tocsin ticket new --summary TEXT --reporter NAME [OPTIONS]"
)]
struct TicketArgs {
    /// Ticket number (INC-000001, REQ-000001) or id: show it with its full record and log.
    id: Option<String>,
    #[command(subcommand)]
    action: Option<tocsin_collector::cli::TicketCommand>,
}

#[derive(Debug, Subcommand)]
enum ProblemAction {
    /// The cause is known: record the workaround (tickets of new incidents carry it).
    KnownError {
        #[arg(long)]
        workaround: Option<String>,
    },
    /// The underlying cause is fixed.
    Resolve,
    /// Open it again.
    Reopen,
    /// Set the workaround only.
    Workaround { text: String },
}

#[derive(Debug, Subcommand)]
enum MaintenanceAction {
    /// List windows.
    List {
        /// Only windows not ended or cancelled.
        #[arg(long)]
        active: bool,
    },
    /// Add a window.
    Add {
        /// A name for it (e.g. "kernel patching").
        name: String,
        /// Nodes by name (glob, e.g. "web-*").
        #[arg(long)]
        node: Option<String>,
        /// Nodes by site (glob).
        #[arg(long)]
        site: Option<String>,
        /// Nodes by label, KEY=GLOB (repeatable).
        #[arg(long = "label", value_name = "KEY=GLOB")]
        labels: Vec<String>,
        /// How long it lasts, e.g. 2h.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// When it ends instead (RFC 3339).
        #[arg(long, conflicts_with = "duration")]
        until: Option<String>,
        /// Repeat every this long, e.g. 7d.
        #[arg(long)]
        every: Option<String>,
        /// When it starts (RFC 3339); default now.
        #[arg(long)]
        start: Option<String>,
        /// Why (kept with the window).
        #[arg(long)]
        reason: String,
    },
    /// End a window now.
    End { id: String },
}

#[derive(Debug, Subcommand)]
enum RulesAction {
    /// Re-read the rule files and policy.toml; on errors the old rules stay and each error is printed.
    Reload,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The body of `maintenance add`.
fn maintenance_body(action: &MaintenanceAction) -> Result<Json, CliError> {
    let MaintenanceAction::Add {
        name,
        node,
        site,
        labels,
        duration,
        until,
        every,
        start,
        reason,
    } = action
    else {
        return Ok(Json::Null);
    };
    let usage = |message: String| CliError::Usage(message);
    let mut m = Map::new();
    if let Some(n) = node {
        m.insert("node".into(), json!(n));
    }
    if let Some(s) = site {
        m.insert("site".into(), json!(s));
    }
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| usage(format!("--label {l:?}: use KEY=GLOB")))?;
        m.insert(format!("labels.{}", k.trim()), json!(v.trim()));
    }
    if m.is_empty() {
        return Err(usage(
            "name the nodes with --node, --site or --label (--node '*' for every node)".into(),
        ));
    }
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    body.insert("match".into(), Json::Object(m));
    body.insert("reason".into(), json!(reason));
    match (duration, until) {
        (Some(d), _) => {
            body.insert("duration".into(), json!(d));
        }
        (None, Some(u)) => {
            body.insert("ends_at".into(), json!(u));
        }
        (None, None) => {
            return Err(usage(
                "give --for DURATION (e.g. 2h) or --until TIME".into(),
            ));
        }
    }
    if let Some(e) = every {
        body.insert("every".into(), json!(e));
    }
    if let Some(s) = start {
        body.insert("starts_at".into(), json!(s));
    }
    Ok(Json::Object(body))
}

async fn call(cli: &Cli, client: &ApiClient) -> Result<String, CliError> {
    type Render = fn(&Json) -> String;
    let (v, render): (Json, Render) = match &cli.command {
        Command::Incidents { state } => (
            client
                .get(&format!(
                    "/api/v1/incidents{}",
                    query_string(&[("state", state.as_deref())])
                ))
                .await?,
            cli::incidents_table,
        ),
        Command::Incident { id } => (
            client
                .get(&format!("/api/v1/incidents/{}", enc(id)))
                .await?,
            cli::incident_detail,
        ),
        Command::Tickets {
            state,
            priority,
            group,
            assignee,
            kind,
        } => (
            client
                .get(&format!(
                    "/api/v1/tickets{}",
                    query_string(&[
                        ("state", state.as_deref()),
                        ("priority", priority.as_deref()),
                        ("group", group.as_deref()),
                        ("assignee", assignee.as_deref()),
                        ("kind", kind.as_deref()),
                    ])
                ))
                .await?,
            cli::tickets_table,
        ),
        Command::Ticket(TicketArgs { id, action }) => (
            cli::ticket_command(client, id.as_deref(), action.as_ref()).await?,
            cli::ticket_detail,
        ),
        Command::Notifications { state, ticket } => (
            client
                .get(&format!(
                    "/api/v1/notifications{}",
                    query_string(&[("state", state.as_deref()), ("ticket", ticket.as_deref())])
                ))
                .await?,
            cli::notifications_table,
        ),
        Command::Problems { state } => (
            client
                .get(&format!(
                    "/api/v1/problems{}",
                    query_string(&[("state", state.as_deref())])
                ))
                .await?,
            cli::problems_table,
        ),
        Command::Problem { id, action } => {
            let path = format!("/api/v1/problems/{}", enc(id));
            let v = match action {
                None => client.get(&path).await?,
                Some(a) => {
                    let body = match a {
                        ProblemAction::KnownError { workaround } => match workaround {
                            Some(w) => json!({"state": "known_error", "workaround": w}),
                            None => json!({"state": "known_error"}),
                        },
                        ProblemAction::Resolve => json!({"state": "resolved"}),
                        ProblemAction::Reopen => json!({"state": "open"}),
                        ProblemAction::Workaround { text } => json!({"workaround": text}),
                    };
                    client.post(&path, Some(&body)).await?
                }
            };
            (v, cli::problem_detail)
        }
        Command::Maintenance { action } => {
            let v = match action {
                MaintenanceAction::List { active } => {
                    client
                        .get(&format!(
                            "/api/v1/maintenance{}",
                            query_string(&[("active", active.then_some("true"))])
                        ))
                        .await?
                }
                MaintenanceAction::Add { .. } => {
                    let body = maintenance_body(action)?;
                    client.post("/api/v1/maintenance", Some(&body)).await?
                }
                MaintenanceAction::End { id } => {
                    client
                        .post(&format!("/api/v1/maintenance/{}/end", enc(id)), None)
                        .await?
                }
            };
            (v, cli::maintenance_table)
        }
        Command::Rules {
            action: RulesAction::Reload,
        } => (
            client.post("/api/v1/rules/reload", None).await?,
            cli::reload_result,
        ),
        Command::Nodes => (client.get("/api/v1/nodes").await?, cli::nodes_table),
    };
    Ok(if cli.json {
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    } else {
        render(&v)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let token = match cli::token_from(
        cli.token_file.as_deref(),
        std::env::var("TOCSIN_TOKEN").ok(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let actor = std::env::var("TOCSIN_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .ok();
    let client = ApiClient::new(&cli.api).with_token(token).with_actor(actor);
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
    match runtime.block_on(call(&cli, &client)) {
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
