//! The simulated fleet: sites of monitoring hosts that probe switches, hosts behind the
//! switches, each node's reports from a seeded random walk with failures laid over it.
//!
//! Pure: no I/O and no clock. A node's values depend only on the seed, its index and how
//! many reports it has made, so two runs with one seed publish the same fleet.

use std::collections::BTreeMap;

use tocsin_protocol::{
    AgentInfo, CheckResult, CheckStatus, Inventory, Metric, NodeKind, NodeState, Report, Status,
};

/// The shape of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// Nodes in all: monitoring hosts, switches and hosts.
    pub nodes: usize,
    pub sites: usize,
    /// Hosts behind one switch.
    pub hosts_per_switch: usize,
    /// Switches probed by one monitoring host.
    pub switches_per_monitor: usize,
    /// Reporting interval, stated in every report.
    pub interval_s: u32,
    pub seed: u64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            nodes: 1_000,
            sites: 4,
            hosts_per_switch: 40,
            switches_per_monitor: 20,
            interval_s: 10,
            seed: 1,
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A host whose agent also probes switches (it publishes their reports).
    Monitor,
    /// A network device: its reports come through its monitoring host, `kind: network`.
    Switch,
    /// A host behind a switch.
    Host,
}

/// A failure the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// The root filesystem fills up, 2.5 points a report, past 98%.
    DiskFill,
    /// A service check (`tcp:app`) goes critical.
    ServiceDown,
    /// A switch stops answering and every host behind it drops off the network.
    SwitchDown,
    /// A check (`http:health`) flips between critical and ok every report.
    Flapping,
    /// The agent dies without a clean stop: its connection drops and the broker publishes its last will.
    AgentCrash,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::DiskFill,
        FaultKind::ServiceDown,
        FaultKind::SwitchDown,
        FaultKind::Flapping,
        FaultKind::AgentCrash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::DiskFill => "disk_fill",
            FaultKind::ServiceDown => "service_down",
            FaultKind::SwitchDown => "switch_down",
            FaultKind::Flapping => "flapping",
            FaultKind::AgentCrash => "agent_crash",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The shipped rule that should open a ticket for it (its `for` is read from the rule pack).
    pub fn rule(self) -> &'static str {
        match self {
            FaultKind::DiskFill => "filesystem_full",
            FaultKind::ServiceDown | FaultKind::Flapping => "check_critical",
            FaultKind::SwitchDown => "device_unreachable",
            FaultKind::AgentCrash => "node_offline",
        }
    }

    /// Which nodes it can strike.
    pub fn role(self) -> Role {
        match self {
            FaultKind::SwitchDown => Role::Switch,
            _ => Role::Host,
        }
    }
}

/// A slowly wandering value, kept inside a band well clear of the rule thresholds.
#[derive(Debug, Clone, Copy)]
struct Walk {
    value: f64,
    lo: f64,
    hi: f64,
    step: f64,
}

impl Walk {
    fn new(rng: &mut fastrand::Rng, lo: f64, hi: f64, step: f64) -> Self {
        Walk {
            value: lo + rng.f64() * (hi - lo),
            lo,
            hi,
            step,
        }
    }

    fn next(&mut self, rng: &mut fastrand::Rng) -> f64 {
        let v = self.value + (rng.f64() * 2.0 - 1.0) * self.step;
        // Reflect at the edges so the walk stays in its band without sticking to it.
        self.value = if v < self.lo {
            2.0 * self.lo - v
        } else if v > self.hi {
            2.0 * self.hi - v
        } else {
            v
        };
        self.value
    }
}

/// A host's wandering values.
#[derive(Debug, Clone)]
struct HostWalks {
    cpu: Walk,
    mem: Walk,
    load: Walk,
    fs_var: Walk,
    rx: Walk,
    tx: Walk,
    conns: Walk,
    procs: Walk,
    /// The root filesystem: a walk, or a ramp while a disk fills.
    fs_root: f64,
    cores: f64,
    mem_total: f64,
}

