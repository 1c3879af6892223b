//! `tocsin-collector quickstart`: embedded broker, collector, a local agent and a failing demo check.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::broadcast;

use crate::cli::{self, ApiClient};
use crate::config::CollectorConfig;

/// The default rule pack, built in so the quickstart works from any folder.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    ("checks.toml", include_str!("../../rules/checks.toml")),
    ("host.toml", include_str!("../../rules/host.toml")),
    ("node.toml", include_str!("../../rules/node.toml")),
    ("policy.toml", include_str!("../../rules/policy.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    #[error("local agent: {0}")]
    Agent(String),
    #[error("no ticket appeared within {0:?}; see the log above")]
    NoTicket(Duration),
    #[error(transparent)]
    Api(#[from] cli::CliError),
}

/// Quickstart settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the database, rules and agent state go (recreated on each run).
    pub data_dir: PathBuf,
    pub mqtt_port: u16,
    pub http_port: u16,
    /// How long to wait for the first ticket.
    pub wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_dir: std::env::temp_dir().join("tocsin-quickstart"),
            mqtt_port: 1883,
            http_port: 8080,
            wait: Duration::from_secs(60),
        }
    }
}

/// `port` on 127.0.0.1 when free, else a free one; says which.
fn pick_port(port: u16, what: &str) -> Result<u16, QuickstartError> {
    if TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Ok(port);
    }
    let free = free_port()?;
    println!("port {port} is taken; the {what} uses port {free} instead");
    Ok(free)
}

fn free_port() -> Result<u16, QuickstartError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| QuickstartError::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| QuickstartError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

fn node_name() -> String {
    let raw = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

fn write(path: PathBuf, text: &str) -> Result<(), QuickstartError> {
    std::fs::write(&path, text).map_err(|source| QuickstartError::Io { path, source })
}

/// Run the demo until `shutdown` resolves.
pub async fn run(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), QuickstartError> {
    let dir = &opts.data_dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| QuickstartError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).map_err(|source| QuickstartError::Io {
        path: rules_dir.clone(),
        source,
    })?;
    for (name, text) in DEFAULT_RULES {
        write(rules_dir.join(name), text)?;
    }
    let mqtt_port = pick_port(opts.mqtt_port, "embedded MQTT broker")?;
    let http_port = pick_port(opts.http_port, "HTTP API")?;
    let mut config = CollectorConfig::from_toml_str(std::path::Path::new("quickstart"), "")
        .map_err(|e| QuickstartError::Agent(e.to_string()))?;
    config.broker.embedded = true;
    config.broker.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    config.broker.client_id = "tocsin-collector-quickstart".into();
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], http_port));
    config.store.path = dir.join("tocsin.duckdb");
    config.rules.dir = rules_dir.clone();
    let running = crate::app::start(config).await?;
    let api = format!("http://{}", running.http_addr);

    // A port where nothing listens: the demo database check fails on purpose.
    let demo_port = free_port()?;
    let node = node_name();
    let agent_toml = format!(
        r#"
        site = "local"
        node = "{node}"
        interval = "5s"
        labels = {{ criticality = "high", service = "demo" }}
        [broker]
        url = "mqtt://127.0.0.1:{mqtt_port}"
        [spool]
        dir = "{spool}"
        [[check]]
        name = "demo-db"
        kind = "tcp"
        target = "127.0.0.1:{demo_port}"
        timeout = "2s"
        "#,
        spool = dir.join("agent").display()
    );
    write(dir.join("agent.toml"), &agent_toml)?;
    let agent_config = tocsin_agent::AgentConfig::from_toml_str(&agent_toml)
        .map_err(|e| QuickstartError::Agent(e.to_string()))?;
    let (agent_stop, mut agent_stop_rx) = broadcast::channel::<()>(1);
    let agent = tokio::spawn(async move {
        let stop = async move {
            let _ = agent_stop_rx.recv().await;
        };
        tocsin_agent::run(agent_config, stop).await
    });

    println!("tocsin quickstart");
    println!("  embedded MQTT broker  mqtt://127.0.0.1:{mqtt_port}");
    println!("  HTTP API              {api}");
    println!("  data, rules, configs  {}", dir.display());
    println!(
        "  local agent           node {node}, site local, reporting every 5s, with a TCP check \"demo-db\" on 127.0.0.1:{demo_port} where nothing listens"
    );
    println!("waiting for the incident and its ticket ...");

    let client = ApiClient::new(&api);
    let started = Instant::now();
    let result = async {
        loop {
            let tickets = client.get("/api/v1/tickets").await?;
            if let Some(first) = tickets.as_array().and_then(|a| a.last()) {
                let number = first
                    .get("number")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let ticket = client.get(&format!("/api/v1/tickets/{number}")).await?;
                let incidents = client.get("/api/v1/incidents").await?;
                println!(
                    "\nafter {:.0}s, an incident and its ticket:\n",
                    started.elapsed().as_secs_f64()
                );
                print!("{}", cli::incidents_table(&incidents));
                println!();
                print!("{}", cli::ticket_detail(&ticket));
                return Ok(());
            }
            if started.elapsed() > opts.wait {
                return Err(QuickstartError::NoTicket(opts.wait));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .await;
    if result.is_ok() {
        println!(
            "\nThe API is up at {api} (try {api}/api/v1/tickets, or: tocsin --api {api} tickets)."
        );
        println!("Press Ctrl-C to stop.");
        shutdown.await;
    }
    println!("stopping ...");
    let _ = agent_stop.send(());
    match tokio::time::timeout(Duration::from_secs(5), agent).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "local agent stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "local agent task failed"),
        Err(_) => tracing::warn!("local agent did not stop within 5s"),
        Ok(Ok(Ok(()))) => {}
    }
    running.stop().await;
    println!("stopped.");
    result
}
