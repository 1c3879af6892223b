//! Lifecycle scenarios: flapping, hysteresis, recurrence, problems, maintenance, grouping,
//! priority growth and replay.

use CheckStatus::{Critical, Ok as Fine};

use super::*;

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