/// A failure in progress on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveFault {
    pub kind: FaultKind,
    /// The injection this belongs to.
    pub id: u64,
    /// Reports made since it started.
    reports: u32,
    /// Whether a report already showed it to the rule.
    revealed: bool,
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub index: usize,
    pub site: String,
    pub name: String,
    pub role: Role,
    /// Its switch (hosts) or its monitoring host (switches).
    pub parent: Option<usize>,
    pub parents: Vec<String>,
    pub criticality: &'static str,
    pub seq: u64,
    pub uptime_s: f64,
    rng: fastrand::Rng,
    walks: HostWalks,
    fault: Option<ActiveFault>,
}

/// A report and, when this report is the first to show an injected failure to its rule, that
/// injection's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub report: Report,
    pub reveals: Option<u64>,
}

impl SimNode {
    /// The failure in progress, if any.
    pub fn fault(&self) -> Option<ActiveFault> {
        self.fault
    }

    /// Start a failure. The agent-level ones (a crash, being cut off behind a switch) are the
    /// runner's to act out; this records them so no report is made meanwhile.
    pub fn inject(&mut self, kind: FaultKind, id: u64) {
        if kind == FaultKind::DiskFill {
            self.walks.fs_root = 88.0;
        }
        self.fault = Some(ActiveFault {
            kind,
            id,
            reports: 0,
            revealed: false,
        });
    }

    /// End the failure: the disk is cleaned up, the service restarted, the switch back.
    pub fn heal(&mut self) {
        if let Some(f) = self.fault.take()
            && f.kind == FaultKind::DiskFill
        {
            self.walks.fs_root = 55.0;
        }
    }

    /// True while the node makes no reports of its own (crashed or cut off).
    pub fn silent(&self) -> bool {
        matches!(
            self.fault,
            Some(ActiveFault {
                kind: FaultKind::AgentCrash | FaultKind::SwitchDown,
                ..
            })
        ) && self.role != Role::Switch
    }

    /// The birth status published (retained) when its agent connects.
    pub fn birth(&self, ts: i64) -> Status {
        let inventory = match self.role {
            Role::Switch => Inventory {
                sys_name: Some(self.name.clone()),
                sys_descr: Some("Simulated 48-port switch, firmware 9.3".into()),
                ..Inventory::default()
            },
            Role::Monitor | Role::Host => Inventory {
                hostname: Some(self.name.clone()),
                os: Some("Debian GNU/Linux".into()),
                os_version: Some("12".into()),
                kernel: Some("6.1.0-sim".into()),
                arch: Some("x86_64".into()),
                cpu_model: Some("Simulated CPU".into()),
                cpu_cores: Some(self.walks.cores as u32),
                memory_bytes: Some(self.walks.mem_total as u64),
                // Documentation range (RFC 5737): never contacted.
                ip_addresses: vec![format!("192.0.2.{}", 1 + self.index % 254)],
                agent_version: Some(agent_version()),
                ..Inventory::default()
            },
        };
        let mut labels = BTreeMap::new();
        labels.insert("criticality".to_string(), self.criticality.to_string());
        labels.insert("simulated".to_string(), "true".to_string());
        if self.role == Role::Host {
            labels.insert("service".to_string(), format!("svc-{}", self.index % 25));
        }
        Status {
            v: tocsin_protocol::VERSION,
            state: NodeState::Online,
            ts: Some(ts),
            agent: Some(AgentInfo {
                version: agent_version(),
            }),
            inventory: Some(inventory),
            parents: self.parents.clone(),
            labels,
        }
    }

    /// The next report, collected at `ts` (ms since the epoch).
    pub fn report(&mut self, ts: i64, interval_s: u32) -> Generated {
        self.seq += 1;
        self.uptime_s += f64::from(interval_s);
        let mut reveals = None;
        if let Some(f) = &mut self.fault {
            f.reports += 1;
        }
        let report = match self.role {
            Role::Switch => self.switch_report(ts, interval_s, &mut reveals),
            Role::Monitor | Role::Host => self.host_report(ts, interval_s, &mut reveals),
        };
        Generated { report, reveals }
    }

    fn reveal(&mut self, reveals: &mut Option<u64>) {
        if let Some(f) = &mut self.fault
            && !f.revealed
        {
            f.revealed = true;
            *reveals = Some(f.id);
        }
    }

