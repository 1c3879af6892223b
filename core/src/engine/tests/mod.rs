//! Scenario tests: tables of timed inputs and the incidents and tickets they must produce.

use std::collections::BTreeMap;
use std::path::Path;

use tocsin_protocol::{
    CheckResult, CheckStatus, Inventory, Metric, NodeKind, NodeState, Report, Status,
};

use super::*;
use crate::rules::parse_rules;

const RULES: &str = r#"
    [[rule]]
    name = "check_critical"
    check = "*"
    severity = "critical"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"
    runbook = "kb/check-failed.md"

    [[rule]]
    name = "check_warning"
    check = "*"
    status = ["warning"]
    severity = "warning"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"

    [[rule]]
    name = "fs_full"
    expr = "fs.used_pct > 90"
    for = "20s"
    severity = "warning"
    category = "hardware"
    summary = "{{node}}: {{labels.mount}} is {{value}}% full"

    [[rule]]
    name = "node_offline"
    when = "offline"
    for = "30s"
    severity = "critical"
    category = "network"
    summary = "{{node}} is offline"
"#;

const POLICY: &str = r#"
    [incident]
    verify_for = "60s"
    [sla.P2]
    response = "30m"
    resolution = "8h"
    [[route]]
    match = { category = "network" }
    group = "network"
"#;

fn engine() -> Engine {
    let policy = Policy::from_toml_str(Path::new("policy.toml"), POLICY).expect("policy");
    Engine::new(
        policy,
        parse_rules("t", RULES).expect("rules"),
        Snapshot::default(),
    )
}

/// A timed input of a scenario.
enum Step {
    /// (node, seq, checks, fs value on "/")
    Report(
        &'static str,
        u64,
        &'static [(&'static str, CheckStatus)],
        Option<f64>,
    ),
    Birth(&'static str, &'static str),
    Will(&'static str),
    Tick,
}

fn input(now: Millis, step: &Step) -> Input {
    match step {
        Step::Report(node, seq, checks, fs) => Input::Report(Box::new(Report {
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
                    output: format!("{n} says {}", s.as_str()),
                    latency_ms: Some(0.5),
                })
                .collect(),
        })),
        Step::Birth(node, criticality) => Input::Status {
            site: "dc1".into(),
            node: node.to_string(),
            status: Box::new(Status {
                v: 1,
                state: NodeState::Online,
                ts: Some(now),
                agent: Some(tocsin_protocol::AgentInfo {
                    version: "0.1.0".into(),
                }),
                inventory: Some(Inventory {
                    hostname: Some(node.to_string()),
                    os: Some("Debian GNU/Linux".into()),
                    os_version: Some("12".into()),
                    kernel: Some("6.1.0".into()),
                    arch: Some("x86_64".into()),
                    ..Inventory::default()
                }),
                parents: vec!["core-sw-1".into()],
                labels: [("criticality".to_string(), criticality.to_string())].into(),
            }),
        },
        Step::Will(node) => Input::Status {
            site: "dc1".into(),
            node: node.to_string(),
            status: Box::new(Status::last_will()),
        },
        Step::Tick => Input::Tick,
    }
}

/// What the scenario expects after a step: (incident id, state, ticket state, priority).
type Expect = Option<(i64, IncidentState, TicketState, Priority)>;

