//! `tocsin-collector`: run the collector daemon, or the one-command quickstart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tocsin_collector::CollectorConfig;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // rumqttd logs ordinary disconnects (and its own shutdown) as errors.
                let default = if matches!(cli.command, Command::Quickstart { .. }) {
                    "warn,rumqttd=off"
                } else {
                    "info,rumqttd=warn,rumqttd::router::routing=off"
                };
                tracing_subscriber::EnvFilter::new(default)
            }),
        )
        .with_writer(std::io::stderr)
        .init();
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
            match runtime.block_on(tocsin_collector::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ tocsin_collector::StartError::Config(_)) => {
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
            let rules = match tocsin_collector::rules::load_rules_dir(&config.rules.dir) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = tocsin_collector::engine::Policy::load_dir(&config.rules.dir) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            println!(
                "config ok: {} rules from {}",
                rules.len(),
                config.rules.dir.display()
            );
            ExitCode::SUCCESS
        }
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
