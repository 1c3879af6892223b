//! Measures where the pure engine's heap goes at N simulated nodes (default 50,000). Run:
//! `cargo run --release -p tocsin-core --example engine_memory -- --nodes 50000 --rounds 3`
//! (about 3 minutes at 50,000 nodes: dhat takes a backtrace for every allocation).
//!
//! The `dhat` profiler, as the global allocator, counts live heap bytes and blocks (the
//! sizes asked for, not the allocator's rounding or page overhead). The engine gets the
//! shipped rule pack and policy (`rules/`), births for every node (4 sites; monitoring
//! hosts, switches behind them, 40 hosts per switch; an inventory of ~10 fields and 2-3
//! labels, as `sim/src/fleet.rs` makes them), then rounds of reports 10 s apart in simulated
//! time (30 metrics and 2 checks each, the simulator's names and labels). Every outcome is
//! dropped as soon as `handle` returns: effects are the store's, not the engine's. Then the
//! same with one part left out (inventory, labels, metrics, rules...) and the node table and
//! the rule evaluator alone, to split the total into components.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tocsin_core::engine::{Engine, Input, NodeRow, Nodes, Policy, Snapshot};
use tocsin_core::rules::{Evaluator, Rule, load_rules_dir};
use tocsin_protocol::{
    AgentInfo, CheckResult, CheckStatus, Inventory, Metric, NodeKind, NodeState, Report, Status,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Live heap at one point; differences of two marks are what was kept in between.
#[derive(Debug, Clone, Copy)]
struct Mark {
    bytes: isize,
    blocks: isize,
}

fn mark() -> Mark {
    let stats = dhat::HeapStats::get();
    Mark {
        bytes: stats.curr_bytes as isize,
        blocks: stats.curr_blocks as isize,
    }
}

impl Mark {
    fn since(self, base: Mark) -> Mark {
        Mark {
            bytes: self.bytes - base.bytes,
            blocks: self.blocks - base.blocks,
        }
    }
}

fn per_node(bytes: isize, nodes: usize) -> f64 {
    bytes as f64 / nodes as f64
}

fn show(label: &str, m: Mark, nodes: usize) {
    println!(
        "  {label:<34} {:>12} B {:>8.0} B/node  {:>6.1} blocks/node",
        m.bytes,
        per_node(m.bytes, nodes),
        m.blocks as f64 / nodes as f64
    );
}

// ---------------------------------------------------------------------------------------
// The fleet, laid out like `sim::fleet::Fleet::build` (4 sites, 40 hosts per switch, 20
// switches per monitoring host).

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Monitor,
    Switch,
    Host,
}

struct SimNode {
    index: usize,
    site: String,
    name: String,
    role: Role,
    parents: Vec<String>,
    seq: u64,
    uptime_s: f64,
    cores: f64,
}

fn fleet(n: usize) -> Vec<SimNode> {
    let (sites, per_switch, per_monitor) = (4usize, 40usize, 20usize);
    let mut nodes: Vec<SimNode> = Vec::with_capacity(n);
    for s in 0..sites {
        let site = format!("site{:02}", s + 1);
        let count = n / sites + usize::from(s < n % sites);
        if count == 0 {
            continue;
        }
        let switches = ((count as f64 / (per_switch as f64 + 1.0 + 1.0 / per_monitor as f64))
            .round() as usize)
            .max(1)
            .min(count.saturating_sub(1).max(1));
        let monitors = ((switches as f64 / per_monitor as f64).ceil() as usize).clamp(1, count);
        let switches = switches.min(count - monitors);
        let hosts = count - monitors - switches;
        let first = nodes.len();
        let layout = [
            (Role::Monitor, "mon", 3, monitors),
            (Role::Switch, "sw", 4, switches),
            (Role::Host, "host", 6, hosts),
        ];
        for (role, prefix, width, count) in layout {
            for i in 0..count {
                let parent = match role {
                    Role::Monitor => None,
                    Role::Switch => Some(first + i % monitors),
                    Role::Host => (switches > 0)
                        .then(|| first + monitors + (i / per_switch).min(switches - 1)),
                };
                let parents = parent.map(|p| vec![nodes[p].name.clone()]);
                let index = nodes.len();
                nodes.push(SimNode {
                    index,
                    site: site.clone(),
                    name: format!("{prefix}-{:02}-{i:0width$}", s + 1),
                    role,
                    parents: parents.unwrap_or_default(),
                    seq: 0,
                    uptime_s: 86_400.0 + (index % 97) as f64 * 3_600.0,
                    cores: [2.0, 4.0, 8.0, 16.0][index % 4],
                });
            }
        }
    }
    nodes
}