    fn host_report(&mut self, ts: i64, interval_s: u32, reveals: &mut Option<u64>) -> Report {
        let fault = self.fault.map(|f| (f.kind, f.reports));
        let rng = &mut self.rng;
        let w = &mut self.walks;
        let cpu = w.cpu.next(rng);
        let mem = w.mem.next(rng);
        let load = w.load.next(rng);
        let fs_var = w.fs_var.next(rng);
        let rx = w.rx.next(rng);
        let tx = w.tx.next(rng);
        let conns = w.conns.next(rng).round();
        let procs = w.procs.next(rng).round();
        match fault {
            Some((FaultKind::DiskFill, _)) => w.fs_root = (w.fs_root + 2.5).min(99.6),
            _ => w.fs_root = (w.fs_root + (rng.f64() - 0.5) * 0.2).clamp(20.0, 80.0),
        }
        let fs_root = w.fs_root;
        let (cores, mem_total) = (w.cores, w.mem_total);
        let mut tcp = CheckStatus::Ok;
        let mut http = CheckStatus::Ok;
        match fault {
            Some((FaultKind::DiskFill, _)) if fs_root > 98.0 => self.reveal(reveals),
            Some((FaultKind::ServiceDown, _)) => {
                tcp = CheckStatus::Critical;
                self.reveal(reveals);
            }
            Some((FaultKind::Flapping, n)) => {
                if n % 2 == 1 {
                    http = CheckStatus::Critical;
                }
                self.reveal(reveals);
            }
            _ => {}
        }
        let m = Metric::new;
        let mut metrics = vec![
            m("cpu.usage_pct", cpu),
            m("cpu.user_pct", cpu * 0.7),
            m("cpu.system_pct", cpu * 0.2),
            m("cpu.iowait_pct", cpu * 0.05),
            m("cpu.steal_pct", 0.0),
            m("cpu.idle_pct", 100.0 - cpu),
            m("load.avg_1m", load * cores * 1.1),
            m("load.avg_5m", load * cores),
            m("load.avg_15m", load * cores * 0.9),
            m("load.per_core_5m", load),
            m("mem.used_pct", mem),
            m("mem.used_bytes", mem_total * mem / 100.0),
            m("mem.available_bytes", mem_total * (100.0 - mem) / 100.0),
            m("mem.total_bytes", mem_total),
            m("swap.used_pct", 2.0),
            m("disk.busy_pct", cpu * 0.1),
            m("tcp.connections", conns),
            m("system.uptime_s", self.uptime_s),
            m("system.process_count", procs),
            m("system.zombie_count", 0.0),
        ];
        for (mount, used) in [("/", fs_root), ("/var", fs_var)] {
            metrics.push(m("fs.used_pct", used).with_label("mount", mount));
            metrics.push(m("fs.inodes_used_pct", used * 0.3).with_label("mount", mount));
            metrics.push(
                m("fs.available_bytes", 5e10 * (100.0 - used) / 100.0).with_label("mount", mount),
            );
        }
        for (name, v) in [
            ("net.rx_bytes_per_s", rx),
            ("net.tx_bytes_per_s", tx),
            ("net.rx_errors_per_s", 0.0),
            ("net.tx_errors_per_s", 0.0),
        ] {
            metrics.push(m(name, v).with_label("interface", "eth0"));
        }
        debug_assert_eq!(metrics.len(), 30);
        let checks = vec![
            check("tcp:app", tcp, "connect to 127.0.0.1:8080", 0.3),
            check("http:health", http, "GET /health", 2.1),
        ];
        self.report_of(NodeKind::Host, (ts, interval_s), None, metrics, checks)
    }

    /// This node's report of `kind` at `ts`, with its current `seq`.
    fn report_of(
        &self,
        kind: NodeKind,
        (ts, interval_s): (i64, u32),
        via: Option<String>,
        metrics: Vec<Metric>,
        checks: Vec<CheckResult>,
    ) -> Report {
        Report {
            v: tocsin_protocol::VERSION,
            node: self.name.clone(),
            site: self.site.clone(),
            kind,
            seq: self.seq,
            ts,
            interval_s,
            via,
            metrics,
            checks,
        }
    }

