//! Engine throughput: a generated fleet stream through rule evaluation and correlation.
//!
//! 10,000 nodes (100 switches probed by 10 monitoring hosts, 9,890 hosts behind the
//! switches), each reporting every 10 s with 30 metrics and 2 checks, for 30 simulated
//! minutes, with realistic trouble mixed in: filesystems filling past their threshold and
//! back, CPU spikes, failing checks, and topology outages (a switch dies, its hosts' last
//! wills arrive, it comes back). Runs the shipped rule pack (`rules/`) and policy on one
//! thread with no broker and no store, and prints reports/s and alert transitions/s.
//! Only the engine's time is measured: each round of inputs is generated before the clock
//! starts.
//!
//! `cargo bench -p tocsin-core --bench engine` (`-- --minutes N` for a longer stream).

use std::path::Path;
use std::time::{Duration, Instant};

use tocsin_core::engine::{Effect, Engine, Input, Policy, Snapshot};
use tocsin_core::rules::load_rules_dir;
use tocsin_protocol::{CheckResult, CheckStatus, Metric, NodeKind, NodeState, Report, Status};

/// The collector binary's allocator: the engine allocates and frees a report's worth of
/// strings per input, and glibc's malloc costs three times as much here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SWITCHES: usize = 100;
const MONITORS: usize = 10;
const NODES: usize = 10_000;
const INTERVAL_MS: i64 = 10_000;
const START: i64 = 1_764_400_000_000;

/// A tiny deterministic generator (xorshift), so every run sees the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

#[derive(Clone)]
struct Node {
    name: String,
    parents: Vec<String>,
    kind: NodeKind,
    seq: u64,
    /// Where this node's filesystem is heading (some fill up, most stay put).
    fs: f64,
    fs_rate: f64,
    /// Seconds of uptime; goes back to 0 on a reboot.
    uptime: f64,
}

fn fleet(rng: &mut Rng) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(NODES);
    for m in 0..MONITORS {
        nodes.push(Node {
            name: format!("mon-{m:02}"),
            parents: Vec::new(),
            kind: NodeKind::Host,
            seq: 0,
            fs: 40.0,
            fs_rate: 0.0,
            uptime: 1e6,
        });
    }
    for s in 0..SWITCHES {
        nodes.push(Node {
            name: format!("sw-{s:03}"),
            parents: vec![format!("mon-{:02}", s % MONITORS)],
            kind: NodeKind::Network,
            seq: 0,
            fs: 0.0,
            fs_rate: 0.0,
            uptime: 1e7,
        });
    }
    let hosts = NODES - MONITORS - SWITCHES;
    for h in 0..hosts {
        // 3% of hosts fill a filesystem over the run, past 90% and some past 98%.
        let filling = rng.unit() < 0.03;
        nodes.push(Node {
            name: format!("host-{h:05}"),
            parents: vec![format!("sw-{:03}", h % SWITCHES)],
            kind: NodeKind::Host,
            seq: 0,
            fs: 50.0 + rng.unit() * 30.0,
            fs_rate: if filling { 0.3 + rng.unit() * 0.5 } else { 0.0 },
            uptime: 1e6 + rng.unit() * 1e6,
        });
    }
    nodes
}

fn birth(n: &Node) -> Input {
    Input::Status {
        site: "dc1".into(),
        node: n.name.clone(),
        status: Box::new(Status {
            v: 1,
            state: NodeState::Online,
            ts: None,
            agent: None,
            inventory: None,
            parents: n.parents.clone(),
            labels: [("criticality".to_string(), "medium".to_string())].into(),
        }),
    }
}