/// What the rule set, births and reports carry: a set of parts, so that each can be left
/// out to measure what it costs.
type Shape = u8;
const RULES: Shape = 1;
const INVENTORY: Shape = 2;
const LABELS: Shape = 4;
const PARENTS: Shape = 8;
const METRICS: Shape = 16;
const CHECKS: Shape = 32;
const FULL: Shape = RULES | INVENTORY | LABELS | PARENTS | METRICS | CHECKS;

fn has(shape: Shape, part: Shape) -> bool {
    shape & part != 0
}

/// `make()` if `shape` has `part`, else nothing.
fn part<T: Default>(shape: Shape, part: Shape, make: impl FnOnce() -> T) -> T {
    if has(shape, part) {
        make()
    } else {
        T::default()
    }
}

fn agent_version() -> String {
    "0.1.0-sim".to_string()
}

fn inventory(n: &SimNode) -> Inventory {
    match n.role {
        Role::Switch => Inventory {
            sys_name: Some(n.name.clone()),
            sys_descr: Some("Simulated 48-port switch, firmware 9.3".into()),
            ..Inventory::default()
        },
        Role::Monitor | Role::Host => Inventory {
            hostname: Some(n.name.clone()),
            os: Some("Debian GNU/Linux".into()),
            os_version: Some("12".into()),
            kernel: Some("6.1.0-sim".into()),
            arch: Some("x86_64".into()),
            cpu_model: Some("Simulated CPU".into()),
            cpu_cores: Some(n.cores as u32),
            memory_bytes: Some((n.cores * 4.0 * 1024.0 * 1024.0 * 1024.0) as u64),
            ip_addresses: vec![format!("192.0.2.{}", 1 + n.index % 254)],
            agent_version: Some(agent_version()),
            ..Inventory::default()
        },
    }
}

fn labels(n: &SimNode) -> BTreeMap<String, String> {
    let criticality = match n.index % 10 {
        0 => "high",
        1..=6 => "medium",
        _ => "low",
    };
    let mut labels = BTreeMap::new();
    labels.insert("criticality".to_string(), criticality.to_string());
    labels.insert("simulated".to_string(), "true".to_string());
    if n.role == Role::Host {
        labels.insert("service".to_string(), format!("svc-{}", n.index % 25));
    }
    labels
}

fn birth(n: &SimNode, shape: Shape, ts: i64) -> Status {
    Status {
        v: tocsin_protocol::VERSION,
        state: NodeState::Online,
        ts: Some(ts),
        agent: Some(AgentInfo {
            version: agent_version(),
        }),
        inventory: part(shape, INVENTORY, || Some(inventory(n))),
        parents: part(shape, PARENTS, || n.parents.clone()),
        labels: part(shape, LABELS, || labels(n)),
    }
}

fn check(name: &str, output: &str, latency_ms: f64) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        status: CheckStatus::Ok,
        output: output.to_string(),
        latency_ms: Some(latency_ms),
    }
}

