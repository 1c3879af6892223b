//! Correlation scenarios in simulated time: the harness ([`Sim`]) and shared fixtures.
//!
//! Each test is a small table of timestamped inputs and the incidents it must leave:
//! `topology` (outages beneath a down node), `lifecycle` (flapping, hysteresis, recurrence,
//! problems, maintenance, grouping, priority, replay).

use std::collections::BTreeMap;
use std::path::Path;

use tocsin_protocol::{CheckResult, CheckStatus, Metric, NodeKind, NodeState, Report, Status};

use super::*;
use crate::rules::parse_rules;

const RULES: &str = r#"
    [[rule]]
    name = "node_offline"
    when = "offline"
    for = "30s"
    severity = "critical"
    category = "network"
    summary = "{{node}} is offline"

    [[rule]]
    name = "device_unreachable"
    check = "reachability"
    status = ["critical"]
    node_down = true
    severity = "critical"
    category = "network"
    summary = "{{node}} does not answer"

    [[rule]]
    name = "check_critical"
    check = "tcp:*"
    severity = "critical"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"
    description = "The agent on {{node}} reports {{check}}: {{output}}"
    runbook = "kb/check-failed.md"

    [[rule]]
    name = "service_down"
    check = "http:*"
    group_by = ["service"]
    severity = "warning"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"

    [[rule]]
    name = "fs_full"
    expr = "fs.used_pct > 90"
    for = "20s"
    clear = "fs.used_pct < 85"
    severity = "warning"
    category = "hardware"
    summary = "{{node}}: {{labels.mount}} is {{value}}% full"
"#;

const POLICY: &str = r#"
    [grouping]
    window = "5m"
    [incident]
    verify_for = "10m"
    [problem]
    threshold = 3
    window = "7d"
    [flapping]
    changes = 4
    window = "5m"
    settle_for = "3m"
    [priority]
    nodes_high = 10
    nodes_medium = 3
"#;