/// Run a table of (time in s, step, expectation) and return every effect.
fn run(table: &[(i64, Step, Expect)]) -> (Engine, Vec<Effect>) {
    let mut e = engine();
    let mut all = Vec::new();
    let mut incidents: BTreeMap<i64, IncidentRow> = BTreeMap::new();
    let mut tickets: BTreeMap<i64, TicketRow> = BTreeMap::new();
    for (t, step, expect) in table {
        let now = t * 1000;
        let out = e.handle(now, input(now, step));
        e.assert_index_consistent();
        for eff in &out.effects {
            match eff {
                Effect::Incident(i) => {
                    incidents.insert(i.id, (**i).clone());
                }
                Effect::Ticket(tk) => {
                    tickets.insert(tk.id, (**tk).clone());
                }
                _ => {}
            }
        }
        all.extend(out.effects);
        if let Some((id, istate, tstate, prio)) = expect {
            let inc = incidents
                .get(id)
                .unwrap_or_else(|| panic!("t={t}: incident {id} missing"));
            assert_eq!(inc.state, *istate, "t={t}: incident state");
            assert_eq!(inc.priority, *prio, "t={t}: priority");
            let tk = tickets
                .get(&inc.ticket_id.expect("ticket"))
                .expect("ticket row");
            assert_eq!(tk.state, *tstate, "t={t}: ticket state");
            assert_eq!(tk.priority, *prio, "t={t}: ticket priority");
        }
    }
    (e, all)
}

/// Every ticket row in the effects, in order.
fn tickets_in(effects: &[Effect]) -> Vec<TicketRow> {
    effects
        .iter()
        .filter_map(|x| match x {
            Effect::Ticket(t) => Some((**t).clone()),
            _ => None,
        })
        .collect()
}

/// Every incident row in the effects, in order.
fn incidents_in(effects: &[Effect]) -> Vec<IncidentRow> {
    effects
        .iter()
        .filter_map(|x| match x {
            Effect::Incident(i) => Some((**i).clone()),
            _ => None,
        })
        .collect()
}

fn events(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::TicketEvent(ev) => Some((ev.kind.clone(), ev.message.clone())),
            _ => None,
        })
        .collect()
}

use CheckStatus::{Critical, Ok as Fine, Warning};
use IncidentState as I;
use TicketState as T;