/// A quiet report (every value well inside the rules' thresholds), shaped like the sim's.
fn report(n: &mut SimNode, shape: Shape, ts: i64) -> Report {
    n.seq += 1;
    n.uptime_s += 10.0;
    let wobble = ((n.index as u64 * 31 + n.seq * 17) % 100) as f64 / 100.0;
    let m = Metric::new;
    let (kind, via, mut metrics, mut checks) = if n.role == Role::Switch {
        let rtt = 0.2 + wobble;
        let mut metrics = vec![
            m("icmp.loss_pct", 0.0),
            m("icmp.rtt_ms", rtt),
            m("snmp.uptime_s", n.uptime_s),
            m("snmp.response_ms", rtt * 3.0),
        ];
        'full: for i in 0..4 {
            let ifname = format!("ge-0/0/{i}");
            for (name, v) in [
                ("if.oper_up", 1.0),
                ("if.admin_up", 1.0),
                ("if.rx_bytes_per_s", 1e6 * wobble),
                ("if.tx_bytes_per_s", 8e5 * wobble),
                ("if.rx_errors_per_s", 0.0),
                ("if.tx_errors_per_s", 0.0),
                ("if.rx_discards_per_s", 0.0),
            ] {
                if metrics.len() == 30 {
                    break 'full;
                }
                metrics.push(m(name, v).with_label("interface", ifname.clone()));
            }
        }
        let checks = vec![
            check("reachability", "ICMP and SNMP answer", rtt),
            check("snmp", "sysUpTime read", rtt * 3.0),
        ];
        let via = n.parents.first().cloned();
        (NodeKind::Network, via, metrics, checks)
    } else {
        let cpu = 5.0 + 40.0 * wobble;
        let mem = 30.0 + 30.0 * wobble;
        let load = 0.1 + 0.5 * wobble;
        let total = n.cores * 4.0 * 1024.0 * 1024.0 * 1024.0;
        let mut metrics: Vec<Metric> = [
            ("cpu.usage_pct", cpu),
            ("cpu.user_pct", cpu * 0.7),
            ("cpu.system_pct", cpu * 0.2),
            ("cpu.iowait_pct", cpu * 0.05),
            ("cpu.steal_pct", 0.0),
            ("cpu.idle_pct", 100.0 - cpu),
            ("load.avg_1m", load * n.cores * 1.1),
            ("load.avg_5m", load * n.cores),
            ("load.avg_15m", load * n.cores * 0.9),
            ("load.per_core_5m", load),
            ("mem.used_pct", mem),
            ("mem.used_bytes", total * mem / 100.0),
            ("mem.available_bytes", total * (100.0 - mem) / 100.0),
            ("mem.total_bytes", total),
            ("swap.used_pct", 2.0),
            ("disk.busy_pct", cpu * 0.1),
            ("tcp.connections", 100.0 + 50.0 * wobble),
            ("system.uptime_s", n.uptime_s),
            ("system.process_count", 200.0),
            ("system.zombie_count", 0.0),
        ]
        .into_iter()
        .map(|(name, v)| m(name, v))
        .collect();
        for (mount, used) in [("/", 40.0 + wobble), ("/var", 30.0)] {
            for (name, v) in [
                ("fs.used_pct", used),
                ("fs.inodes_used_pct", used * 0.3),
                ("fs.available_bytes", 5e10 * (100.0 - used) / 100.0),
            ] {
                metrics.push(m(name, v).with_label("mount", mount));
            }
        }
        for (name, v) in [
            ("net.rx_bytes_per_s", 1e5 * wobble),
            ("net.tx_bytes_per_s", 8e4 * wobble),
            ("net.rx_errors_per_s", 0.0),
            ("net.tx_errors_per_s", 0.0),
        ] {
            metrics.push(m(name, v).with_label("interface", "eth0"));
        }
        let checks = vec![
            check("tcp:app", "connect to 127.0.0.1:8080", 0.3),
            check("http:health", "GET /health", 2.1),
        ];
        (NodeKind::Host, None, metrics, checks)
    };
    if !has(shape, METRICS) {
        metrics.clear();
    }
    if !has(shape, CHECKS) {
        checks.clear();
    }
    Report {
        v: tocsin_protocol::VERSION,
        node: n.name.clone(),
        site: n.site.clone(),
        kind,
        seq: n.seq,
        ts,
        interval_s: 10,
        via,
        metrics,
        checks,
    }
}