fn host_report(n: &mut Node, ts: i64, rng: &mut Rng) -> Report {
    n.seq += 1;
    n.fs = (n.fs + n.fs_rate).min(99.5);
    n.uptime += 10.0;
    // 0.5% of reports: a CPU spike; 0.2%: a failing TCP check.
    let cpu = if rng.unit() < 0.005 {
        99.0
    } else {
        5.0 + rng.unit() * 40.0
    };
    let tcp = if rng.unit() < 0.002 {
        CheckStatus::Critical
    } else {
        CheckStatus::Ok
    };
    let m = |name: &str, v: f64| Metric::new(name, v);
    let mut metrics = vec![
        m("cpu.usage_pct", cpu),
        m("cpu.user_pct", cpu * 0.7),
        m("cpu.system_pct", cpu * 0.2),
        m("cpu.iowait_pct", 0.5),
        m("cpu.steal_pct", 0.0),
        m("load.avg_1m", 0.4),
        m("load.avg_5m", 0.3),
        m("load.avg_15m", 0.2),
        m("mem.used_pct", 45.0 + rng.unit() * 10.0),
        m("mem.used_bytes", 4e9),
        m("mem.available_bytes", 4e9),
        m("swap.used_pct", 1.0),
        m("disk.busy_pct", 3.0),
        m("tcp.connections", 120.0),
        m("system.uptime_s", n.uptime),
        m("system.process_count", 180.0),
        m("system.zombie_count", 0.0),
    ];
    for (mount, used) in [("/", n.fs), ("/var", 30.0)] {
        metrics.push(m("fs.used_pct", used).with_label("mount", mount));
        metrics.push(m("fs.inodes_used_pct", 12.0).with_label("mount", mount));
        metrics.push(m("fs.available_bytes", 1e10).with_label("mount", mount));
    }
    for (name, v) in [
        ("net.rx_bytes_per_s", 1e5),
        ("net.tx_bytes_per_s", 8e4),
        ("net.rx_errors_per_s", 0.0),
        ("net.tx_errors_per_s", 0.0),
        ("net.rx_drops_per_s", 0.0),
        ("net.tx_drops_per_s", 0.0),
        ("net.rx_packets_per_s", 300.0),
    ] {
        metrics.push(m(name, v).with_label("interface", "eth0"));
    }
    debug_assert_eq!(metrics.len(), 30);
    Report {
        v: 1,
        node: n.name.clone(),
        site: "dc1".into(),
        kind: n.kind,
        seq: n.seq,
        ts,
        interval_s: 10,
        via: None,
        metrics,
        checks: vec![
            CheckResult {
                name: "tcp:app".into(),
                status: tcp,
                output: "connected".into(),
                latency_ms: Some(0.3),
            },
            CheckResult {
                name: "http:health".into(),
                status: CheckStatus::Ok,
                output: "HTTP 200".into(),
                latency_ms: Some(2.0),
            },
        ],
    }
}

fn switch_report(n: &mut Node, ts: i64, down: bool) -> Report {
    n.seq += 1;
    n.uptime += 10.0;
    let m = |name: &str, v: f64| Metric::new(name, v);
    let mut metrics = vec![
        m("icmp.loss_pct", if down { 100.0 } else { 0.0 }),
        m("icmp.rtt_ms", 0.4),
        m("snmp.uptime_s", n.uptime),
        m("snmp.response_ms", 1.2),
    ];
    for i in 0..4 {
        let ifname = format!("ge-0/0/{i}");
        for (name, v) in [
            ("if.oper_up", 1.0),
            ("if.admin_up", 1.0),
            ("if.rx_bytes_per_s", 1e6),
            ("if.tx_bytes_per_s", 1e6),
            ("if.rx_errors_per_s", 0.0),
            ("if.tx_errors_per_s", 0.0),
            ("if.rx_discards_per_s", 0.0),
        ] {
            metrics.push(m(name, v).with_label("interface", ifname.clone()));
        }
    }
    metrics.truncate(30);
    Report {
        v: 1,
        node: n.name.clone(),
        site: "dc1".into(),
        kind: NodeKind::Network,
        seq: n.seq,
        ts,
        interval_s: 10,
        via: n.parents.first().cloned(),
        metrics,
        checks: vec![CheckResult {
            name: "reachability".into(),
            status: if down {
                CheckStatus::Critical
            } else {
                CheckStatus::Ok
            },
            output: if down { "no answer" } else { "ok" }.into(),
            latency_ms: None,
        }],
    }
}