/// One timed input.
#[derive(Debug, Clone)]
enum Step {
    /// node, parents, labels
    Birth(
        &'static str,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    Will(&'static str),
    /// node, checks
    Checks(&'static str, &'static [(&'static str, CheckStatus)]),
    /// node, fs.used_pct on "/"
    Disk(&'static str, f64),
    Tick,
    Command(Command),
}

/// The engine plus what its effects built up, like the store would.
struct Sim {
    e: Engine,
    seq: BTreeMap<String, u64>,
    effects: Vec<Effect>,
    incidents: BTreeMap<i64, IncidentRow>,
    tickets: BTreeMap<i64, TicketRow>,
    problems: BTreeMap<i64, ProblemRow>,
    alerts: Vec<AlertRow>,
    events: Vec<TicketEventRow>,
    links: Vec<IncidentAlertRow>,
}

fn sim() -> Sim {
    sim_with(POLICY)
}

fn sim_with(policy: &str) -> Sim {
    let policy = Policy::from_toml_str(Path::new("policy.toml"), policy).expect("policy");
    Sim {
        e: Engine::new(
            policy,
            parse_rules("t", RULES).expect("rules"),
            Snapshot::default(),
        ),
        seq: BTreeMap::new(),
        effects: Vec::new(),
        incidents: BTreeMap::new(),
        tickets: BTreeMap::new(),
        problems: BTreeMap::new(),
        alerts: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
    }
}

fn status(state: NodeState, parents: &[&str], labels: &[(&str, &str)]) -> Status {
    Status {
        v: 1,
        state,
        ts: None,
        agent: None,
        inventory: None,
        parents: parents.iter().map(|p| p.to_string()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

impl Sim {
    fn report(
        &mut self,
        now: Millis,
        node: &str,
        checks: &[(&str, CheckStatus)],
        fs: Option<f64>,
    ) -> Input {
        let seq = self.seq.entry(node.to_string()).or_insert(0);
        *seq += 1;
        Input::Report(Box::new(Report {
            v: 1,
            node: node.to_string(),
            site: "dc1".into(),
            kind: NodeKind::Host,
            seq: *seq,
            ts: now,
            interval_s: 10,
            via: None,
            metrics: fs
                .map(|v| vec![Metric::new("fs.used_pct", v).with_label("mount", "/")])
                .unwrap_or_default(),
            checks: checks
                .iter()
                .map(|(n, s)| CheckResult {
                    name: n.to_string(),
                    status: *s,
                    output: format!("{n} is {}", s.as_str()),
                    latency_ms: None,
                })
                .collect(),
        }))
    }

    fn step(&mut self, secs: i64, step: &Step) {
        let now = secs * 1000;
        self.e.assert_index_consistent();
        let out = match step {
            Step::Birth(node, parents, labels) => self.e.handle(
                now,
                Input::Status {
                    site: "dc1".into(),
                    node: node.to_string(),
                    status: Box::new(status(NodeState::Online, parents, labels)),
                },
            ),
            Step::Will(node) => self.e.handle(
                now,
                Input::Status {
                    site: "dc1".into(),
                    node: node.to_string(),
                    status: Box::new(Status::last_will()),
                },
            ),
            Step::Checks(node, checks) => {
                let input = self.report(now, node, checks, None);
                self.e.handle(now, input)
            }
            Step::Disk(node, v) => {
                let input = self.report(now, node, &[], Some(*v));
                self.e.handle(now, input)
            }
            Step::Tick => self.e.handle(now, Input::Tick),
            Step::Command(cmd) => self.e.command(now, cmd.clone()).expect("command").1,
        };
        self.absorb(out.effects);
    }

    fn absorb(&mut self, effects: Vec<Effect>) {
        for eff in &effects {
            match eff {
                Effect::Incident(i) => {
                    self.incidents.insert(i.id, (**i).clone());
                }
                Effect::Ticket(t) => {
                    self.tickets.insert(t.id, (**t).clone());
                }
                Effect::Problem(p) => {
                    self.problems.insert(p.id, (**p).clone());
                }
                Effect::Alert(a) => self.alerts.push((**a).clone()),
                Effect::TicketEvent(ev) => self.events.push(ev.clone()),
                Effect::IncidentAlert(l) => self.links.push(l.clone()),
                _ => {}
            }
        }
        self.effects.extend(effects);
    }

    fn run(&mut self, table: &[(i64, Step)]) {
        for (t, step) in table {
            self.step(*t, step);
        }
    }

    /// Tick every second from `from` to `to` (inclusive).
    fn ticks(&mut self, from: i64, to: i64) {
        for t in from..=to {
            self.step(t, &Step::Tick);
        }
    }

    fn in_state(&self, state: IncidentState) -> Vec<&IncidentRow> {
        self.incidents
            .values()
            .filter(|i| i.state == state)
            .collect()
    }

    fn open_tickets(&self) -> Vec<&TicketRow> {
        self.tickets
            .values()
            .filter(|t| t.state != TicketState::Closed)
            .collect()
    }

    fn ticket_of(&self, incident: &IncidentRow) -> &TicketRow {
        &self.tickets[&incident.ticket_id.expect("ticket id")]
    }

    fn events_of(&self, ticket: i64, kind: &str) -> Vec<&TicketEventRow> {
        self.events
            .iter()
            .filter(|e| e.ticket_id == ticket && e.kind == kind)
            .collect()
    }
}

use CheckStatus::{Critical, Ok as Fine};

const HOSTS: [&str; 20] = [
    "web-01", "web-02", "web-03", "web-04", "web-05", "web-06", "web-07", "web-08", "web-09",
    "web-10", "web-11", "web-12", "web-13", "web-14", "web-15", "web-16", "web-17", "web-18",
    "web-19", "web-20",
];

/// The switch `core-sw-1` (probed by `mon-01`) with 20 hosts behind it.
fn switch_topology(s: &mut Sim) {
    s.step(0, &Step::Birth("mon-01", &[], &[]));
    s.step(0, &Step::Birth("core-sw-1", &["mon-01"], &[]));
    for h in HOSTS {
        s.step(1, &Step::Birth(h, &["core-sw-1"], &[]));
    }
    s.step(2, &Step::Checks("core-sw-1", &[("reachability", Fine)]));
}

const DAY: i64 = 86_400;

/// One outage of `node`'s tcp:pg at day `d`, resolved and closed the same day.
fn outage(s: &mut Sim, node: &'static str, day: f64) {
    let t = (day * DAY as f64) as i64;
    s.step(t, &Step::Checks(node, &[("tcp:pg", Critical)]));
    s.step(t + 60, &Step::Checks(node, &[("tcp:pg", Fine)]));
    s.step(t + 60 + 600, &Step::Tick);
}

fn window(node: &str, from: i64, to: i64) -> Command {
    Command::AddMaintenance(MaintenanceRow {
        id: 0,
        name: "patching".into(),
        match_: [("node".to_string(), node.to_string())].into(),
        starts_at: from * 1000,
        ends_at: to * 1000,
        every_ms: None,
        reason: "kernel update".into(),
        created_by: "alice".into(),
        created_at: 0,
        cancelled_at: None,
    })
}

mod lifecycle;
mod topology;
