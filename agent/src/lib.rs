//! tocsin agent: collects host health and checks, publishes them over MQTT to the collector.
//!
//! The data path is `collect` (host metrics via sysinfo) + `checks` (tcp, ...) -> a
//! [`tocsin_protocol::Report`] -> `publish` (MQTT, retained status with last will), with the
//! report sequence number kept by `state`. [`run`] ties them together; the `tocsin-agent`
//! binary and the collector's in-process `quickstart` both call it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tocsin_agent::AgentError> {
//! let mut config = tocsin_agent::AgentConfig::new("dc1", "web-01");
//! config.checks.push(tocsin_agent::CheckConfig::tcp("postgres", "127.0.0.1:5432"));
//! tocsin_agent::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod checks;
pub mod cli_docs;
pub mod collect;
pub mod config;
pub mod devices;
pub mod logging;
pub mod publish;
pub mod run;
pub mod service;
pub mod state;

use std::path::PathBuf;

pub use collect::{Collector, build_report, collect_once};
pub use config::{
    AgentConfig, BrokerConfig, BrokerUrl, CheckConfig, CheckKind, ConfigError, SpoolConfig,
};
pub use run::{birth_status, run};

/// This agent's version, as announced in the birth status and inventory.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: cannot read the broker password file: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A credentials file (password, TLS key) that every user may open.
    #[error(transparent)]
    ExposedCredentials(#[from] config::ExposedCredentials),
    /// A TLS file for the broker connection is missing or unusable.
    #[error("{}{problem}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_else(|| "broker TLS: ".to_string()))]
    Tls {
        file: Option<String>,
        problem: String,
    },
}
