//! Correlation scenarios in simulated time: topology outages, flapping, hysteresis,
//! recurrence, problem records, maintenance windows, grouping and priority growth.
//!
//! Each test is a small table of timestamped inputs and the incidents it must leave.

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

#[test]
fn switch_down_with_20_hosts_is_one_incident_named_after_the_switch() {
    let mut s = sim();
    switch_topology(&mut s);
    // 8 hosts lose their broker connection first: their offline alerts fire at 90..97 s,
    // before anyone knows the switch is down, and open incidents of their own.
    for (i, h) in HOSTS[..8].iter().enumerate() {
        s.step(60 + i as i64, &Step::Will(h));
    }
    s.ticks(60, 99);
    assert_eq!(s.in_state(IncidentState::Open).len(), 8);
    // The switch stops answering its agent's probes: root cause found, the 8 are merged.
    s.step(
        100,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    // The other 12 hosts drop out after it.
    for (i, h) in HOSTS[8..].iter().enumerate() {
        s.step(101 + i as i64, &Step::Will(h));
    }
    s.ticks(100, 150);

    let open = s.in_state(IncidentState::Open);
    assert_eq!(open.len(), 1, "one incident: {open:#?}");
    let inc = open[0].clone();
    let inc = &inc;
    assert_eq!(inc.node, "core-sw-1");
    assert!(
        inc.root_alert
            .starts_with("device_unreachable:dc1/core-sw-1")
    );
    assert!(inc.root_cause.contains("core-sw-1"), "{}", inc.root_cause);
    assert_eq!(inc.symptoms, 20);
    assert_eq!(inc.nodes_affected, 21);
    // 21 nodes affected: impact high; critical: urgency high -> P1.
    assert_eq!(inc.priority, Priority::P1);
    assert_eq!(inc.impact, Level::High);
    let merged = s.in_state(IncidentState::Merged);
    assert_eq!(merged.len(), 8);
    assert!(merged.iter().all(|m| m.merged_into == Some(inc.id)));
    // One ticket left open; the merged ones say where to look.
    let open_tickets = s.open_tickets();
    assert_eq!(open_tickets.len(), 1);
    assert_eq!(Some(open_tickets[0].id), inc.ticket_id);
    for m in &merged {
        let t = s.ticket_of(m);
        assert_eq!(t.state, TicketState::Closed);
        let ev = s.events_of(t.id, "merged");
        assert_eq!(ev.len(), 1);
        assert!(ev[0].message.contains(&s.ticket_of(inc).number));
    }
    let symptoms: Vec<_> = s
        .links
        .iter()
        .filter(|l| l.incident_id == inc.id && l.role == "symptom")
        .map(|l| l.node.as_str())
        .collect();
    assert_eq!(symptoms.len(), 20);
    assert!(
        s.events_of(inc.ticket_id.expect("ticket"), "priority_changed")
            .len()
            <= 1
    );

    // Recovery: the switch answers, the hosts come back; the incident resolves, then closes.
    s.step(200, &Step::Checks("core-sw-1", &[("reachability", Fine)]));
    assert_eq!(s.incidents[&inc.id].state, IncidentState::Open);
    for h in HOSTS {
        s.step(210, &Step::Birth(h, &["core-sw-1"], &[]));
    }
    assert_eq!(s.incidents[&inc.id].state, IncidentState::Resolved);
    s.ticks(210 + 600, 210 + 600);
    assert_eq!(s.incidents[&inc.id].state, IncidentState::Closed);
    assert_eq!(
        s.tickets
            .values()
            .filter(|t| t.state != TicketState::Closed)
            .count(),
        0
    );
}

#[test]
fn hosts_failing_after_the_switch_is_down_open_nothing_of_their_own() {
    let mut s = sim();
    switch_topology(&mut s);
    s.step(
        10,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    // A host's check fails (it cannot reach its database through the switch).
    s.step(12, &Step::Checks("web-03", &[("tcp:db", Critical)]));
    s.step(13, &Step::Will("web-04"));
    s.ticks(13, 50);
    let open = s.in_state(IncidentState::Open);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].symptoms, 2);
    assert_eq!(s.tickets.len(), 1);
    // A disk filling on a host behind the switch is its own fault, not a symptom.
    s.step(60, &Step::Disk("web-05", 99.0));
    s.step(85, &Step::Disk("web-05", 99.0));
    assert_eq!(s.in_state(IncidentState::Open).len(), 2);
}