#[test]
fn failing_check_opens_one_incident_and_ticket_then_resolves_and_closes_after_verification() {
    let (e, effects) = run(&[
        (0, Step::Birth("web-01", "high"), None),
        (
            10,
            Step::Report("web-01", 1, &[("tcp:pg", Fine)], None),
            None,
        ),
        (
            20,
            Step::Report("web-01", 2, &[("tcp:pg", Critical)], None),
            Some((1, I::Open, T::New, Priority::P1)),
        ),
        (
            30,
            Step::Report("web-01", 3, &[("tcp:pg", Critical)], None),
            Some((1, I::Open, T::New, Priority::P1)),
        ),
        (
            40,
            Step::Report("web-01", 4, &[("tcp:pg", Fine)], None),
            Some((1, I::Resolved, T::Resolved, Priority::P1)),
        ),
        (
            70,
            Step::Tick,
            Some((1, I::Resolved, T::Resolved, Priority::P1)),
        ),
        (
            100,
            Step::Tick,
            Some((1, I::Closed, T::Closed, Priority::P1)),
        ),
    ]);
    assert_eq!(e.counters().incidents_opened, 1);
    assert_eq!(e.counters().tickets_opened, 1);
    assert_eq!(e.open_incidents(), 0);
    let ticket = tickets_in(&effects).into_iter().next().expect("ticket");
    assert_eq!(ticket.number, "INC-000001");
    assert_eq!(ticket.impact, Level::High);
    assert_eq!(ticket.urgency, Level::High);
    assert_eq!(ticket.assignment_group, "service-desk");
    assert_eq!(ticket.runbook.as_deref(), Some("kb/check-failed.md"));
    assert_eq!(ticket.reporter["node"], "web-01");
    assert_eq!(ticket.reporter["agent_version"], "0.1.0");
    assert_eq!(ticket.environment["inventory"]["os"], "Debian GNU/Linux");
    assert_eq!(ticket.environment["parents"][0], "core-sw-1");
    assert!(
        ticket.description.contains("tcp:pg says critical"),
        "{}",
        ticket.description
    );
    assert!(
        ticket
            .description
            .contains("Environment: Debian GNU/Linux 12, kernel 6.1.0, x86_64")
    );
    let kinds: Vec<String> = events(&effects).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["opened", "resolved", "closed"]);
}
#[test]
fn second_alert_on_the_node_joins_and_raises_priority() {
    let (_, effects) = run(&[
        (0, Step::Birth("web-01", "medium"), None),
        (
            10,
            Step::Report("web-01", 1, &[("tcp:pg", Warning)], None),
            Some((1, I::Open, T::New, Priority::P3)),
        ),
        (
            20,
            Step::Report(
                "web-01",
                2,
                &[("tcp:pg", Warning), ("tcp:web", Critical)],
                None,
            ),
            Some((1, I::Open, T::New, Priority::P2)),
        ),
        (
            30,
            Step::Report(
                "web-01",
                3,
                &[("tcp:pg", Fine), ("tcp:web", Critical)],
                None,
            ),
            Some((1, I::Open, T::New, Priority::P2)),
        ),
        (
            40,
            Step::Report("web-01", 4, &[("tcp:pg", Fine), ("tcp:web", Fine)], None),
            Some((1, I::Resolved, T::Resolved, Priority::P2)),
        ),
    ]);
    let kinds: Vec<String> = events(&effects).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "alert_added",
            "priority_changed",
            "alert_cleared",
            "resolved"
        ]
    );
    let incidents: BTreeSet<i64> = effects
        .iter()
        .filter_map(|x| match x {
            Effect::Incident(i) => Some(i.id),
            _ => None,
        })
        .collect();
    assert_eq!(incidents.len(), 1, "one failure, one incident");
}
#[test]
fn recurrence_inside_verification_reopens_and_after_it_opens_new() {
    let (_, effects) = run(&[
        (
            0,
            Step::Report("web-01", 1, &[("tcp:pg", Critical)], None),
            Some((1, I::Open, T::New, Priority::P2)),
        ),
        (
            10,
            Step::Report("web-01", 2, &[("tcp:pg", Fine)], None),
            Some((1, I::Resolved, T::Resolved, Priority::P2)),
        ),
        (
            40,
            Step::Report("web-01", 3, &[("tcp:pg", Critical)], None),
            Some((1, I::Open, T::New, Priority::P2)),
        ),
        (
            50,
            Step::Report("web-01", 4, &[("tcp:pg", Fine)], None),
            Some((1, I::Resolved, T::Resolved, Priority::P2)),
        ),
        (
            111,
            Step::Tick,
            Some((1, I::Closed, T::Closed, Priority::P2)),
        ),
        (
            120,
            Step::Report("web-01", 5, &[("tcp:pg", Critical)], None),
            Some((2, I::Open, T::New, Priority::P2)),
        ),
    ]);
    let evs = events(&effects);
    assert!(
        evs.iter()
            .any(|(k, m)| k == "reopened" && m.contains("30s")),
        "{evs:?}"
    );
    let numbers: BTreeSet<String> = effects
        .iter()
        .filter_map(|x| match x {
            Effect::Ticket(t) => Some(t.number.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        numbers,
        ["INC-000001".to_string(), "INC-000002".to_string()].into()
    );
}
#[test]
fn redelivered_reports_change_nothing() {
    let mut e = engine();
    let first = input(
        10_000,
        &Step::Report("web-01", 7, &[("tcp:pg", Critical)], None),
    );
    let out = e.handle(10_000, first.clone());
    assert!(!out.duplicate && !out.effects.is_empty());
    let again = e.handle(12_000, first);
    assert!(again.duplicate);
    assert!(again.effects.is_empty());
    // An agent that lost its seq file restarts at 1 with a newer ts and is heard.
    let restarted = e.handle(
        20_000,
        input(
            20_000,
            &Step::Report("web-01", 1, &[("tcp:pg", Fine)], None),
        ),
    );
    assert!(!restarted.duplicate);
    assert_eq!(e.counters().duplicates, 1);
}
/// The shutdown's rows: every node as the engine knows it, newest sequence, no report.
#[test]
fn node_rows_hold_every_node_as_last_seen() {
    let mut e = engine();
    assert!(e.node_rows().is_empty());
    e.handle(1_000, input(1_000, &Step::Birth("web-01", "high")));
    for (at, node, seq) in [
        (10_000, "web-01", 4),
        (11_000, "db-01", 9),
        (20_000, "web-01", 5),
    ] {
        e.handle(
            at,
            input(at, &Step::Report(node, seq, &[("tcp:pg", Fine)], None)),
        );
    }
    /// (node, last_seq, last_ts, without a report, with an inventory)
    type Row = (String, Option<u64>, Option<Millis>, bool, bool);
    let mut rows: Vec<Row> = e
        .node_rows()
        .into_iter()
        .map(|eff| match eff {
            Effect::Node(n) => (
                n.node.to_string(),
                n.last_seq,
                n.last_ts,
                n.last_report.is_none(),
                n.inventory.is_some(),
            ),
            other => panic!("only node rows: {other:?}"),
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("db-01".to_string(), Some(9), Some(11_000), true, false),
            ("web-01".to_string(), Some(5), Some(20_000), true, true),
        ]
    );
}

/// A restarted agent's birth brings the same inventory: the node keeps the shared text, so
/// the store's writer sees nothing new in the wide columns. A changed one replaces it.
#[test]
fn an_equal_inventory_keeps_the_shared_text_and_a_changed_one_replaces_it() {
    let mut e = engine();
    let inventory = |e: &Engine| {
        e.nodes()
            .find(|n| &*n.node == "web-01")
            .and_then(|n| n.inventory.clone())
            .expect("web-01's inventory")
    };
    e.handle(1_000, input(1_000, &Step::Birth("web-01", "high")));
    let first = inventory(&e);
    assert_eq!(first.decode().kernel.as_deref(), Some("6.1.0"));
    e.handle(2_000, input(2_000, &Step::Birth("web-01", "high")));
    assert!(
        inventory(&e).same(&first),
        "an equal inventory keeps the text"
    );

    let Input::Status { mut status, .. } = input(3_000, &Step::Birth("web-01", "high")) else {
        panic!("a birth is a status");
    };
    if let Some(inv) = status.inventory.as_mut() {
        inv.kernel = Some("6.1.0-28".into());
    }
    e.handle(
        3_000,
        Input::Status {
            site: "dc1".into(),
            node: "web-01".into(),
            status,
        },
    );
    let changed = inventory(&e);
    assert!(!changed.same(&first));
    assert_eq!(changed.decode().kernel.as_deref(), Some("6.1.0-28"));
    assert_eq!(changed.decode().hostname.as_deref(), Some("web-01"));
}

#[test]
fn last_will_raises_node_offline_after_for_and_routes_to_network() {
    let (_, effects) = run(&[
        (0, Step::Birth("sw-agent", "low"), None),
        (10, Step::Will("sw-agent"), None),
        (20, Step::Tick, None),
        (41, Step::Tick, Some((1, I::Open, T::New, Priority::P3))),
        (
            50,
            Step::Birth("sw-agent", "low"),
            Some((1, I::Resolved, T::Resolved, Priority::P3)),
        ),
    ]);
    let ticket = tickets_in(&effects).into_iter().next().expect("ticket");
    assert_eq!(ticket.assignment_group, "network");
    assert_eq!(ticket.summary, "sw-agent is offline");
}
#[test]
fn pending_threshold_that_clears_opens_nothing() {
    let (e, effects) = run(&[
        (0, Step::Report("db-01", 1, &[], Some(95.0)), None),
        (10, Step::Report("db-01", 2, &[], Some(50.0)), None),
        (20, Step::Report("db-01", 3, &[], Some(95.0)), None),
        (30, Step::Report("db-01", 4, &[], Some(96.0)), None),
        (
            40,
            Step::Report("db-01", 5, &[], Some(97.0)),
            Some((1, I::Open, T::New, Priority::P3)),
        ),
    ]);
    assert_eq!(e.counters().incidents_opened, 1);
    let states: Vec<&str> = effects
        .iter()
        .filter_map(|x| match x {
            Effect::Alert(a) => Some(a.transition.state.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(states, ["pending", "resolved", "pending", "firing"]);
}
#[test]
fn replay_is_deterministic() {
    let table = || {
        vec![
            (0, Step::Birth("web-01", "high"), None),
            (
                10,
                Step::Report("web-01", 1, &[("tcp:pg", Critical)][..], Some(95.0)),
                None,
            ),
            (
                40,
                Step::Report("web-01", 2, &[("tcp:pg", Fine)][..], Some(99.0)),
                None,
            ),
            (50, Step::Will("web-01"), None),
            (90, Step::Tick, None),
            (200, Step::Tick, None),
        ]
    };
    let (_, a) = run(&table());
    let (_, b) = run(&table());
    assert_eq!(a, b);
}
#[test]
fn several_series_changing_at_once_replay_identically() {
    // Five agents vanish together; their node_offline alerts fire on the same tick. Ids and
    // ticket numbers must not depend on hash-map order.
    let nodes = ["n1", "n2", "n3", "n4", "n5"];
    let run_once = || {
        let mut e = engine();
        let mut effects = Vec::new();
        for n in nodes {
            effects.extend(e.handle(0, input(0, &Step::Birth(n, "low"))).effects);
            effects.extend(e.handle(1_000, input(1_000, &Step::Will(n))).effects);
        }
        effects.extend(e.handle(40_000, Input::Tick).effects);
        effects
    };
    let a = run_once();
    assert_eq!(a, run_once());
    let numbers: Vec<(String, String)> = a
        .iter()
        .filter_map(|x| match x {
            Effect::Ticket(t) => Some((t.number.clone(), t.node.clone().unwrap_or_default())),
            _ => None,
        })
        .collect();
    assert_eq!(numbers.len(), 5);
    assert_eq!(numbers[0], ("INC-000001".to_string(), "n1".to_string()));
    assert_eq!(numbers[4], ("INC-000005".to_string(), "n5".to_string()));
}
#[test]
fn time_never_runs_backwards() {
    let mut e = engine();
    e.handle(
        50_000,
        input(
            50_000,
            &Step::Report("web-01", 1, &[("tcp:pg", Critical)], None),
        ),
    );
    // A message stamped earlier than what the engine already saw is handled at the engine's time.
    let out = e.handle(
        40_000,
        input(
            40_000,
            &Step::Report("web-01", 2, &[("tcp:pg", Fine)], None),
        ),
    );
    let resolved_at = out
        .effects
        .iter()
        .find_map(|x| match x {
            Effect::Incident(i) => i.resolved_at,
            _ => None,
        })
        .expect("resolved");
    assert_eq!(resolved_at, 50_000);
}
#[test]
fn an_alert_long_after_the_last_activity_opens_its_own_incident() {
    // Grouping window 5m (default): tcp:pg fails at 0 and stays failing; tcp:web fails 10 minutes later.
    let (_, effects) = run(&[
        (
            0,
            Step::Report("web-01", 1, &[("tcp:pg", Critical)], None),
            Some((1, I::Open, T::New, Priority::P2)),
        ),
        (
            600,
            Step::Report(
                "web-01",
                2,
                &[("tcp:pg", Critical), ("tcp:web", Critical)],
                None,
            ),
            Some((2, I::Open, T::New, Priority::P2)),
        ),
        (
            610,
            Step::Report(
                "web-01",
                3,
                &[("tcp:pg", Fine), ("tcp:web", Critical)],
                None,
            ),
            Some((1, I::Resolved, T::Resolved, Priority::P2)),
        ),
    ]);
    let tickets: BTreeSet<String> = effects
        .iter()
        .filter_map(|x| match x {
            Effect::Ticket(t) => Some(t.number.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tickets.len(), 2);
}

mod desk;
mod docs;
mod escalation;
mod restart;