    fn switch_report(&mut self, ts: i64, interval_s: u32, reveals: &mut Option<u64>) -> Report {
        let down = matches!(self.fault, Some(f) if f.kind == FaultKind::SwitchDown);
        let via = self.parents.first().cloned();
        if down {
            self.reveal(reveals);
            let checks = vec![
                check(
                    "reachability",
                    CheckStatus::Critical,
                    "no ICMP or SNMP answer",
                    0.0,
                ),
                check("snmp", CheckStatus::Critical, "timeout", 0.0),
            ];
            let metrics = vec![Metric::new("icmp.loss_pct", 100.0)];
            return self.report_of(NodeKind::Network, (ts, interval_s), via, metrics, checks);
        }
        let rng = &mut self.rng;
        let rtt = self.walks.cpu.next(rng) / 50.0;
        let traffic = self.walks.rx.next(rng) * 10.0;
        let m = Metric::new;
        let mut metrics = vec![
            m("icmp.loss_pct", 0.0),
            m("icmp.rtt_ms", rtt),
            m("snmp.uptime_s", self.uptime_s),
            m("snmp.response_ms", rtt * 3.0),
        ];
        'full: for i in 0..4 {
            let ifname = format!("ge-0/0/{i}");
            for (name, v) in [
                ("if.oper_up", 1.0),
                ("if.admin_up", 1.0),
                ("if.rx_bytes_per_s", traffic),
                ("if.tx_bytes_per_s", traffic * 0.8),
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
            check("reachability", CheckStatus::Ok, "ICMP and SNMP answer", rtt),
            check("snmp", CheckStatus::Ok, "sysUpTime read", rtt * 3.0),
        ];
        self.report_of(NodeKind::Network, (ts, interval_s), via, metrics, checks)
    }
}

fn check(name: &str, status: CheckStatus, output: &str, latency_ms: f64) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        status,
        output: output.to_string(),
        latency_ms: Some(latency_ms),
    }
}

fn agent_version() -> String {
    format!("{}-sim", env!("CARGO_PKG_VERSION"))
}

/// The whole fleet, in index order: per site its monitoring hosts, then its switches, then its hosts.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub spec: FleetSpec,
    pub nodes: Vec<SimNode>,
}

impl Fleet {
    /// Lay out `spec.nodes` nodes over the sites. Every site gets at least one monitoring host
    /// and one switch; the rest are hosts, `hosts_per_switch` behind each switch.
    pub fn build(spec: &FleetSpec) -> Fleet {
        let sites = spec.sites.max(1);
        let per_switch = spec.hosts_per_switch.max(1) as f64;
        let per_monitor = spec.switches_per_monitor.max(1) as f64;
        let mut nodes = Vec::with_capacity(spec.nodes);
        for s in 0..sites {
            let site = format!("site{:02}", s + 1);
            // Nodes of this site: an even share, the first sites taking the remainder.
            let count = spec.nodes / sites + usize::from(s < spec.nodes % sites);
            if count == 0 {
                continue;
            }
            // Each switch brings its hosts, itself and a share of a monitoring host.
            let switches = ((count as f64 / (per_switch + 1.0 + 1.0 / per_monitor)).round()
                as usize)
                .max(1)
                .min(count.saturating_sub(1).max(1));
            let monitors = (switches as f64 / per_monitor).ceil() as usize;
            let monitors = monitors.clamp(1, count);
            let switches = switches.min(count - monitors);
            let hosts = count - monitors - switches;
            let first = nodes.len();
            for m in 0..monitors {
                nodes.push(new_node(
                    spec,
                    nodes.len(),
                    &site,
                    format!("mon-{:02}-{m:03}", s + 1),
                    Role::Monitor,
                    None,
                ));
            }
            for w in 0..switches {
                let monitor = first + w % monitors;
                nodes.push(new_node(
                    spec,
                    nodes.len(),
                    &site,
                    format!("sw-{:02}-{w:04}", s + 1),
                    Role::Switch,
                    Some(monitor),
                ));
            }
            for h in 0..hosts {
                let switch = (switches > 0).then(|| {
                    first + monitors + (h / spec.hosts_per_switch.max(1)).min(switches - 1)
                });
                nodes.push(new_node(
                    spec,
                    nodes.len(),
                    &site,
                    format!("host-{:02}-{h:06}", s + 1),
                    Role::Host,
                    switch,
                ));
            }
        }
        let mut fleet = Fleet {
            spec: spec.clone(),
            nodes,
        };
        let names: Vec<String> = fleet.nodes.iter().map(|n| n.name.clone()).collect();
        for n in &mut fleet.nodes {
            n.parents = n.parent.map(|p| vec![names[p].clone()]).unwrap_or_default();
        }
        fleet
    }

