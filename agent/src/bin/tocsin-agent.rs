//! `tocsin-agent`: command line for the agent (run, once, check-config); the work is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tocsin_agent::config::DEFAULT_CONFIG_PATH;
use tocsin_agent::state::SeqStore;
use tocsin_agent::{AgentConfig, AgentError};

#[derive(Debug, Parser)]
#[command(
    name = "tocsin-agent",
    version,
    about = "tocsin agent: host health and checks over MQTT"
)]
struct Cli {
    /// Agent config file.
    #[arg(long, short, global = true, env = "TOCSIN_AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run until SIGTERM or SIGINT: one report per interval.
    Run,
    /// Collect once (host metrics and checks), print the report as JSON, exit.
    Once,
    /// Load and validate the config, then exit.
    CheckConfig,
}

/// Exit code for a missing or invalid config (and other usage errors, like clap's).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match AgentConfig::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            println!(
                "{}: ok (site {}, node {}, broker {}, interval {}, {} checks)",
                cli.config.display(),
                config.site,
                config.node,
                config.broker.url,
                tocsin_agent::config::format_duration(config.interval),
                config.checks.len()
            );
            ExitCode::SUCCESS
        }
        Command::Once => match runtime().map(|rt| rt.block_on(once(&config))) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) | Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            let result = runtime().and_then(|rt| {
                rt.block_on(tocsin_agent::run(config, shutdown_signal()))
                    .map_err(anyhow::Error::from)
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    match e.downcast_ref::<AgentError>() {
                        Some(AgentError::Config(_) | AgentError::PasswordFile { .. }) => {
                            ExitCode::from(EXIT_CONFIG)
                        }
                        None => ExitCode::FAILURE,
                    }
                }
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Collect one report and print it; `seq` is the one the next report would get (not saved).
async fn once(config: &AgentConfig) -> anyhow::Result<()> {
    let seq = SeqStore::new(&config.spool.dir).next_seq();
    let report = tocsin_agent::collect_once(config, seq).await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot install signal handlers; waiting for Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