// ---------------------------------------------------------------------------------------
// Runs.

const START: i64 = 1_764_400_000_000;
const INTERVAL_MS: i64 = 10_000;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn shipped_rules() -> Vec<Rule> {
    load_rules_dir(&rules_dir()).expect("shipped rules load")
}

/// Feed births and `rounds` rounds of reports (1 s ticks in between) to a fresh engine;
/// returns the engine's live heap after the last round (fixed part included).
fn run_engine(name: &str, nodes: &mut [SimNode], shape: Shape, rounds: i64, verbose: bool) -> Mark {
    let n = nodes.len();
    let base = mark();
    let policy = Policy::load_dir(&rules_dir()).expect("shipped policy loads");
    let rules = part(shape, RULES, shipped_rules);
    let mut engine = Engine::new(policy, rules, Snapshot::default());
    let fixed = mark().since(base);
    for node in nodes.iter() {
        let status = Box::new(birth(node, shape, START));
        let (site, node) = (node.site.clone(), node.name.clone());
        drop(engine.handle(START, Input::Status { site, node, status }));
    }
    let mut last = mark().since(base);
    if verbose {
        println!("engine, {name}:");
        show("fixed (policy, rules, empty maps)", fixed, n);
        show("after births", last, n);
    }
    let mut next_tick = START;
    for round in 1..=rounds {
        let at = START + round * INTERVAL_MS;
        for (i, node) in nodes.iter_mut().enumerate() {
            let ts = at + (i as i64 * INTERVAL_MS) / n as i64;
            while next_tick <= ts {
                drop(engine.handle(next_tick, Input::Tick));
                next_tick += 1_000;
            }
            let r = report(node, shape, ts);
            drop(engine.handle(ts, Input::Report(Box::new(r))));
        }
        last = mark().since(base);
        if verbose {
            show(&format!("after report round {round}"), last, n);
        }
    }
    if verbose {
        let (alerts, incidents) = (engine.live_alerts(), engine.open_incidents());
        let reports = engine.counters().reports;
        println!("  live alerts {alerts}, open incidents {incidents}, reports {reports}");
    }
    drop(engine);
    let leaked = mark().since(base).bytes;
    if leaked != 0 && verbose {
        println!("  (not freed after drop: {leaked} B)");
    }
    last
}

/// The node table alone, filled the way `observe_status` and `observe_report` fill it,
/// one part at a time.
fn run_nodes_table(nodes: &[SimNode]) {
    let n = nodes.len();
    println!("node table alone (engine::Nodes, as observe_status/observe_report fill it):");
    let base = mark();
    let mut prev = base;
    let mut step = |label: &str| {
        let now = mark();
        show(label, now.since(prev), n);
        prev = now;
    };
    let mut table = Nodes::default();
    for node in nodes {
        table.get_or_create(&node.site, &node.name, START);
    }
    step("rows + maps (site, node, \"unknown\")");
    for node in nodes {
        let version = table.version(&agent_version());
        let row = table.get_or_create(&node.site, &node.name, START);
        row.state = NodeState::Online.into();
        row.agent_version = Some(version);
        row.via = (node.role == Role::Switch)
            .then(|| node.parents.first().cloned())
            .flatten();
        row.last_seq = Some(1);
        row.last_ts = Some(START);
        row.last_report_at = Some(START);
    }
    step("state, agent_version, via");
    for node in nodes {
        let kept = table.inventory(&inventory(node));
        let row = table.get_or_create(&node.site, &node.name, START);
        row.inventory = Some(kept);
    }
    step("inventory (NodeInventory: shared and own JSON)");
    for node in nodes {
        let (labels, parents) = (labels(node), node.parents.clone());
        table.set_topology(&node.site, &node.name, labels, parents, START);
    }
    step("labels + parents (set_topology)");
    show("node table total", mark().since(base), n);
}