    /// Hosts behind each switch, by switch index.
    pub fn children(&self) -> BTreeMap<usize, Vec<usize>> {
        let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for n in &self.nodes {
            if n.role == Role::Host
                && let Some(p) = n.parent
            {
                out.entry(p).or_default().push(n.index);
            }
        }
        out
    }

    pub fn count(&self, role: Role) -> usize {
        self.nodes.iter().filter(|n| n.role == role).count()
    }
}

fn new_node(
    spec: &FleetSpec,
    index: usize,
    site: &str,
    name: String,
    role: Role,
    parent: Option<usize>,
) -> SimNode {
    // One generator per node, from the seed and the index: the node's values do not depend
    // on the order nodes are asked for reports.
    let mut rng =
        fastrand::Rng::with_seed(spec.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let cores = [2.0, 4.0, 8.0, 16.0][rng.usize(0..4)];
    let criticality = match rng.u8(0..10) {
        0 => "high",
        1..=6 => "medium",
        _ => "low",
    };
    let walks = HostWalks {
        cpu: Walk::new(&mut rng, 3.0, 60.0, 4.0),
        mem: Walk::new(&mut rng, 25.0, 75.0, 1.5),
        load: Walk::new(&mut rng, 0.05, 0.9, 0.05),
        fs_var: Walk::new(&mut rng, 15.0, 70.0, 0.1),
        rx: Walk::new(&mut rng, 1e4, 5e6, 2e5),
        tx: Walk::new(&mut rng, 1e4, 3e6, 1e5),
        conns: Walk::new(&mut rng, 20.0, 400.0, 10.0),
        procs: Walk::new(&mut rng, 120.0, 400.0, 3.0),
        fs_root: 20.0 + rng.f64() * 55.0,
        cores,
        mem_total: cores * 4.0 * 1024.0 * 1024.0 * 1024.0,
    };
    let uptime_s = 86_400.0 + rng.f64() * 90.0 * 86_400.0;
    SimNode {
        index,
        site: site.to_string(),
        name,
        role,
        parent,
        parents: Vec::new(),
        criticality,
        seq: 0,
        uptime_s,
        rng,
        walks,
        fault: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(nodes: usize) -> Fleet {
        Fleet::build(&FleetSpec {
            nodes,
            ..FleetSpec::default()
        })
    }

    #[test]
    fn lays_out_exactly_the_nodes_asked_for_with_a_topology() {
        for n in [1, 2, 7, 100, 1_000, 10_001] {
            let f = fleet(n);
            assert_eq!(f.nodes.len(), n, "{n} nodes");
            let names: std::collections::BTreeSet<_> =
                f.nodes.iter().map(|x| (&x.site, &x.name)).collect();
            assert_eq!(names.len(), n, "names are unique");
            for node in &f.nodes {
                assert!(tocsin_protocol::is_valid_name(&node.name), "{}", node.name);
                match node.role {
                    Role::Monitor => assert!(node.parent.is_none()),
                    Role::Switch => {
                        let p = node.parent.expect("a switch has a monitor");
                        assert_eq!(f.nodes[p].role, Role::Monitor);
                        assert_eq!(f.nodes[p].site, node.site);
                    }
                    Role::Host => {
                        if let Some(p) = node.parent {
                            assert_eq!(f.nodes[p].role, Role::Switch);
                            assert_eq!(node.parents, vec![f.nodes[p].name.clone()]);
                        }
                    }
                }
            }
        }
        let f = fleet(10_000);
        assert_eq!(f.count(Role::Switch), 4 * 61);
        assert_eq!(f.count(Role::Monitor), 4 * 4);
        let behind = f.children();
        assert!(
            behind.values().all(|h| (30..=45).contains(&h.len())),
            "about 40 hosts a switch"
        );
    }

    #[test]
    fn reports_are_valid_deterministic_and_quiet() {
        let mut a = fleet(100);
        let mut b = fleet(100);
        for round in 0..120 {
            let ts = 1_764_400_000_000 + round * 10_000;
            for (x, y) in a.nodes.iter_mut().zip(b.nodes.iter_mut()) {
                let gx = x.report(ts, 10);
                let gy = y.report(ts, 10);
                assert_eq!(gx, gy, "same seed, same report");
                assert_eq!(gx.reveals, None);
                let r = &gx.report;
                assert_eq!(r.metrics.len(), 30);
                assert_eq!(r.seq, round as u64 + 1);
                // Nothing here may trip a shipped rule: the walks stay clear of the thresholds.
                for m in &r.metrics {
                    let v = m.value;
                    match m.name.as_str() {
                        "cpu.usage_pct" => assert!(v < 90.0, "cpu {v}"),
                        "mem.used_pct" => assert!(v < 90.0),
                        "fs.used_pct" => assert!(v < 85.0, "fs {v}"),
                        "load.per_core_5m" => assert!(v < 1.5),
                        _ => {}
                    }
                }
                assert!(r.checks.iter().all(|c| c.status == CheckStatus::Ok));
                let json = serde_json::to_vec(r).expect("serialises");
                let back = tocsin_protocol::decode_report(&json).expect("the collector accepts it");
                assert_eq!(back.seq, r.seq);
            }
        }
        let birth = serde_json::to_vec(&a.nodes[0].birth(1)).expect("serialises");
        tocsin_protocol::decode_status(&birth).expect("the collector accepts the birth");
    }

    fn host(f: &mut Fleet) -> &mut SimNode {
        f.nodes
            .iter_mut()
            .find(|n| n.role == Role::Host)
            .expect("a host")
    }

    #[test]
    fn a_filling_disk_is_revealed_once_past_98_percent() {
        let mut f = fleet(50);
        let h = host(&mut f);
        h.inject(FaultKind::DiskFill, 7);
        let mut seen = Vec::new();
        for i in 0..8 {
            let g = h.report(i * 10_000, 10);
            let root = g.report.metrics.iter().find(|m| {
                m.name == "fs.used_pct" && m.labels.get("mount").map(String::as_str) == Some("/")
            });
            seen.push((root.map(|m| m.value).unwrap_or_default(), g.reveals));
        }
        assert_eq!(seen[0], (90.5, None));
        assert_eq!(seen[3], (98.0, None));
        assert_eq!(
            seen[4],
            (99.6, Some(7)),
            "revealed on the report that crosses 98"
        );
        assert!(seen[5..].iter().all(|(v, r)| *v == 99.6 && r.is_none()));
        h.heal();
        let g = h.report(100_000, 10);
        assert!(
            g.report
                .metrics
                .iter()
                .all(|m| m.name != "fs.used_pct" || m.value < 60.0)
        );
    }

    #[test]
    fn service_down_flapping_and_switch_down_show_in_the_checks() {
        let mut f = fleet(100);
        let h = host(&mut f);
        h.inject(FaultKind::ServiceDown, 1);
        let g = h.report(0, 10);
        assert_eq!(g.reveals, Some(1));
        assert_eq!(g.report.checks[0].status, CheckStatus::Critical);
        assert_eq!(h.report(10_000, 10).reveals, None, "revealed once");
        h.heal();
        h.inject(FaultKind::Flapping, 2);
        let flips: Vec<CheckStatus> = (0..4)
            .map(|i| h.report(i, 10).report.checks[1].status)
            .collect();
        assert_eq!(
            flips,
            [
                CheckStatus::Critical,
                CheckStatus::Ok,
                CheckStatus::Critical,
                CheckStatus::Ok
            ]
        );
        h.heal();
        h.inject(FaultKind::AgentCrash, 3);
        assert!(h.silent());
        h.heal();
        assert!(!h.silent());
        let sw = f
            .nodes
            .iter_mut()
            .find(|n| n.role == Role::Switch)
            .expect("a switch");
        sw.inject(FaultKind::SwitchDown, 4);
        assert!(!sw.silent(), "its monitor still reports it, as unreachable");
        let g = sw.report(0, 10);
        assert_eq!(g.reveals, Some(4));
        assert_eq!(g.report.kind, NodeKind::Network);
        assert_eq!(g.report.checks[0].name, "reachability");
        assert_eq!(g.report.checks[0].status, CheckStatus::Critical);
        assert!(g.report.via.is_some());
    }
}
