//! One collection cycle: host metrics (sysinfo) and checks, gathered concurrently into a [`Report`].
//!
//! [`Collector`] is what the run loop and `tocsin-agent once` use; [`build_report`] assembles
//! the wire payload and is usable on its own in tests.

pub mod host;
pub mod procfs;
pub mod sockdiag;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tocsin_protocol::{CheckResult, Inventory, Metric, NodeKind, Report, VERSION};

use crate::checks;
use crate::config::{AgentConfig, CheckConfig};
pub use host::HostCollector;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(1)
        .max(1)
}

/// Per-second rate of a monotonic counter between two readings. `None` when the counter went
/// backwards (reset, wrap, interface re-created) or no time passed: no rate that cycle.
pub fn counter_rate(prev: u64, cur: u64, elapsed: Duration) -> Option<f64> {
    if cur < prev || elapsed.is_zero() {
        return None;
    }
    let rate = (cur - prev) as f64 / elapsed.as_secs_f64();
    rate.is_finite().then_some(rate)
}

/// `part / total` in percent, 0 when the total is 0, rounded to 0.01.
pub fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    round2((part as f64 / total as f64 * 100.0).clamp(0.0, 100.0))
}

/// Round to two decimals (keeps payloads short; finer is noise).
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Assemble a host report. Metrics with a non-finite value are left out (the protocol refuses them).
pub fn build_report(
    config: &AgentConfig,
    seq: u64,
    ts: i64,
    metrics: Vec<Metric>,
    checks: Vec<CheckResult>,
) -> Report {
    Report {
        v: VERSION,
        node: config.node.clone(),
        site: config.site.clone(),
        kind: NodeKind::Host,
        seq,
        ts,
        interval_s: config.interval_s(),
        via: None,
        metrics: metrics
            .into_iter()
            .filter(|m| m.value.is_finite())
            .collect(),
        checks,
    }
}

/// How long a cycle waits for checks that have not finished their first run (after a start
/// or a reload); once every check has a result the wait is nil.
const FIRST_CHECK_RESULTS_WAIT: Duration = Duration::from_secs(1);

/// Gathers one report per cycle. Keep one for the whole run (CPU and network are deltas).
#[derive(Debug)]
pub struct Collector {
    config: AgentConfig,
    /// Runs each check on its own interval; a cycle takes the latest results.
    checks: checks::Scheduler,
    /// `None` only while a cycle has it on a blocking thread.
    host: Option<HostCollector>,
}

impl Collector {
    /// Take the baselines; the first [`Collector::collect`] measures from here.
    pub fn new(config: &AgentConfig) -> Self {
        Collector {
            config: config.clone(),
            checks: checks::Scheduler::start(config.checks.clone(), config.interval),
            host: Some(HostCollector::new()),
        }
    }

    /// Replace the checks (a reload).
    pub fn set_checks(&mut self, checks: Vec<CheckConfig>) {
        self.config.checks = checks.clone();
        self.checks.reload(checks, self.config.interval);
    }

    /// Inventory for the birth status.
    pub fn inventory(&self) -> Inventory {
        self.host
            .as_ref()
            .map(HostCollector::inventory)
            .unwrap_or_default()
    }

    /// One cycle: host metrics on a blocking thread while the checks run, then the report.
    /// `ts` is taken when the cycle starts.
    pub async fn collect(&mut self, seq: u64) -> Report {
        let ts = now_ms();
        let mut host = self.host.take().unwrap_or_default();
        let host_task = tokio::task::spawn_blocking(move || {
            let metrics = host.collect();
            (host, metrics)
        });
        let (host_result, ()) =
            tokio::join!(host_task, self.checks.ready(FIRST_CHECK_RESULTS_WAIT));
        let (check_results, check_metrics) = self.checks.latest();
        let mut metrics = match host_result {
            Ok((host, metrics)) => {
                self.host = Some(host);
                metrics
            }
            Err(e) => {
                tracing::error!(error = %e, "host collection failed; starting over next cycle");
                Vec::new()
            }
        };
        metrics.extend(check_metrics);
        build_report(&self.config, seq, ts, metrics, check_results)
    }
}

