//! Topology scenarios: a node goes down and what lies beneath it becomes its symptoms.

use CheckStatus::{Critical, Ok as Fine};

use super::*;

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