fn main() {
    let mut minutes = 30i64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--minutes" {
            minutes = args.next().and_then(|v| v.parse().ok()).unwrap_or(minutes);
        }
    }
    let rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let rules = load_rules_dir(&rules_dir).expect("shipped rules load");
    let policy = Policy::load_dir(&rules_dir).expect("shipped policy loads");
    let rule_count = rules.len();
    let mut engine = Engine::new(policy, rules, Snapshot::default());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut nodes = fleet(&mut rng);
    for n in &nodes {
        engine.handle(START, birth(n));
    }

    let rounds = minutes * 60_000 / INTERVAL_MS;
    let mut reports = 0u64;
    let mut metrics = 0u64;
    let mut transitions = 0u64;
    let mut effects = 0u64;
    let mut busy = Duration::ZERO;
    // Outages: every 5 minutes a switch dies for 2 minutes.
    let outage_of = |round: i64| -> Option<usize> {
        let minute = round * INTERVAL_MS / 60_000;
        (minute % 5 < 2 && minute >= 2).then_some((minute / 5) as usize % SWITCHES)
    };
    for round in 0..rounds {
        let base = START + round * INTERVAL_MS;
        let down = outage_of(round);
        let was_down = if round > 0 {
            outage_of(round - 1)
        } else {
            None
        };
        let mut inputs: Vec<(i64, Input)> = Vec::with_capacity(NODES + 200);
        for (i, n) in nodes.iter_mut().enumerate() {
            let ts = base + (i as i64 * INTERVAL_MS) / NODES as i64;
            let behind = n.parents.first().and_then(|p| p.strip_prefix("sw-"));
            let behind_down = match (behind, down) {
                (Some(s), Some(d)) => s.parse::<usize>().ok() == Some(d),
                _ => false,
            };
            let behind_was_down = match (behind, was_down) {
                (Some(s), Some(d)) => s.parse::<usize>().ok() == Some(d),
                _ => false,
            };
            if behind_down {
                if !behind_was_down {
                    inputs.push((
                        ts,
                        Input::Status {
                            site: "dc1".into(),
                            node: n.name.clone(),
                            status: Box::new(Status::last_will()),
                        },
                    ));
                }
                continue; // cut off: no reports
            }
            if behind_was_down {
                inputs.push((ts, birth(n)));
            }
            let report = match n.kind {
                NodeKind::Network => {
                    let is_down = n.name.strip_prefix("sw-").and_then(|s| s.parse().ok()) == down;
                    switch_report(n, ts, is_down)
                }
                _ => host_report(n, ts, &mut rng),
            };
            inputs.push((ts, Input::Report(Box::new(report))));
        }
        // Filesystems that filled get cleaned up at some point.
        for n in nodes.iter_mut() {
            if n.fs >= 99.5 && rng.unit() < 0.05 {
                n.fs = 60.0;
            }
        }
        let started = Instant::now();
        let mut next_tick = base;
        for (ts, input) in inputs {
            while next_tick <= ts {
                let out = engine.handle(next_tick, Input::Tick);
                effects += out.effects.len() as u64;
                transitions += count_transitions(&out.effects);
                next_tick += 1_000;
            }
            if let Input::Report(r) = &input {
                reports += 1;
                metrics += r.metrics.len() as u64;
            }
            let out = engine.handle(ts, input);
            effects += out.effects.len() as u64;
            transitions += count_transitions(&out.effects);
        }
        busy += started.elapsed();
    }
    let secs = busy.as_secs_f64();
    let c = engine.counters();
    println!(
        "engine benchmark: {NODES} nodes, {rule_count} shipped rules, {minutes} simulated minutes"
    );
    println!(
        "  reports: {reports} ({:.1} metrics each) in {secs:.2} s = {:.0} reports/s",
        metrics as f64 / reports as f64,
        reports as f64 / secs
    );
    println!(
        "  alert transitions: {transitions} = {:.0} transitions/s; effects: {effects}",
        transitions as f64 / secs
    );
    println!(
        "  incidents opened {}, merged {}, symptoms attached {}, priority raised {}, problems {}",
        c.incidents_opened,
        c.incidents_merged,
        c.symptoms_attached,
        c.priority_raised,
        c.problems_opened
    );
    println!("  per report: {:.2} us", secs * 1e6 / reports as f64);
}

fn count_transitions(effects: &[Effect]) -> u64 {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Alert(_)))
        .count() as u64
}
