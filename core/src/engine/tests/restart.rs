//! Restart and reload: the engine resumed from a snapshot, or handed new rules and policy.

use super::*;

#[test]
fn restart_from_snapshot_continues_numbering_and_open_incident() {
    let mut e = engine();
    let out = e.handle(
        1_000,
        input(
            1_000,
            &Step::Report("web-01", 1, &[("tcp:pg", Critical)], None),
        ),
    );
    let incident = incidents_in(&out.effects)
        .into_iter()
        .next()
        .expect("incident");
    let ticket = tickets_in(&out.effects).into_iter().next().expect("ticket");
    let snapshot = Snapshot {
        nodes: Vec::new(),
        alerts: vec![(
            ActiveAlert {
                key: incident.root_alert.clone(),
                rule: "check_critical".into(),
                site: "dc1".into(),
                node: "web-01".into(),
                labels: [("check".to_string(), "tcp:pg".to_string())].into(),
                state: crate::rules::AlertState::Firing,
                started_at: 1_000,
                summary: String::new(),
                detail: String::new(),
                suppressed_by: None,
            },
            Some(incident.id),
        )],
        incidents: vec![incident],
        tickets: vec![ticket],
        next_ids: Ids {
            alert: 2,
            incident: 2,
            ticket: 2,
            ticket_event: 2,
            incident_number: 2,
            ..Ids::default()
        },
        ..Snapshot::default()
    };
    let policy = Policy::from_toml_str(Path::new("policy.toml"), POLICY).expect("policy");
    let mut e = Engine::new(policy, parse_rules("t", RULES).expect("rules"), snapshot);
    assert_eq!(e.open_incidents(), 1);
    // Still failing after the restart: nothing new.
    let out = e.handle(
        5_000,
        input(
            5_000,
            &Step::Report("web-01", 2, &[("tcp:pg", Critical)], None),
        ),
    );
    assert!(out.effects.iter().all(|x| !matches!(x, Effect::Ticket(_))));
    // Recovery resolves the restored incident.
    let out = e.handle(
        9_000,
        input(9_000, &Step::Report("web-01", 3, &[("tcp:pg", Fine)], None)),
    );
    assert!(
        out.effects
            .iter()
            .any(|x| matches!(x, Effect::Incident(i) if i.id == 1 && i.state == I::Resolved))
    );
}
#[test]
fn alerts_of_a_removed_rule_resolve_after_restart() {
    let mut e = engine();
    let out = e.handle(
        1_000,
        input(
            1_000,
            &Step::Report("web-01", 1, &[("tcp:pg", Critical)], None),
        ),
    );
    let incident = incidents_in(&out.effects)
        .into_iter()
        .next()
        .expect("incident");
    let snapshot = Snapshot {
        alerts: vec![(
            ActiveAlert {
                key: incident.root_alert.clone(),
                rule: "check_critical".into(),
                site: "dc1".into(),
                node: "web-01".into(),
                labels: BTreeMap::new(),
                state: crate::rules::AlertState::Firing,
                started_at: 1_000,
                summary: String::new(),
                detail: String::new(),
                suppressed_by: None,
            },
            Some(incident.id),
        )],
        incidents: vec![incident],
        next_ids: Ids {
            alert: 2,
            incident: 2,
            ticket: 2,
            ticket_event: 2,
            incident_number: 2,
            ..Ids::default()
        },
        ..Snapshot::default()
    };
    // The restarted collector's rules no longer contain check_critical.
    let rules = "[[rule]]\nname = \"other\"\nexpr = \"x.y > 1\"\nseverity = \"info\"\ncategory = \"software\"\nsummary = \"s\"\n";
    let mut e = Engine::new(
        Policy::default(),
        parse_rules("t", rules).expect("rules"),
        snapshot,
    );
    let out = e.handle(5_000, Input::Tick);
    assert!(out.effects.iter().any(|x| matches!(x, Effect::Alert(a) if a.transition.state == crate::rules::AlertState::Resolved)));
    assert!(
        out.effects
            .iter()
            .any(|x| matches!(x, Effect::Incident(i) if i.state == I::Resolved))
    );
    assert_eq!(e.live_alerts(), 0);
}
#[test]
fn a_node_silent_since_before_a_restart_goes_stale() {
    let rules = r#"
        [[rule]]
        name = "node_stale"
        absent_for = "3m"
        severity = "critical"
        category = "network"
        summary = "{{node}} sends nothing"
    "#;
    let mut silent = NodeRow::new("dc1", "web-01", 0);
    silent.state = crate::engine::Presence::Online;
    silent.last_report_at = Some(10_000);
    let mut stopped = NodeRow::new("dc1", "web-02", 0);
    stopped.state = crate::engine::Presence::Stopped;
    stopped.last_report_at = Some(10_000);
    let snapshot = Snapshot {
        nodes: vec![silent, stopped],
        ..Snapshot::default()
    };
    let mut e = Engine::new(
        Policy::default(),
        parse_rules("t", rules).expect("rules"),
        snapshot,
    );
    assert!(e.handle(100_000, Input::Tick).effects.is_empty());
    let out = e.handle(200_000, Input::Tick);
    let fired: Vec<_> = incidents_in(&out.effects);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].node, "web-01", "the planned stop does not page");
}
#[test]
fn reload_keeps_live_alerts_of_kept_rules_and_resolves_those_of_removed_ones() {
    let (mut e, _) = run(&[
        (0, Step::Birth("web-01", "medium"), None),
        (
            10,
            Step::Report(
                "web-01",
                1,
                &[("tcp:pg", Critical), ("tcp:web", Warning)],
                None,
            ),
            None,
        ),
    ]);
    assert_eq!(e.live_alerts(), 2);
    // check_warning is gone from the new rules; check_critical stays.
    let kept: String = RULES
        .split("[[rule]]")
        .filter(|r| !r.contains("\"check_warning\""))
        .collect::<Vec<_>>()
        .join("[[rule]]");
    let policy = Policy::from_toml_str(
        Path::new("policy.toml"),
        "[incident]\nverify_for = \"5m\"\n",
    )
    .expect("policy");
    let out = e.reload(20_000, parse_rules("t", &kept).expect("rules"), policy);
    let resolved: Vec<_> = out
        .effects
        .iter()
        .filter_map(|x| match x {
            Effect::Alert(a) if a.transition.state == crate::rules::AlertState::Resolved => {
                Some(a.transition.rule.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(resolved, vec!["check_warning".to_string()]);
    assert_eq!(e.live_alerts(), 1);
    assert_eq!(e.policy().incident.verify_for.as_secs(), 300);
    // Still critical: the kept alert does not fire again.
    let out = e.handle(
        30_000,
        input(
            30_000,
            &Step::Report("web-01", 2, &[("tcp:pg", Critical)], None),
        ),
    );
    assert!(incidents_in(&out.effects).iter().all(|i| i.id == 1));
    assert_eq!(e.open_incidents(), 1);
}
#[test]
fn policy_windows_are_stored_and_cancelled_when_they_leave_the_policy() {
    let with = r#"
        [[maintenance]]
        name = "sunday patching"
        match = { node = "web-*" }
        start = "2026-12-06T02:00:00Z"
        duration = "2h"
        every = "7d"
    "#;
    let policy = Policy::from_toml_str(Path::new("policy.toml"), with).expect("policy");
    let mut e = Engine::new(
        policy,
        parse_rules("t", RULES).expect("rules"),
        Snapshot::default(),
    );
    let windows = |effects: &[Effect]| -> Vec<MaintenanceRow> {
        effects
            .iter()
            .filter_map(|x| match x {
                Effect::Maintenance(m) => Some((**m).clone()),
                _ => None,
            })
            .collect()
    };
    let first = windows(&e.handle(1_000, Input::Tick).effects);
    assert_eq!(first.len(), 1);
    assert!(first[0].id < 0);
    assert_eq!(first[0].created_by, "policy");
    assert_eq!(first[0].cancelled_at, None);
    // Nothing new on the next input; an unchanged reload stores nothing either.
    assert!(windows(&e.handle(2_000, Input::Tick).effects).is_empty());
    let same = Policy::from_toml_str(Path::new("policy.toml"), with).expect("policy");
    let out = e.reload(3_000, parse_rules("t", RULES).expect("rules"), same);
    assert!(windows(&out.effects).is_empty());
    // Gone from the policy: stored as cancelled.
    let out = e.reload(
        4_000,
        parse_rules("t", RULES).expect("rules"),
        Policy::default(),
    );
    let gone = windows(&out.effects);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].id, first[0].id);
    assert_eq!(gone[0].cancelled_at, Some(4_000));
    // A restart whose policy lacks a stored policy window cancels it as well.
    let snapshot = Snapshot {
        maintenance: vec![first[0].clone()],
        now: 9_000,
        ..Snapshot::default()
    };
    let mut e = Engine::new(
        Policy::default(),
        parse_rules("t", RULES).expect("rules"),
        snapshot,
    );
    let gone = windows(&e.handle(9_000, Input::Tick).effects);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].cancelled_at, Some(9_000));
    assert!(
        Policy::from_toml_str(Path::new("policy.toml"), &format!("{with}\n{with}")).is_err(),
        "a window name used twice is refused"
    );
}