#[test]
fn children_of_a_down_parent_are_merged_only_inside_the_grouping_window() {
    let mut s = sim();
    switch_topology(&mut s);
    // web-01's incident is an hour old when the switch goes down: a separate fault.
    s.step(10, &Step::Checks("web-01", &[("tcp:db", Critical)]));
    s.step(
        3_610,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    assert_eq!(s.in_state(IncidentState::Open).len(), 2);
    assert!(s.in_state(IncidentState::Merged).is_empty());
}

#[test]
fn a_flapping_check_holds_its_incident_open_until_it_settles() {
    let mut s = sim();
    s.step(0, &Step::Birth("db-01", &[], &[]));
    // Critical/ok every 10 s: more than 4 changes in 5 minutes.
    let mut t = 10;
    for _ in 0..5 {
        s.step(t, &Step::Checks("db-01", &[("tcp:pg", Critical)]));
        s.step(t + 10, &Step::Checks("db-01", &[("tcp:pg", Fine)]));
        t += 20;
    }
    let incidents: Vec<_> = s.incidents.values().collect();
    assert_eq!(incidents.len(), 1, "one incident for the whole flap");
    let inc = incidents[0].clone();
    assert_eq!(inc.state, IncidentState::Open, "held open while flapping");
    assert!(inc.flapping);
    let ticket = inc.ticket_id.expect("ticket");
    assert_eq!(s.events_of(ticket, "flapping").len(), 1);
    // Ticket lines stop once it flaps: at most the changes before the limit.
    let noisy =
        s.events_of(ticket, "alert_cleared").len() + s.events_of(ticket, "alert_fired_again").len();
    assert!(noisy <= 4, "{noisy} change lines");
    assert!(s.alerts.iter().any(|a| a.flapping));
    // Quiet (ok) for the settle period: settled, and the incident resolves.
    s.ticks(t, t + 180);
    let inc = &s.incidents[&inc.id];
    assert!(!inc.flapping);
    assert_eq!(inc.state, IncidentState::Resolved);
    assert_eq!(s.events_of(ticket, "settled").len(), 1);
}

#[test]
fn a_filling_disk_fires_past_expr_and_resolves_only_under_clear() {
    let mut s = sim();
    s.step(0, &Step::Birth("db-01", &[], &[]));
    // (t, fs.used_pct, incident state expected after it; None = no incident yet)
    let table: &[(i64, f64, Option<IncidentState>)] = &[
        (10, 80.0, None),
        (20, 91.0, None), // pending
        (30, 93.0, None),
        (40, 95.0, Some(IncidentState::Open)), // for = 20s elapsed
        (50, 89.0, Some(IncidentState::Open)), // under expr, above clear: still firing
        (60, 86.0, Some(IncidentState::Open)),
        (70, 84.0, Some(IncidentState::Resolved)), // under clear
    ];
    for (t, v, want) in table {
        s.step(*t, &Step::Disk("db-01", *v));
        let got = s.incidents.values().next().map(|i| i.state);
        assert_eq!(got, *want, "t={t} value={v}");
    }
    assert_eq!(s.incidents.len(), 1);
}

#[test]
fn recurrence_inside_verification_reopens_and_after_it_opens_a_new_incident() {
    let mut s = sim();
    s.run(&[
        (0, Step::Birth("db-01", &[], &[])),
        (10, Step::Checks("db-01", &[("tcp:pg", Critical)])),
        (20, Step::Checks("db-01", &[("tcp:pg", Fine)])),
        // 5 minutes later, inside the 10-minute verification period.
        (320, Step::Checks("db-01", &[("tcp:pg", Critical)])),
    ]);
    assert_eq!(s.incidents.len(), 1);
    let first = s.incidents[&1].clone();
    assert_eq!(first.state, IncidentState::Open);
    assert_eq!(
        s.events_of(first.ticket_id.expect("t"), "reopened").len(),
        1
    );
    s.run(&[
        (330, Step::Checks("db-01", &[("tcp:pg", Fine)])),
        (330 + 600, Step::Tick),
        // After the verification period closed it: a new incident.
        (1_000, Step::Checks("db-01", &[("tcp:pg", Critical)])),
    ]);
    assert_eq!(s.incidents[&1].state, IncidentState::Closed);
    assert_eq!(s.incidents.len(), 2);
    assert_eq!(s.incidents[&2].state, IncidentState::Open);
}

const DAY: i64 = 86_400;

/// One outage of `node`'s tcp:pg at day `d`, resolved and closed the same day.
fn outage(s: &mut Sim, node: &'static str, day: f64) {
    let t = (day * DAY as f64) as i64;
    s.step(t, &Step::Checks(node, &[("tcp:pg", Critical)]));
    s.step(t + 60, &Step::Checks(node, &[("tcp:pg", Fine)]));
    s.step(t + 60 + 600, &Step::Tick);
}

#[test]
fn the_third_recurrence_in_a_week_opens_a_problem_and_later_ones_link_to_it() {
    let mut s = sim();
    s.step(0, &Step::Birth("db-01", &[], &[]));
    s.step(0, &Step::Birth("db-02", &[], &[]));
    outage(&mut s, "db-01", 0.5);
    outage(&mut s, "db-02", 1.0); // another signature: does not count
    outage(&mut s, "db-01", 2.0);
    assert!(s.problems.is_empty());
    outage(&mut s, "db-01", 5.0);
    assert_eq!(s.problems.len(), 1);
    let p = s.problems[&1].clone();
    assert_eq!(p.number, "PRB-000001");
    assert_eq!(p.signature, "check_critical@dc1/db-01");
    assert_eq!(p.incident_count, 3);
    assert_eq!(p.kb.as_deref(), Some("kb/check-failed.md"));
    let linked: Vec<i64> = s
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::ProblemIncident(l) => Some(l.incident_id),
            _ => None,
        })
        .collect();
    // The three incidents of db-01 (closed ones are linked through problem_incidents; the one
    // open when the problem opened also carries problem_id on its row).
    let db01: Vec<i64> = s
        .incidents
        .values()
        .filter(|i| i.node == "db-01")
        .map(|i| i.id)
        .collect();
    assert_eq!(linked, db01);
    assert_eq!(s.incidents[&db01[2]].problem_id, Some(1));
    assert_eq!(s.incidents[&db01[0]].problem_id, None);

    // The team records a workaround: a known error. The next incident's ticket shows it.
    s.step(
        6 * DAY,
        &Step::Command(Command::UpdateProblem {
            id: 1,
            state: Some(ProblemState::KnownError),
            workaround: Some("restart pgbouncer".into()),
            actor: "alice".into(),
        }),
    );
    s.step(
        6 * DAY + 10,
        &Step::Checks("db-01", &[("tcp:pg", Critical)]),
    );
    let newest = s.incidents.values().next_back().expect("incident").clone();
    assert_eq!(newest.problem_id, Some(1));
    let ticket = s.ticket_of(&newest);
    assert_eq!(ticket.workaround.as_deref(), Some("restart pgbouncer"));
    assert!(
        ticket
            .description
            .contains("Details: The agent on db-01 reports tcp:pg: tcp:pg is critical"),
        "{}",
        ticket.description
    );
    let linked = s.events_of(ticket.id, "problem_linked");
    assert!(linked[0].message.contains("restart pgbouncer"));
    assert_eq!(s.problems[&1].incident_count, 4);
    assert_eq!(s.problems[&1].state, ProblemState::KnownError);
}