/// Collect one report (host metrics and checks) with a fresh collector: `tocsin-agent once`.
pub async fn collect_once(config: &AgentConfig, seq: u64) -> Report {
    let ts = now_ms();
    let mut host = HostCollector::new();
    let host_task = tokio::task::spawn_blocking(move || host.collect());
    let (host_result, (check_results, check_metrics)) =
        tokio::join!(host_task, checks::run_all(&config.checks));
    let mut metrics = host_result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "host collection failed");
        Vec::new()
    });
    metrics.extend(check_metrics);
    build_report(config, seq, ts, metrics, check_results)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tocsin_protocol::{CheckStatus, is_valid_metric_name};

    use super::*;

    fn config() -> AgentConfig {
        AgentConfig::new("dc1", "test-node")
    }

    fn names(report: &Report) -> BTreeSet<&str> {
        report.metrics.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn rates_from_counters() {
        let s = Duration::from_secs(2);
        assert_eq!(counter_rate(100, 300, s), Some(100.0));
        assert_eq!(counter_rate(300, 300, s), Some(0.0));
        // Reset or wrap: the counter went backwards, no rate this cycle.
        assert_eq!(counter_rate(300, 100, s), None);
        assert_eq!(counter_rate(u64::MAX, 0, s), None);
        assert_eq!(counter_rate(1, 2, Duration::ZERO), None);
        assert_eq!(counter_rate(0, 1, Duration::from_millis(500)), Some(2.0));
    }

    #[test]
    fn percentages() {
        assert_eq!(pct(1, 4), 25.0);
        assert_eq!(pct(0, 0), 0.0);
        assert_eq!(pct(5, 4), 100.0);
        assert_eq!(pct(1, 3), 33.33);
    }

    #[test]
    fn build_report_drops_non_finite_values() {
        let r = build_report(
            &config(),
            7,
            1_764_412_345_123,
            vec![
                Metric::new("a.b_pct", 1.0),
                Metric::new("a.c_pct", f64::NAN),
            ],
            Vec::new(),
        );
        assert_eq!(r.metrics.len(), 1);
        assert_eq!((r.seq, r.interval_s, r.kind), (7, 10, NodeKind::Host));
        r.validate().expect("valid");
    }

    #[tokio::test]
    async fn collection_on_this_machine_gives_a_valid_report() {
        let mut cfg = config();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        cfg.checks.push(CheckConfig::tcp("closed", closed));
        let mut collector = Collector::new(&cfg);
        let inv = collector.inventory();
        assert!(
            inv.hostname.is_some() && inv.os.is_some() && inv.kernel.is_some(),
            "{inv:?}"
        );
        assert!(inv.cpu_cores.is_some_and(|c| c > 0), "{inv:?}");
        assert!(inv.memory_bytes.is_some_and(|m| m > 0), "{inv:?}");
        assert!(!inv.ip_addresses.is_empty(), "{inv:?}");
        assert_eq!(
            inv.agent_version.as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );

        let first = collector.collect(1).await;
        first.validate().expect("first report is valid");
        assert_eq!(first.seq, 1);
        assert!(first.ts > 1_700_000_000_000);
        let n = names(&first);
        for want in [
            "cpu.usage_pct",
            "load.avg_1m",
            "mem.used_pct",
            "mem.total_bytes",
            "swap.used_bytes",
            "fs.used_pct",
            "fs.total_bytes",
            "system.uptime_s",
            "system.boot_time_s",
            "system.process_count",
        ] {
            assert!(n.contains(want), "missing {want} in {n:?}");
        }
        assert!(
            first.metrics.iter().any(|m| m.name == "fs.used_pct"
                && m.labels.get("mount").map(String::as_str) == Some("/")),
            "no fs.used_pct for /"
        );
        assert!(first.metrics.iter().all(|m| is_valid_metric_name(&m.name)));
        assert_eq!(first.checks.len(), 1);
        assert_eq!(first.checks[0].name, "tcp:closed");
        assert_eq!(first.checks[0].status, CheckStatus::Critical);

        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = collector.collect(2).await;
        second.validate().expect("second report is valid");
        let rates: Vec<_> = second
            .metrics
            .iter()
            .filter(|m| m.name == "net.rx_bytes_per_s")
            .collect();
        assert!(
            !rates.is_empty(),
            "no network rates in {:?}",
            names(&second)
        );
        assert!(
            rates
                .iter()
                .all(|m| m.labels.contains_key("interface") && m.value >= 0.0)
        );
        assert!(n.is_subset(&names(&second)));
    }

    /// docs/METRICS.md must list every metric a real collection emits.
    #[tokio::test]
    async fn every_emitted_metric_is_documented() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md");
        let doc = std::fs::read_to_string(path).expect("docs/METRICS.md exists");
        let documented: BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.trim().strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect();
        assert!(!documented.is_empty(), "no metric rows found in {path}");
        for name in &documented {
            assert!(
                is_valid_metric_name(name),
                "{path} lists invalid name {name}"
            );
        }
        let mut collector = Collector::new(&config());
        collector.collect(1).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let report = collector.collect(2).await;
        let mut emitted: BTreeSet<String> = report.metrics.iter().map(|m| m.name.clone()).collect();
        emitted.extend(crate::run::RUN_METRICS.iter().map(|s| s.to_string()));
        let missing: Vec<_> = emitted.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "metrics emitted but not in {path}: {missing:?}"
        );
    }
}
