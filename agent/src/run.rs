//! The agent's main loop: collect every interval, probe devices on their own schedules, publish, persist `seq`, reload on request, stop cleanly.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tocsin_protocol::{AgentInfo, Inventory, Metric, NodeState, Status, VERSION};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::collect::{Collector, now_ms, round2};
use crate::config::secret::{self, SecretError};
use crate::config::{AgentConfig, DeviceConfig, format_duration};
use crate::devices::{DeviceProber, IcmpPinger};
use crate::publish::{Publisher, PublisherHandle, StopOutcome};
use crate::state::{SeqStore, Sequences};
use crate::{AGENT_VERSION, AgentError};

/// How long a shutdown waits for the broker to acknowledge the `stopped` statuses.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Metrics the run loop adds to each host report (besides the host metrics).
pub const RUN_METRICS: &[&str] = &[
    "agent.collect_duration_ms",
    "agent.reports_dropped_count",
    "agent.spool_reports",
    "agent.spool_bytes",
    "agent.spool_errors_count",
    "agent.broker_connected",
    "agent.memory_rss_bytes",
    "agent.cpu_seconds",
];

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

/// Read `[broker] password_file`: its first line, without the line ending. A file every user
/// may open is refused ([`secret::read_secret`]).
pub fn read_password(path: &Path) -> Result<String, AgentError> {
    let bytes = secret::read_secret(path).map_err(|e| match e {
        SecretError::Read { path, source } => AgentError::PasswordFile { path, source },
        SecretError::Exposed(e) => AgentError::ExposedCredentials(e),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| AgentError::PasswordFile {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Refuse the broker's credentials files (`password_file`, `key_file`) when every user may
/// open them, without needing them: for `once`, which does not connect. A file this process
/// cannot open is left to the commands that read it (`run`, `check-config`). SNMP community
/// files are checked when the config is loaded.
pub fn refuse_exposed_credentials(config: &AgentConfig) -> Result<(), AgentError> {
    let broker = &config.broker;
    for path in [&broker.password_file, &broker.key_file]
        .into_iter()
        .flatten()
    {
        if let Err(SecretError::Exposed(e)) = secret::open_private(path) {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Run the agent until `shutdown` resolves: one report per interval, then a clean stop.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    run_with_reload(config, shutdown, None).await
}

/// Lock the sequence numbers; a panic elsewhere while holding them leaves valid numbers.
fn lock(seqs: &Mutex<Sequences>) -> MutexGuard<'_, Sequences> {
    seqs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One device's probing task.
struct DeviceTask {
    config: DeviceConfig,
    task: JoinHandle<()>,
}

impl DeviceTask {
    /// Stop the task and wait until it is gone, so nothing it publishes can follow.
    async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for DeviceTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Probe one device on its own interval and publish its births and reports.
fn spawn_device(
    device: DeviceConfig,
    agent: &AgentConfig,
    pinger: IcmpPinger,
    publisher: PublisherHandle,
    seqs: Arc<Mutex<Sequences>>,
) -> DeviceTask {
    let status_topic = tocsin_protocol::status_topic(&agent.topic_root, &agent.site, &device.name);
    let report_topic = tocsin_protocol::report_topic(&agent.topic_root, &agent.site, &device.name);
    let mut prober = DeviceProber::new(device.clone(), agent).with_icmp(pinger);
    let task = tokio::spawn(async move {
        publisher.set_birth(&status_topic, prober.birth());
        let mut ticker = tokio::time::interval(prober.every());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let seq = lock(&seqs).take_device(prober.name());
            let report = prober.probe(seq).await;
            if prober.inventory_changed() {
                publisher.set_birth(&status_topic, prober.birth());
            }
            if let Err(e) = publisher.publish_report(&report_topic, &report) {
                tracing::warn!(device = prober.name(), seq, "device report dropped: {e}");
            }
        }
    });
    DeviceTask {
        config: device,
        task,
    }
}

/// The agent's own process figures (`/proc/self`): resident memory and CPU time used.
fn self_usage() -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the command.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100) as f64;
    Some((pages * page_size, ticks as f64 / hz))
}

/// Apply a reloaded config: checks, devices, parents and labels change in place; other
/// changes need a restart and are reported as ignored.
async fn apply_reload(
    current: &mut AgentConfig,
    new: AgentConfig,
    collector: &mut Collector,
    devices: &mut BTreeMap<String, DeviceTask>,
    spawn: &(dyn Fn(DeviceConfig, &AgentConfig) -> DeviceTask + Sync),
    publisher: &Publisher,
) {
    let mut ignored = Vec::new();
    if new.site != current.site {
        ignored.push("site");
    }
    if new.node != current.node {
        ignored.push("node");
    }
    if new.interval != current.interval {
        ignored.push("interval");
    }
    if new.topic_root != current.topic_root {
        ignored.push("topic_root");
    }
    if new.broker != current.broker {
        ignored.push("[broker]");
    }
    if new.spool != current.spool {
        ignored.push("[spool]");
    }
    if !ignored.is_empty() {
        tracing::warn!(
            "reload: changes to {} take effect only after a restart",
            ignored.join(", ")
        );
    }
    // Keep what cannot change now; take checks, devices, parents and labels.
    let mut next = current.clone();
    next.checks = new.checks;
    next.devices = new.devices;
    next.parents = new.parents;
    next.labels = new.labels;

    if next.parents != current.parents || next.labels != current.labels {
        publisher.set_birth(
            &next.status_topic(),
            birth_status(&next, collector.inventory()),
        );
    }
    let (mut kept, mut started, mut stopped) = (0, 0, 0);
    let wanted: BTreeMap<String, DeviceConfig> = next
        .devices
        .iter()
        .map(|d| (d.name.clone(), d.clone()))
        .collect();
    let changed: Vec<String> = devices
        .iter()
        .filter(|(name, task)| wanted.get(*name) != Some(&task.config))
        .map(|(name, _)| name.clone())
        .collect();
    for name in changed {
        let Some(task) = devices.remove(&name) else {
            continue;
        };
        // Gone before anything else is said about the device: its last report cannot
        // follow the `stopped` (removed) or the new task's birth (changed).
        task.stop().await;
        if !wanted.contains_key(&name) {
            publisher.forget_birth(&tocsin_protocol::status_topic(
                &next.topic_root,
                &next.site,
                &name,
            ));
            stopped += 1;
        }
    }
    for (name, device) in wanted {
        if devices.contains_key(&name) {
            kept += 1;
            continue;
        }
        devices.insert(name, spawn(device, &next));
        started += 1;
    }
    collector.set_checks(next.checks.clone());
    tracing::info!(
        checks = next.checks.len(),
        devices_kept = kept,
        devices_started = started,
        devices_removed = stopped,
        "configuration reloaded"
    );
    *current = next;
}

/// [`run`], plus reloading: every config received on `reloads` replaces the checks, devices,
/// parents and labels (the caller validated it; SIGHUP in the binary).
pub async fn run_with_reload(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
    mut reloads: Option<mpsc::Receiver<AgentConfig>>,
) -> Result<(), AgentError> {
    config.validate()?;
    let password = match &config.broker.password_file {
        Some(path) => Some(read_password(path)?),
        None => None,
    };
    let mut config = config;
    let store = SeqStore::new(&config.spool.dir);
    if let Err(e) = std::fs::create_dir_all(&config.spool.dir) {
        tracing::warn!(
            dir = %config.spool.dir.display(),
            error = %e,
            "cannot create the spool directory; unsent reports are kept in memory and the report sequence will not survive a restart"
        );
    }
    let seqs = Arc::new(Mutex::new(store.load_sequences()));
    let mut collector = Collector::new(&config);
    let publisher = Publisher::start(
        &config,
        password,
        birth_status(&config, collector.inventory()),
    )?;
    let pinger = IcmpPinger::new();
    let spawn = {
        let pinger = pinger.clone();
        let handle = publisher.handle();
        let seqs = Arc::clone(&seqs);
        move |device: DeviceConfig, agent: &AgentConfig| {
            spawn_device(
                device,
                agent,
                pinger.clone(),
                handle.clone(),
                Arc::clone(&seqs),
            )
        }
    };
    let mut devices: BTreeMap<String, DeviceTask> = config
        .devices
        .iter()
        .map(|d| (d.name.clone(), spawn(d.clone(), &config)))
        .collect();
    tracing::info!(
        site = %config.site,
        node = %config.node,
        broker = %config.broker.url,
        interval = %format_duration(config.interval),
        checks = config.checks.len(),
        devices = config.devices.len(),
        seq = lock(&seqs).agent,
        "tocsin-agent {AGENT_VERSION} started"
    );
    crate::service::ready(&service_status(&config, false, 0));
    let mut announced: Option<(bool, bool)> = None;

    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state_ok = true;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(new) = async {
                match reloads.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                crate::service::reloading();
                apply_reload(&mut config, new, &mut collector, &mut devices, &spawn, &publisher).await;
                crate::service::ready(&service_status(&config, publisher.stats().connected, publisher.stats().queued));
                continue;
            }
            _ = ticker.tick() => {}
        }
        let seq = {
            let mut s = lock(&seqs);
            let seq = s.agent;
            s.agent += 1;
            seq
        };
        let started = Instant::now();
        let mut report = tokio::select! {
            biased;
            () = &mut shutdown => break,
            report = collector.collect(seq) => report,
        };
        let stats = publisher.stats();
        // The status line follows the broker connection and whether reports wait in the spool.
        let shown = (stats.connected, stats.queued > 0);
        if announced != Some(shown) {
            crate::service::status(&service_status(&config, stats.connected, stats.queued));
            announced = Some(shown);
        }
        let mut add = |name: &str, value: f64| report.metrics.push(Metric::new(name, value));
        add(
            "agent.collect_duration_ms",
            round2(started.elapsed().as_secs_f64() * 1000.0),
        );
        add("agent.reports_dropped_count", stats.dropped as f64);
        add("agent.spool_reports", stats.queued as f64);
        add("agent.spool_bytes", stats.queued_bytes as f64);
        add("agent.spool_errors_count", stats.spool_errors as f64);
        add(
            "agent.broker_connected",
            f64::from(u8::from(stats.connected)),
        );
        if let Some((rss, cpu)) = self_usage() {
            add("agent.memory_rss_bytes", rss as f64);
            add("agent.cpu_seconds", round2(cpu));
        }
        if let Err(e) = report.validate() {
            // A bug, not an operational condition: say so loudly, the collector would refuse it.
            tracing::error!(seq, error = %e, "collected report is invalid; publishing it anyway");
        }
        match publisher.publish_report(&config.report_topic(), &report) {
            Ok(()) => tracing::debug!(seq, metrics = report.metrics.len(), "report queued"),
            Err(e) => tracing::warn!(
                seq,
                dropped_total = publisher.dropped(),
                "report dropped: {e}"
            ),
        }
        let snapshot = lock(&seqs).clone();
        match store.save_sequences(&snapshot) {
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
    }

    tracing::info!("stopping");
    crate::service::stopping();
    for (_, task) in std::mem::take(&mut devices) {
        task.stop().await;
    }
    let snapshot = lock(&seqs).clone();
    if let Err(e) = store.save_sequences(&snapshot) {
        tracing::warn!(error = %e, "cannot save the report sequence");
    }
    match publisher.shutdown(SHUTDOWN_TIMEOUT).await {
        StopOutcome::Clean => tracing::info!("stopped"),
        StopOutcome::TimedOut => tracing::warn!("stopped without confirming the stopped status"),
    }
    Ok(())
}

/// The one-line status `systemctl status tocsin-agent` shows.
fn service_status(config: &AgentConfig, connected: bool, queued: u64) -> String {
    let mut line = format!(
        "{}/{}: reporting every {} to {}",
        config.site,
        config.node,
        format_duration(config.interval),
        config.broker.url
    );
    if !connected {
        line.push_str(" (not connected)");
    }
    if queued > 0 {
        line.push_str(&format!(", {queued} reports spooled"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::tests::write_with_mode;

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
        let path = write_with_mode(dir.path(), "pw", "s3cret\n", 0o640);
        assert_eq!(read_password(&path).expect("read"), "s3cret");
        let missing = dir.path().join("missing");
        let e = read_password(&missing).expect_err("missing").to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn world_readable_password_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_with_mode(dir.path(), "mqtt-password", "s3cret\n", 0o644);
        let e = read_password(&path).expect_err("world-readable");
        assert!(matches!(e, AgentError::ExposedCredentials(_)), "{e:?}");
        let p = path.display();
        assert_eq!(
            e.to_string(),
            format!(
                "{p}: readable by every user (mode 0644); the agent refuses world-readable credentials: chmod 0640 {p} && chown root:tocsin {p}"
            )
        );
        for mode in [0o640, 0o600] {
            let path = write_with_mode(dir.path(), "ok", "s3cret\n", mode);
            assert_eq!(read_password(&path).expect("private"), "s3cret", "{mode:o}");
        }
    }

    #[test]
    fn once_refuses_exposed_password_and_key_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = AgentConfig::new("dc1", "web-01");
        config.broker.username = Some("web-01".into());
        config.broker.password_file = Some(write_with_mode(dir.path(), "pw", "x\n", 0o640));
        config.broker.key_file = Some(write_with_mode(dir.path(), "key", "k\n", 0o600));
        refuse_exposed_credentials(&config).expect("private files");
        // Files this process cannot read are for run and check-config to report.
        config.broker.key_file = Some(dir.path().join("missing.key"));
        refuse_exposed_credentials(&config).expect("missing is not this check's business");

        let key = write_with_mode(dir.path(), "open.key", "k\n", 0o644);
        config.broker.key_file = Some(key.clone());
        let e = refuse_exposed_credentials(&config).expect_err("exposed key");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: readable by every user", key.display())),
            "{e}"
        );
        let pw = write_with_mode(dir.path(), "open-pw", "x\n", 0o604);
        config.broker.password_file = Some(pw.clone());
        let e = refuse_exposed_credentials(&config).expect_err("exposed password");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: readable by every user", pw.display())),
            "{e}"
        );
    }

    #[test]
    fn own_usage_is_measured() {
        let (rss, cpu) = self_usage().expect("/proc/self is readable");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(cpu >= 0.0);
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
