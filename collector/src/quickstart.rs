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
    ("agents.toml", include_str!("../../rules/agents.toml")),
    ("checks.toml", include_str!("../../rules/checks.toml")),
    ("devices.toml", include_str!("../../rules/devices.toml")),
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
    #[error("{0}: not empty and not made by a quickstart; choose another --data-dir")]
    ForeignDir(PathBuf),
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

/// Marks a folder as the quickstart's own, so a rerun may wipe it.
const MARKER: &str = ".tocsin-quickstart";

/// Empty the data folder for a fresh demo, but only one that is empty or was made by a quickstart.
fn prepare_dir(dir: &std::path::Path) -> Result<(), QuickstartError> {
    let io = |source| QuickstartError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(QuickstartError::ForeignDir(dir.to_path_buf()));
        }
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    write(
        dir.join(MARKER),
        "made by tocsin-collector quickstart; removed on the next run\n",
    )
}

/// Run the demo until `shutdown` resolves.
pub async fn run(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), QuickstartError> {
    let dir = &opts.data_dir;
    prepare_dir(dir)?;
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
    let mut shutdown = std::pin::pin!(shutdown);
    let wait_for_ticket = async {
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
    };
    // Ctrl-C is honoured while waiting too, and always stops cleanly.
    let result = tokio::select! {
        r = wait_for_ticket => Some(r),
        _ = &mut shutdown => None,
    };
    let result = match result {
        Some(Ok(())) => {
            println!(
                "\nThe API is up at {api} (try {api}/api/v1/tickets, or: tocsin --api {api} tickets)."
            );
            println!("Press Ctrl-C to stop.");
            shutdown.await;
            Ok(())
        }
        Some(Err(e)) => Err(e),
        None => Ok(()),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_is_only_wiped_when_it_is_the_quickstarts_own() {
        let base = tempfile::tempdir().expect("tempdir");
        let foreign = base.path().join("mine");
        std::fs::create_dir_all(&foreign).expect("mkdir");
        std::fs::write(foreign.join("precious.txt"), "keep me").expect("write");
        assert!(matches!(
            prepare_dir(&foreign),
            Err(QuickstartError::ForeignDir(_))
        ));
        assert!(foreign.join("precious.txt").exists());

        let own = base.path().join("qs");
        prepare_dir(&own).expect("new dir");
        std::fs::write(own.join("tocsin.duckdb"), "old").expect("write");
        prepare_dir(&own).expect("rerun wipes its own dir");
        assert!(!own.join("tocsin.duckdb").exists());
        assert!(own.join(MARKER).exists());
    }

    #[test]
    fn built_in_rules_are_the_shipped_ones_and_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in DEFAULT_RULES {
            let shipped = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../rules")
                    .join(name),
            )
            .expect("shipped rule file");
            assert_eq!(&shipped, text, "{name}");
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let shipped_files =
            std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"))
                .expect("rules dir")
                .count();
        assert_eq!(
            shipped_files,
            DEFAULT_RULES.len(),
            "every shipped rule file is built in"
        );
        crate::rules::load_rules_dir(dir.path()).expect("rules load");
    }
}
