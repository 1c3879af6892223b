//! `tocsin-agent`: command line for the agent (run, once, check-config, print-config); the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tocsin_agent::config::DEFAULT_CONFIG_PATH;
use tocsin_agent::state::SeqStore;
use tocsin_agent::{AgentConfig, AgentError};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(
    name = "tocsin-agent",
    version,
    about = "tocsin agent: host health, service checks and network probes over MQTT"
)]
struct Cli {
    /// Agent config file; then every `*.toml` in `<dir>/<stem>.d/` (`/etc/tocsin/agent.d/`).
    #[arg(long, short, global = true, env = "TOCSIN_AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run until SIGTERM or SIGINT: one report per interval; SIGHUP reloads checks and devices.
    Run,
    /// Collect once (host metrics, checks, devices), print the reports as JSON, exit.
    Once,
    /// Validate the config, the broker credentials and TLS files, then exit.
    CheckConfig,
    /// Print the effective config (file and drop-ins merged, defaults filled in) as TOML.
    PrintConfig,
    #[command(flatten)]
    Docs(tocsin_agent::cli_docs::DocsCommand),
}

/// Exit code for a missing or invalid config (and other usage errors, like clap's).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Docs(docs) = &cli.command {
        return docs.run(Cli::command());
    }
    tocsin_agent::logging::init("info");
    let loaded = match AgentConfig::load_with_drop_ins(&cli.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let drop_ins = loaded.drop_in_summary();
    let config = loaded.config;
    match cli.command {
        Command::CheckConfig => match check_connection_settings(&config) {
            Ok(()) => {
                println!(
                    "{}: ok (site {}, node {}, broker {}, interval {}, {} checks, {} devices){drop_ins}",
                    cli.config.display(),
                    config.site,
                    config.node,
                    config.broker.url,
                    tocsin_agent::config::format_duration(config.interval),
                    config.checks.len(),
                    config.devices.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        // Handled before the config is read.
        Command::Docs(_) => ExitCode::SUCCESS,
        Command::PrintConfig => {
            if !loaded.drop_ins.is_empty() {
                let files: Vec<String> = loaded
                    .drop_ins
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                println!(
                    "# {} merged with {}",
                    cli.config.display(),
                    files.join(", ")
                );
            }
            print!("{}", config.to_toml_string());
            ExitCode::SUCCESS
        }
        Command::Once => {
            // `once` does not connect, but refuses exposed credentials like `run` does.
            if let Err(e) = tocsin_agent::run::refuse_exposed_credentials(&config) {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            match runtime().map(|rt| rt.block_on(once(&config))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) | Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            if !drop_ins.is_empty() {
                tracing::info!("{}{drop_ins}: configuration read", cli.config.display());
            }
            let path = cli.config.clone();
            let result = runtime().and_then(|rt| {
                rt.block_on(async move {
                    // Every handler is in place before READY=1 goes out: a `systemctl reload`
                    // or stop right after start must not meet the default action (exit).
                    let hup =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
                    let shutdown = shutdown_signal();
                    let (tx, rx) = mpsc::channel(1);
                    tokio::spawn(reload_on_sighup(hup, path, tx));
                    tocsin_agent::run::run_with_reload(config, shutdown, Some(rx)).await
                })
                .map_err(anyhow::Error::from)
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    match e.downcast_ref::<AgentError>() {
                        Some(
                            AgentError::Config(_)
                            | AgentError::PasswordFile { .. }
                            | AgentError::ExposedCredentials(_)
                            | AgentError::Tls { .. },
                        ) => ExitCode::from(EXIT_CONFIG),
                        None => ExitCode::FAILURE,
                    }
                }
            }
        }
    }
}

/// What `check-config` checks beyond the file: the password file and the TLS files load.
fn check_connection_settings(config: &AgentConfig) -> Result<(), AgentError> {
    let password = match &config.broker.password_file {
        Some(path) => Some(tocsin_agent::run::read_password(path)?),
        None => None,
    };
    tocsin_agent::publish::mqtt_options(config, password).map(|_| ())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Collect one host report and one report per device and print them; `seq` is the one the
/// next report would get (not saved).
async fn once(config: &AgentConfig) -> anyhow::Result<()> {
    let seqs = SeqStore::new(&config.spool.dir).load_sequences();
    let host = tocsin_agent::collect_once(config, seqs.agent);
    let devices = probe_devices_once(config, &seqs);
    let (host, devices) = tokio::join!(host, devices);
    if devices.is_empty() {
        println!("{}", serde_json::to_string_pretty(&host)?);
    } else {
        let mut all = vec![serde_json::to_value(&host)?];
        for d in devices {
            all.push(serde_json::to_value(&d)?);
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// Probe every device once, concurrently.
async fn probe_devices_once(
    config: &AgentConfig,
    seqs: &tocsin_agent::state::Sequences,
) -> Vec<tocsin_protocol::Report> {
    let pinger = tocsin_agent::devices::IcmpPinger::new();
    let mut set = tokio::task::JoinSet::new();
    for (i, device) in config.devices.iter().enumerate() {
        let seq = seqs.devices.get(&device.name).copied().unwrap_or(1);
        let mut prober = tocsin_agent::devices::DeviceProber::new(device.clone(), config)
            .with_icmp(pinger.clone());
        set.spawn(async move { (i, prober.probe(seq).await) });
    }
    let mut out: Vec<(usize, tocsin_protocol::Report)> = set.join_all().await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// On every SIGHUP: read the config file and its drop-ins again; a valid config is handed to
/// the run loop, an invalid one is reported and the running config stays.
async fn reload_on_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    path: PathBuf,
    tx: mpsc::Sender<AgentConfig>,
) {
    let Ok(mut hup) = hup else {
        tracing::warn!("cannot install the SIGHUP handler; reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(path = %path.display(), "SIGHUP received: reloading checks and devices");
        match AgentConfig::load(&path) {
            Ok(config) => {
                if tx.send(config).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
/// The handlers are installed when this is called (inside the runtime), not when the
/// future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
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
}