#[test]
fn incidents_spread_wider_than_the_window_open_no_problem() {
    let mut s = sim();
    s.step(0, &Step::Birth("db-01", &[], &[]));
    for day in [0.0, 4.0, 8.0, 12.0] {
        outage(&mut s, "db-01", day);
    }
    assert!(s.problems.is_empty());
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

#[test]
fn a_maintenance_window_suppresses_tickets_and_a_fault_outlasting_it_pages() {
    let mut s = sim();
    s.run(&[
        (0, Step::Birth("db-01", &[], &[])),
        (0, Step::Birth("db-02", &[], &[])),
        (5, Step::Command(window("db-0*1", 10, 3_600))),
        (20, Step::Checks("db-01", &[("tcp:pg", Critical)])),
        (25, Step::Checks("db-02", &[("tcp:pg", Critical)])),
        (30, Step::Checks("db-01", &[("tcp:pg", Fine)])),
        (40, Step::Checks("db-01", &[("tcp:pg", Critical)])),
    ]);
    // db-01's faults are recorded as suppressed; db-02 (not covered) pages.
    let suppressed: Vec<_> = s
        .alerts
        .iter()
        .filter(|a| a.suppressed_by.as_deref() == Some("patching"))
        .collect();
    assert_eq!(suppressed.len(), 2);
    assert!(suppressed.iter().all(|a| a.incident_id.is_none()));
    assert_eq!(s.incidents.len(), 1);
    assert_eq!(s.incidents[&1].node, "db-02");
    // db-01 still fails when the window ends: now it opens an incident.
    s.ticks(3_599, 3_601);
    assert_eq!(s.incidents.len(), 2);
    let late = &s.incidents[&2];
    assert_eq!(late.node, "db-01");
    assert_eq!(late.opened_at, 3_600_000);
}

#[test]
fn alerts_with_the_same_group_labels_share_one_incident_and_raise_its_impact() {
    let mut s = sim();
    let pay = &[("service", "payments")] as &[(&str, &str)];
    s.run(&[
        (0, Step::Birth("app-01", &[], pay)),
        (0, Step::Birth("app-02", &[], pay)),
        (0, Step::Birth("app-03", &[], pay)),
        (0, Step::Birth("app-09", &[], &[("service", "search")])),
        (10, Step::Checks("app-01", &[("http:api", Critical)])),
    ]);
    let first = s.incidents[&1].clone();
    assert_eq!(first.group_key.as_deref(), Some("service=payments"));
    // warning x medium impact = P3.
    assert_eq!(first.priority, Priority::P3);
    s.run(&[
        (20, Step::Checks("app-02", &[("http:api", Critical)])),
        (30, Step::Checks("app-03", &[("http:api", Critical)])),
        (40, Step::Checks("app-09", &[("http:api", Critical)])),
    ]);
    assert_eq!(s.incidents.len(), 2, "payments grouped, search apart");
    let inc = &s.incidents[&1];
    assert_eq!(inc.nodes_affected, 3);
    // 3 nodes: still medium impact by count; P3 stays.
    assert_eq!(inc.priority, Priority::P3);
    assert_eq!(s.incidents[&2].node, "app-09");
}

#[test]
fn priority_rises_with_nodes_affected_and_the_raise_is_recorded() {
    let mut s = sim();
    let pay = &[("service", "payments"), ("criticality", "low")] as &[(&str, &str)];
    let nodes = [
        "a-01", "a-02", "a-03", "a-04", "a-05", "a-06", "a-07", "a-08", "a-09", "a-10",
    ];
    for n in nodes {
        s.step(0, &Step::Birth(n, &[], pay));
    }
    s.step(10, &Step::Checks(nodes[0], &[("http:api", Critical)]));
    // low impact x medium urgency = P4.
    assert_eq!(s.incidents[&1].priority, Priority::P4);
    for (i, n) in nodes[1..].iter().enumerate() {
        s.step(11 + i as i64, &Step::Checks(n, &[("http:api", Critical)]));
    }
    let inc = &s.incidents[&1];
    assert_eq!(inc.nodes_affected, 10);
    // 10 nodes: high impact x medium urgency = P2; raised twice (at 3 and at 10 nodes).
    assert_eq!(inc.priority, Priority::P2);
    let ticket = s.ticket_of(inc);
    assert_eq!(ticket.priority, Priority::P2);
    let raises = s.events_of(ticket.id, "priority_changed");
    assert_eq!(raises.len(), 2);
    assert!(
        raises[1].message.contains("10 node(s) affected"),
        "{}",
        raises[1].message
    );
}

/// Everything above in one stream, twice: identical effects, byte for byte.
#[test]
fn a_recorded_stream_replays_to_identical_output() {
    let run = || {
        let mut s = sim();
        switch_topology(&mut s);
        s.step(5, &Step::Command(window("web-2*", 0, 50)));
        for (i, h) in HOSTS.iter().enumerate() {
            s.step(60 + i as i64, &Step::Will(h));
        }
        s.step(
            70,
            &Step::Checks("core-sw-1", &[("reachability", Critical)]),
        );
        for t in (80..200).step_by(10) {
            let checks: &'static [(&str, CheckStatus)] = if t % 20 == 0 {
                &[("tcp:pg", Critical)]
            } else {
                &[("tcp:pg", Fine)]
            };
            s.step(t, &Step::Checks("mon-01", checks));
            s.step(t, &Step::Disk("mon-01", 80.0 + (t % 30) as f64 / 2.0));
        }
        s.ticks(60, 400);
        serde_json::to_string(&s.effects).expect("effects serialise")
    };
    let (a, b) = (run(), run());
    assert!(a.len() > 10_000);
    assert_eq!(a, b);
}

