//! The agent's main loop: collect every interval, publish, persist `seq`, stop cleanly on shutdown.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tocsin_protocol::{AgentInfo, Inventory, Metric, NodeState, Status, VERSION};

use crate::collect::{Collector, now_ms};
use crate::config::{AgentConfig, format_duration};
use crate::publish::{Publisher, StopOutcome};
use crate::state::SeqStore;
use crate::{AGENT_VERSION, AgentError};

/// How long a shutdown waits for the broker to acknowledge the `stopped` status.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Metrics the run loop adds to each report (besides the host metrics).
pub const RUN_METRICS: &[&str] = &["agent.collect_duration_ms", "agent.reports_dropped_count"];

/// The retained birth status announced on every (re)connect.
pub fn birth_status(config: &AgentConfig, inventory: Inventory) -> Status {
    Status {
        v: VERSION,
        state: NodeState::Online,
        ts: Some(now_ms()),
        agent: Some(AgentInfo {
            version: AGENT_VERSION.to_string(),
        }),
        inventory: Some(inventory),
        parents: config.parents.clone(),
        labels: config.labels.clone(),
    }
}

/// Read `[broker] password_file`: its first line, without the line ending.
pub fn read_password(path: &Path) -> Result<String, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::PasswordFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Run the agent until `shutdown` resolves: one report per interval, then a clean stop.
///
/// Errors only for what cannot work at all (an invalid config, an unreadable password file);
/// an unreachable broker or an unwritable spool are logged and retried.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate()?;
    let password = match &config.broker.password_file {
        Some(path) => Some(read_password(path)?),
        None => None,
    };
    let store = SeqStore::new(&config.spool.dir);
    if let Err(e) = std::fs::create_dir_all(&config.spool.dir) {
        tracing::warn!(
            dir = %config.spool.dir.display(),
            error = %e,
            "cannot create the spool directory; the report sequence will not survive a restart"
        );
    }
    let mut seq = store.next_seq();
    let mut collector = Collector::new(&config);
    let publisher = Publisher::start(
        &config,
        password,
        birth_status(&config, collector.inventory()),
    );
    tracing::info!(
        site = %config.site,
        node = %config.node,
        broker = %config.broker.url,
        interval = %format_duration(config.interval),
        checks = config.checks.len(),
        seq,
        "tocsin-agent {AGENT_VERSION} started"
    );

    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state_ok = true;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let mut report = tokio::select! {
            biased;
            () = &mut shutdown => break,
            report = collector.collect(seq) => report,
        };
        report.metrics.push(Metric::new(
            "agent.collect_duration_ms",
            crate::collect::round2(started.elapsed().as_secs_f64() * 1000.0),
        ));
        report.metrics.push(Metric::new(
            "agent.reports_dropped_count",
            publisher.dropped() as f64,
        ));
        if let Err(e) = report.validate() {
            // A bug, not an operational condition: say so loudly, the collector would refuse it.
            tracing::error!(seq, error = %e, "collected report is invalid; publishing it anyway");
        }
        match publisher.publish_report(&report) {
            Ok(()) => tracing::debug!(seq, metrics = report.metrics.len(), "report queued"),
            Err(e) => tracing::warn!(
                seq,
                dropped_total = publisher.dropped(),
                "report dropped: {e}"
            ),
        }
        match store.save(seq) {
            Ok(()) if !state_ok => {
                tracing::info!(path = %store.path().display(), "state file writable again");
                state_ok = true;
            }
            Ok(()) => {}
            Err(e) if state_ok => {
                tracing::warn!(error = %e, "cannot save the report sequence");
                state_ok = false;
            }
            Err(_) => {}
        }
        seq += 1;
    }

    tracing::info!("stopping");
    match publisher.shutdown(SHUTDOWN_TIMEOUT).await {
        StopOutcome::Clean => tracing::info!("stopped"),
        StopOutcome::TimedOut => tracing::warn!("stopped without confirming the stopped status"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birth_carries_inventory_parents_labels() {
        let mut config = AgentConfig::new("dc1", "web-01");
        config.parents = vec!["core-sw-1".into()];
        config.labels.insert("service".into(), "payments".into());
        let inventory = Inventory {
            hostname: Some("web-01".into()),
            ..Inventory::default()
        };
        let birth = birth_status(&config, inventory);
        birth.validate().expect("valid");
        let json = serde_json::to_value(&birth).expect("json");
        assert_eq!(json["state"], "online");
        assert_eq!(json["agent"]["version"], AGENT_VERSION);
        assert_eq!(json["inventory"]["hostname"], "web-01");
        assert_eq!(json["parents"][0], "core-sw-1");
        assert_eq!(json["labels"]["service"], "payments");
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(read_password(&path).expect("read"), "s3cret");
        let missing = dir.path().join("missing");
        let e = read_password(&missing).expect_err("missing").to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }

    #[tokio::test]
    async fn invalid_config_is_refused_before_anything_starts() {
        let config = AgentConfig::new("dc 1", "web-01");
        let e = run(config, std::future::pending())
            .await
            .expect_err("invalid");
        assert!(e.to_string().contains("site \"dc 1\""), "{e}");
    }
}