/// The rule evaluator alone: a status per node, then report rounds.
fn run_evaluator(nodes: &mut [SimNode], shape: Shape, rounds: i64, label: &str) {
    let n = nodes.len();
    let base = mark();
    let mut ev = Evaluator::new(shipped_rules());
    let fixed = mark().since(base);
    for node in nodes.iter() {
        drop(ev.on_status(START, &node.site, &node.name, NodeState::Online));
    }
    let statuses = mark().since(base);
    for round in 1..=rounds {
        let at = START + round * INTERVAL_MS;
        for (i, node) in nodes.iter_mut().enumerate() {
            let ts = at + (i as i64 * INTERVAL_MS) / n as i64;
            drop(ev.on_report(&report(node, shape, ts), ts));
        }
    }
    println!("rule evaluator alone, {label}:");
    show("fixed (rules, index)", fixed, n);
    show("after statuses", statuses, n);
    let reports = mark().since(base);
    show(&format!("after {rounds} report rounds"), reports, n);
    println!("  live series {}", ev.active_series());
}

fn main() {
    // Testing mode: the stats are read as it runs and no `dhat-heap.json` is written.
    let _profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(Some(4))
        .build();
    let (mut count, mut rounds) = (50_000usize, 3i64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => count = args.next().and_then(|v| v.parse().ok()).unwrap_or(count),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            _ => {}
        }
    }
    let mut nodes = fleet(count);
    let n = nodes.len();
    let roles = |r| nodes.iter().filter(|n| n.role == r).count();
    println!(
        "{n} nodes in 4 sites: {} monitoring hosts, {} switches, {} hosts; {} shipped rules; \
         {rounds} report rounds 10 s apart; outcomes dropped",
        roles(Role::Monitor),
        roles(Role::Switch),
        roles(Role::Host),
        shipped_rules().len()
    );
    println!(
        "sizes: NodeRow {} B, Inventory {} B, Report {} B, Metric {} B, Status {} B\n",
        size_of::<NodeRow>(),
        size_of::<Inventory>(),
        size_of::<Report>(),
        size_of::<Metric>(),
        size_of::<Status>()
    );

    // What one report takes decoded, against its JSON: the reports between the engine and
    // the store's writer are held decoded.
    for role in [Role::Host, Role::Switch] {
        let Some(node) = nodes.iter_mut().find(|n| n.role == role) else {
            continue;
        };
        let json = serde_json::to_string(&report(node, FULL, 0)).unwrap_or_default();
        let before = mark();
        let decoded: Option<Report> = serde_json::from_str(&json).ok();
        let held = mark().since(before);
        drop(decoded);
        println!(
            "a {role:?} report decoded: {} B in {} blocks (its JSON {} B)",
            held.bytes + size_of::<Report>() as isize,
            held.blocks,
            json.len()
        );
    }
    println!();

    let name = "full (shipped rules, inventory, labels, parents, 30 metrics + 2 checks)";
    let full = run_engine(name, &mut nodes, FULL, rounds, true);
    println!("\nengine after {rounds} rounds, one part left out (difference = that part's cost):");
    show("full", full, n);
    let variants = [
        ("no inventory", FULL & !INVENTORY),
        ("no labels", FULL & !LABELS),
        ("no parents", FULL & !PARENTS),
        ("reports without metrics", FULL & !METRICS),
        ("reports without checks", FULL & !CHECKS),
        ("empty rule set", FULL & !RULES),
        ("empty rule set, bare births", METRICS | CHECKS),
    ];
    for (name, shape) in variants {
        let m = run_engine(name, &mut nodes, shape, rounds, false);
        println!(
            "  {name:<34} {:>12} B {:>8.0} B/node  (saves {:>6.0} B/node)",
            m.bytes,
            per_node(m.bytes, n),
            per_node(full.bytes - m.bytes, n)
        );
    }
    println!();

    run_nodes_table(&nodes);
    println!();
    run_evaluator(&mut nodes, FULL, rounds, "full reports");
    let label = "reports without metrics";
    run_evaluator(&mut nodes, FULL & !METRICS, rounds, label);
}