#[test]
fn maintenance_of_a_switch_covers_what_its_outage_explains_beneath_it() {
    let mut s = sim();
    switch_topology(&mut s);
    s.step(5, &Step::Command(window("core-sw-1", 0, 600)));
    s.step(
        10,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    s.step(11, &Step::Will("web-01"));
    s.step(12, &Step::Checks("web-02", &[("tcp:db", Critical)]));
    s.ticks(12, 60);
    // A disk filling behind the switch is not explained by the switch: it pages.
    s.step(70, &Step::Disk("web-03", 99.0));
    s.step(95, &Step::Disk("web-03", 99.0));
    let held: Vec<_> = s
        .alerts
        .iter()
        .filter_map(|a| a.suppressed_by.clone())
        .collect();
    assert!(held.contains(&"patching".to_string()));
    assert!(
        held.contains(&"patching (via core-sw-1)".to_string()),
        "{held:?}"
    );
    assert_eq!(held.len(), 3, "{held:?}");
    assert_eq!(s.incidents.len(), 1);
    assert_eq!(s.incidents[&1].node, "web-03");
}

#[test]
fn a_down_parent_wins_over_reopening_a_childs_old_incident() {
    let mut s = sim();
    switch_topology(&mut s);
    s.step(10, &Step::Checks("web-03", &[("tcp:db", Critical)]));
    s.step(20, &Step::Checks("web-03", &[("tcp:db", Fine)]));
    assert_eq!(s.incidents[&1].state, IncidentState::Resolved);
    // Inside web-03's verification period the switch dies, then web-03's check fails again.
    s.step(
        100,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    s.step(110, &Step::Checks("web-03", &[("tcp:db", Critical)]));
    assert_eq!(
        s.incidents[&1].state,
        IncidentState::Resolved,
        "not reopened"
    );
    let open = s.in_state(IncidentState::Open);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].node, "core-sw-1");
    assert_eq!(open[0].symptoms, 1);
}

