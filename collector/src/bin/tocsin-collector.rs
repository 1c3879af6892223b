//! `tocsin-collector`: run the collector daemon, check rules, or the one-command quickstart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tocsin_agent::service;
use tocsin_collector::CollectorConfig;

/// mimalloc: every report is a few dozen small strings allocated on the ingest task and
/// freed on the engine's; glibc's malloc made that a third of the engine's time (BENCHMARKS.md).
/// The `system-allocator` feature leaves the C library's `malloc` in charge, so a heap
/// profiler that hooks it (jemalloc's `prof` through `LD_PRELOAD`, heaptrack) sees the Rust
/// side too.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "tocsin-collector",
    version,
    about = "tocsin collector: alerts -> incidents -> tickets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector.
    Run {
        /// Config file.
        #[arg(
            long,
            env = "TOCSIN_COLLECTOR_CONFIG",
            default_value = "/etc/tocsin/collector.toml"
        )]
        config: PathBuf,
    },
    /// Rule files: check them without starting anything.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Check a config file and its rules, print a summary, exit.
    CheckConfig {
        #[arg(
            long,
            env = "TOCSIN_COLLECTOR_CONFIG",
            default_value = "/etc/tocsin/collector.toml"
        )]
        config: PathBuf,
    },
    /// Embedded broker + collector + local agent + a failing demo check; prints the ticket it opens.
    Quickstart {
        /// Where data, rules and configs go (recreated).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Preferred MQTT port (a free one is used when taken).
        #[arg(long, default_value_t = 1883)]
        mqtt_port: u16,
        /// Preferred HTTP port (a free one is used when taken).
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
    },
    #[command(flatten)]
    Docs(tocsin_agent::cli_docs::DocsCommand),
}

#[derive(Debug, Subcommand)]
enum RulesAction {
    /// Check every rule file and policy.toml in DIR: prints each error as
    /// `<file>:<line>: ...` and exits 1, or prints a summary and exits 0.
    Check {
        /// Rules folder (`*.toml` rule files plus `policy.toml`).
        dir: PathBuf,
    },
}

/// Reload the rules on every SIGHUP, logging the outcome (the old rules stay on any error).
#[cfg(unix)]
fn reload_on_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    control: tocsin_collector::control::ControlHandle,
    status: String,
) {
    use tocsin_collector::control::ControlError;
    let mut hup = match hup {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload the rules through the API");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(dir = %control.rules_dir().display(), "SIGHUP: reloading the rules");
            service::reloading();
            let outcome = control.reload().await;
            // Ready again whatever the outcome: a failed reload keeps the old rules running.
            service::ready(&status);
            match outcome {
                Ok(r) => tracing::info!(
                    rules = r.rules,
                    files = r.files,
                    alerts_resolved = r.alerts_resolved,
                    "SIGHUP: rules reloaded"
                ),
                Err(ControlError::Rules(lines)) => {
                    for line in &lines {
                        tracing::error!("SIGHUP: {line}");
                    }
                    tracing::error!(
                        errors = lines.len(),
                        "SIGHUP: rules not reloaded; the old rules stay in force"
                    );
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: rules not reloaded"),
            }
        }
    });
}

async fn serve(config: CollectorConfig) -> Result<(), tocsin_collector::StartError> {
    // Listen before starting, so a SIGHUP sent as soon as the API answers is not fatal.
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let running = tocsin_collector::start(config).await?;
    let (host, port) = &running.mqtt_endpoint;
    let status = format!(
        "api http://{}, broker mqtt://{host}:{port}",
        running.http_addr
    );
    #[cfg(unix)]
    reload_on_sighup(hup, running.control.clone(), status.clone());
    // systemd (Type=notify): the store is open and migrated, the API listens, intake runs.
    service::ready(&status);
    running
        .serve_until(async {
            shutdown_signal().await;
            service::stopping();
        })
        .await
}

/// `rules check DIR`: every error line and exit 1, or the summary and exit 0.
fn rules_check(dir: &std::path::Path) -> ExitCode {
    match tocsin_collector::control::load_rules(dir) {
        Ok(loaded) => {
            println!("{} rules in {} files: ok", loaded.rules.len(), loaded.files);
            if loaded.policy_file {
                println!("{}: ok", dir.join("policy.toml").display());
            } else {
                println!(
                    "{}: absent, the default policy applies",
                    dir.join("policy.toml").display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} error(s)", errors.len());
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn load(config: &std::path::Path) -> Result<CollectorConfig, ExitCode> {
    CollectorConfig::load(config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Docs(docs) = &cli.command {
        return docs.run(Cli::command());
    }
    // rumqttd logs ordinary disconnects (and its own shutdown) as errors.
    tocsin_agent::logging::init(if matches!(cli.command, Command::Quickstart { .. }) {
        "warn,rumqttd=off"
    } else {
        "info,rumqttd=warn,rumqttd::router::routing=off"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Run { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(
                    e @ (tocsin_collector::StartError::Config(_)
                    | tocsin_collector::StartError::Rules(_)),
                ) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let loaded = match tocsin_collector::control::load_rules(&config.rules.dir) {
                Ok(l) => l,
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            for file in [
                &config.http.operator_token_file,
                &config.http.viewer_token_file,
            ]
            .into_iter()
            .flatten()
            {
                if let Err(e) = tocsin_collector::api::auth::read_token_file(file) {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            println!(
                "config ok: {} rules from {}",
                loaded.rules.len(),
                config.rules.dir.display()
            );
            ExitCode::SUCCESS
        }
        Command::Rules {
            action: RulesAction::Check { dir },
        } => rules_check(&dir),
        // Handled before the runtime started.
        Command::Docs(_) => ExitCode::SUCCESS,
        Command::Quickstart {
            data_dir,
            mqtt_port,
            http_port,
        } => {
            let mut opts = tocsin_collector::quickstart::Options {
                mqtt_port,
                http_port,
                ..Default::default()
            };
            if let Some(d) = data_dir {
                opts.data_dir = d;
            }
            match runtime.block_on(tocsin_collector::quickstart::run(opts, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
