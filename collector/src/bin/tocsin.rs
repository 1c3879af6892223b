//! `tocsin`: the operator CLI, a client of the collector's HTTP API.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::{Map, Value as Json, json};
use tocsin_collector::cli::config::{self, Overrides};
use tocsin_collector::cli::{self, ApiClient, CliError, GroupBy, Table, query_string};

#[derive(Debug, Parser)]
#[command(
    name = "tocsin",
    version,
    about = "tocsin operator CLI",
    after_help = cli::HELP_FOOTER
)]
struct Cli {
    /// Collector API address [env: TOCSIN_API; config: api; default: http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    api: Option<String>,
    /// File holding the bearer token (operator token for changes, viewer token for reads)
    /// [env: TOCSIN_TOKEN_FILE, or the token itself in TOCSIN_TOKEN; config: token_file, token].
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Your name in the collector's audit trail [env: TOCSIN_ACTOR; config: actor; default: $USER].
    #[arg(long, global = true, value_name = "NAME")]
    actor: Option<String>,
    /// The CLI config file [env: TOCSIN_CONFIG; default: $XDG_CONFIG_HOME/tocsin/cli.toml,
    /// else ~/.config/tocsin/cli.toml].
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Print a list or table as CSV (RFC 4180, with a header row; full values, timestamps in
    /// RFC 3339, durations in milliseconds).
    #[arg(long, global = true, conflicts_with = "json")]
    csv: bool,
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
    /// Service-desk figures of a period: volumes, MTTA, MTTR, SLA met, breaches and
    /// escalations, in total and by group, and what is open now.
    Analytics {
        /// Start of the period (RFC 3339, or YYYY-MM-DD for midnight UTC); default: 30 days
        /// before --to.
        #[arg(long)]
        from: Option<String>,
        /// End of the period, exclusive (RFC 3339 or YYYY-MM-DD); default: now.
        #[arg(long)]
        to: Option<String>,
        /// How to group the figures (default: priority).
        #[arg(long, value_enum)]
        by: Option<GroupBy>,
    },
    /// Run one read-only SQL SELECT against the store (tables, and the views v_ticket_sla,
    /// v_mtta_mttr, v_incidents_daily, v_top_problems, v_noisy_nodes, v_escalations).
    Query {
        /// The SELECT; `-` reads it from standard input.
        sql: String,
        /// At most this many rows (default 1000; the collector allows up to its
        /// `[analytics] query_max_rows`, 10000 unless set).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    #[command(flatten)]
    Docs(tocsin_agent::cli_docs::DocsCommand),
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

/// How an answer is shown: as text, and (for lists and tables) as CSV.
#[derive(Clone, Copy)]
struct Render {
    text: fn(&Json) -> String,
    csv: Option<fn(&Json) -> Table>,
    /// A note for stderr when the CSV alone goes to stdout.
    csv_warning: Option<fn(&Json) -> Option<String>>,
}

impl Render {
    fn detail(text: fn(&Json) -> String) -> Render {
        Render {
            text,
            csv: None,
            csv_warning: None,
        }
    }

    fn list(text: fn(&Json) -> String, csv: fn(&Json) -> Table) -> Render {
        Render {
            text,
            csv: Some(csv),
            csv_warning: None,
        }
    }
}

/// The rendering of each command (known before anything is sent, so `--csv` on a command
/// without a table is refused before it acts).
fn render_for(command: &Command) -> Render {
    match command {
        Command::Incidents { .. } => {
            Render::list(|v| cli::incidents_table(v).text(), cli::incidents_table)
        }
        Command::Tickets { .. } => {
            Render::list(|v| cli::tickets_table(v).text(), cli::tickets_table)
        }
        Command::Notifications { .. } => Render::list(
            |v| cli::notifications_table(v).text(),
            cli::notifications_table,
        ),
        Command::Problems { .. } => {
            Render::list(|v| cli::problems_table(v).text(), cli::problems_table)
        }
        Command::Maintenance { .. } => {
            Render::list(|v| cli::maintenance_table(v).text(), cli::maintenance_table)
        }
        Command::Nodes => Render::list(|v| cli::nodes_table(v).text(), cli::nodes_table),
        Command::Analytics { .. } => Render::list(cli::analytics_text, cli::analytics_csv_table),
        Command::Query { .. } => Render {
            text: cli::query_text,
            csv: Some(cli::query_table),
            csv_warning: Some(cli::query_csv_warning),
        },
        Command::Incident { .. } => Render::detail(cli::incident_detail),
        Command::Ticket(_) => Render::detail(cli::ticket_detail),
        Command::Problem { .. } => Render::detail(cli::problem_detail),
        Command::Rules { .. } => Render::detail(cli::reload_result),
        Command::Docs(_) => Render::detail(|_| String::new()),
    }
}

/// The SQL of `tocsin query`: the argument, or standard input for `-`.
fn sql_text(arg: &str) -> Result<String, CliError> {
    let sql = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Usage(format!("cannot read the query from stdin: {e}")))?;
        s
    } else {
        arg.to_string()
    };
    if sql.trim().is_empty() {
        return Err(CliError::Usage("the query is empty".into()));
    }
    Ok(sql)
}

/// Make the request(s) of the command; the API's JSON answer.
async fn call(cli: &Cli, client: &ApiClient) -> Result<Json, CliError> {
    Ok(match &cli.command {
        Command::Incidents { state } => {
            client
                .get(&format!(
                    "/api/v1/incidents{}",
                    query_string(&[("state", state.as_deref())])
                ))
                .await?
        }
        Command::Incident { id } => {
            client
                .get(&format!("/api/v1/incidents/{}", enc(id)))
                .await?
        }
        Command::Tickets {
            state,
            priority,
            group,
            assignee,
            kind,
        } => {
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
                .await?
        }
        Command::Ticket(TicketArgs { id, action }) => {
            cli::ticket_command(client, id.as_deref(), action.as_ref()).await?
        }
        Command::Notifications { state, ticket } => {
            client
                .get(&format!(
                    "/api/v1/notifications{}",
                    query_string(&[("state", state.as_deref()), ("ticket", ticket.as_deref())])
                ))
                .await?
        }
        Command::Problems { state } => {
            client
                .get(&format!(
                    "/api/v1/problems{}",
                    query_string(&[("state", state.as_deref())])
                ))
                .await?
        }
        Command::Problem { id, action } => {
            let path = format!("/api/v1/problems/{}", enc(id));
            match action {
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
            }
        }
        Command::Maintenance { action } => match action {
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
        },
        Command::Rules {
            action: RulesAction::Reload,
        } => client.post("/api/v1/rules/reload", None).await?,
        Command::Nodes => client.get("/api/v1/nodes").await?,
        Command::Analytics { from, to, by } => {
            client
                .get(&cli::analytics_path(from.as_deref(), to.as_deref(), *by))
                .await?
        }
        Command::Query { sql, limit } => cli::run_query(client, &sql_text(sql)?, *limit).await?,
        Command::Docs(_) => Json::Null,
    })
}

/// What to print: the answer on stdout, a note (if any) on stderr.
fn output(cli: &Cli, render: Render, v: &Json) -> (String, Option<String>) {
    if cli.json {
        return (
            serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
            None,
        );
    }
    match render.csv.filter(|_| cli.csv) {
        Some(csv) => (csv(v).csv(), render.csv_warning.and_then(|w| w(v))),
        None => ((render.text)(v), None),
    }
}

/// The settings from flags, environment, cli.toml and defaults; warnings for stderr.
fn settings(cli: &Cli) -> Result<(config::Settings, Vec<String>), CliError> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let explicit = cli
        .config
        .clone()
        .or_else(|| env("TOCSIN_CONFIG").map(PathBuf::from));
    let default = config::default_path(env("XDG_CONFIG_HOME").as_deref(), env("HOME").as_deref());
    let loaded = config::load(explicit.as_deref(), default.as_deref())?;
    let overrides = Overrides {
        api_flag: cli.api.clone(),
        token_file_flag: cli.token_file.clone(),
        actor_flag: cli.actor.clone(),
        ..Overrides::from_env()
    };
    let settings = config::resolve(&overrides, loaded.as_ref())?;
    let warnings = loaded
        .iter()
        .filter(|l| l.readable_by_others)
        .map(|l| {
            format!(
                "warning: {} holds a token and others may read it (chmod 600 it, or use token_file)",
                l.path.display()
            )
        })
        .collect();
    Ok((settings, warnings))
}

fn fail(e: &CliError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Docs(docs) = &cli.command {
        return docs.run(Cli::command());
    }
    let render = render_for(&cli.command);
    if cli.csv && render.csv.is_none() {
        return fail(&CliError::Usage(
            "--csv is for lists and tables (incidents, tickets, problems, nodes, notifications, \
             maintenance, analytics, query); use --json here"
                .into(),
        ));
    }
    let (settings, warnings) = match settings(&cli) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    for w in warnings {
        eprintln!("{w}");
    }
    let client = ApiClient::new(&settings.api)
        .with_token(settings.token)
        .with_actor(settings.actor);
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
        Ok(v) => {
            let (out, note) = output(&cli, render, &v);
            // A closed pipe (`| head`) is not an error worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush());
            if let Some(n) = note {
                eprintln!("{n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