#[test]
fn when_a_window_over_a_switch_ends_the_switch_pages_first_and_its_hosts_join() {
    let mut s = sim();
    switch_topology(&mut s);
    s.step(5, &Step::Command(window("core-sw-1", 0, 300)));
    s.step(
        10,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    s.step(12, &Step::Checks("web-03", &[("tcp:db", Critical)]));
    s.step(13, &Step::Will("web-04"));
    s.ticks(13, 60);
    assert!(s.incidents.is_empty());
    // Still down when the window ends: one incident, the switch's, one ticket.
    s.ticks(299, 301);
    assert_eq!(s.incidents.len(), 1, "{:#?}", s.incidents);
    let inc = &s.incidents[&1];
    assert_eq!(inc.node, "core-sw-1");
    assert_eq!(inc.symptoms, 2);
    assert_eq!(s.tickets.len(), 1);
}

#[test]
fn a_flapping_child_merged_into_its_parent_settles_there() {
    let mut s = sim();
    switch_topology(&mut s);
    let mut t = 10;
    for _ in 0..4 {
        s.step(t, &Step::Checks("web-05", &[("tcp:db", Critical)]));
        s.step(t + 5, &Step::Checks("web-05", &[("tcp:db", Fine)]));
        t += 10;
    }
    s.step(t, &Step::Checks("web-05", &[("tcp:db", Critical)]));
    assert!(s.incidents[&1].flapping);
    // The switch goes down: web-05's incident (root: a failing check) is merged.
    s.step(
        t + 1,
        &Step::Checks("core-sw-1", &[("reachability", Critical)]),
    );
    let parent = s.in_state(IncidentState::Open)[0].id;
    assert_eq!(s.incidents[&1].state, IncidentState::Merged);
    assert!(s.incidents[&parent].flapping);
    // Everything recovers; web-05 stays quiet past the settle period.
    s.step(t + 10, &Step::Checks("web-05", &[("tcp:db", Fine)]));
    s.step(
        t + 20,
        &Step::Checks("core-sw-1", &[("reachability", Fine)]),
    );
    s.ticks(t + 20, t + 20 + 200);
    let inc = &s.incidents[&parent];
    assert!(!inc.flapping);
    assert_eq!(inc.state, IncidentState::Resolved);
}
