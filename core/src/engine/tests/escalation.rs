//! SLA clocks and escalation in simulated time: the response target, the 75% and 100% marks
//! of the resolution target, level delays (deferred triggers), pending, business hours, P1 at
//! once, and the state that survives a restart.

use super::desk::*;
use super::*;
use crate::engine::desk::TicketAction as A;

#[test]
fn unacknowledged_response_target_escalates_with_the_full_record() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "medium"); // critical check, medium impact: P2
    assert_eq!(t.priority, Priority::P2);
    assert_eq!(t.sla.response_due_at, Some(30 * M * 1000));
    assert!(d.escalations(t.id).is_empty(), "P2 does not page at once");
    d.act(
        10 * M,
        t.id,
        A::Comment {
            text: "pg is refusing connections; restarted once, no change".into(),
        },
    )
    .expect("comment");
    d.tick(30 * M - 1);
    assert!(d.escalations(t.id).is_empty());
    d.tick(30 * M);
    let esc = d.escalations(t.id);
    assert_eq!(esc.len(), 1, "{:?}", d.kinds(t.id));
    let e = &esc[0];
    assert_eq!(e["escalation"]["level"], 1);
    assert_eq!(e["escalation"]["name"], "on-duty");
    assert_eq!(e["escalation"]["triggers"][0], "response_breached");
    let h = &e["handover"];
    assert!(
        h["record"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("tcp:pg")
    );
    assert_eq!(
        h["record"]["environment"]["inventory"]["os"],
        "Debian GNU/Linux"
    );
    assert_eq!(h["state"], "new");
    assert!(
        h["diagnosis"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("restarted once")
    );
    assert!(h["sla"]["response_breached_at"].is_string());
    assert!(h["history"].as_array().is_some_and(|a| a.len() >= 3));
    let ticket = d.ticket(t.id);
    assert_eq!(ticket.escalation_level, 1);
    assert_eq!(ticket.sla.response_breached_at, Some(30 * M * 1000));
    // One notification per target of level 1 (the group has no targets of its own).
    let n = d.notifications();
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].channel, "webhook");
    assert_eq!(n[0].target, "oncall");
    assert_eq!(n[0].event, "ticket.escalated");
    assert!(n[0].key.starts_with("INC-000001:"), "{}", n[0].key);
    assert_eq!(n[0].payload["handover"], *h);
    // Acknowledged in time: nothing.
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "medium");
    d.act(29 * M, t.id, A::Acknowledge { note: None })
        .expect("ack");
    d.tick(31 * M);
    assert!(d.escalations(t.id).is_empty());
}

#[test]
fn resolution_75_and_100_percent_climb_the_levels() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "medium"); // P2: resolve within 8h
    d.act(M, t.id, A::Acknowledge { note: None }).expect("ack");
    assert_eq!(d.ticket(t.id).sla.resolution_warn_at, Some(6 * H * 1000));
    d.tick(6 * H - 1);
    assert!(d.escalations(t.id).is_empty());
    d.tick(6 * H);
    d.tick(8 * H);
    let esc = d.escalations(t.id);
    let got: Vec<(u64, String)> = esc
        .iter()
        .map(|e| {
            (
                e["escalation"]["level"].as_u64().unwrap_or(0),
                e["escalation"]["triggers"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "resolution_75".to_string()),
            (2, "resolution_breached".to_string())
        ]
    );
    let kinds = d.kinds(t.id);
    assert!(
        kinds.contains(&"sla_warning".to_string()) && kinds.contains(&"sla_breached".to_string())
    );
    let senior: Vec<_> = d
        .notifications()
        .into_iter()
        .filter(|n| n.target == "senior")
        .collect();
    assert_eq!(senior.len(), 1);
    assert_eq!(
        d.ticket(t.id).sla.resolution_breached_at,
        Some(8 * H * 1000)
    );
}

#[test]
fn an_early_trigger_waits_for_the_next_levels_delay() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "medium");
    d.tick(30 * M); // response breached: level 1
    // Ten minutes later the operator asks for more help: requests go up at once.
    d.act(
        40 * M,
        t.id,
        A::Escalate {
            reason: "needs a DBA".into(),
            complaint: false,
        },
    )
    .expect("escalate");
    assert_eq!(d.ticket(t.id).escalation_level, 2);
    // The 75% mark at 6h: level 3 (manager) only after 2h at level 2 -> 40m + 2h.
    d.tick(2 * H);
    assert_eq!(d.ticket(t.id).escalation_level, 2);
    d.act(2 * H + M, t.id, A::Acknowledge { note: None })
        .expect("ack");
    // Complaint: immediate.
    d.act(
        2 * H + 2 * M,
        t.id,
        A::Escalate {
            reason: "user unhappy with progress".into(),
            complaint: true,
        },
    )
    .expect("complaint");
    let t2 = d.ticket(t.id);
    assert_eq!(t2.escalation_level, 3);
    let esc = d.escalations(t.id);
    assert_eq!(
        esc.last().map(|e| e["escalation"]["triggers"][0].clone()),
        Some("complaint".into())
    );
    // At the top level a trigger tells the top level again.
    d.tick(6 * H);
    let esc = d.escalations(t.id);
    assert_eq!(
        esc.last().map(|e| e["escalation"]["level"].clone()),
        Some(3.into())
    );
    assert_eq!(
        esc.last().map(|e| e["escalation"]["triggers"][0].clone()),
        Some("resolution_75".into())
    );

    // A deferred escalation: priority raised (P3 -> P2) 10 minutes after level 1.
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "low"); // P3
    d.act(
        20 * M,
        t.id,
        A::Escalate {
            reason: "beyond first line".into(),
            complaint: false,
        },
    )
    .expect("level 1 at 20m");
    // The node turns out more important and a second check fails: P2 now.
    d.step(30 * M, Step::Birth("web-01", "medium"));
    d.step(
        30 * M,
        Step::Report(
            "web-01",
            999,
            &[("tcp:pg", Critical), ("tcp:web", Critical)],
            None,
        ),
    );
    assert_eq!(d.ticket(t.id).priority, Priority::P2);
    assert_eq!(
        d.ticket(t.id).escalation_level,
        1,
        "senior only after 1h at level 1"
    );
    let deferred = d.ticket(t.id).sla.deferred.expect("deferred");
    assert_eq!(deferred.at, (20 * M + H) * 1000);
    assert_eq!(deferred.triggers, ["priority_raised"]);
    assert!(d.kinds(t.id).contains(&"escalation_deferred".to_string()));
    d.tick(20 * M + H - 1);
    assert_eq!(d.ticket(t.id).escalation_level, 1);
    d.tick(20 * M + H);
    assert_eq!(d.ticket(t.id).escalation_level, 2);
    assert!(d.ticket(t.id).sla.deferred.is_none());
}

#[test]
fn pending_pauses_the_resolution_clock() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "medium"); // P2: 8h to resolve
    d.act(M, t.id, A::Acknowledge { note: None }).expect("ack");
    d.act(
        H,
        t.id,
        A::Pend {
            reason: "vendor ticket 4711".into(),
        },
    )
    .expect("pend");
    let p = d.ticket(t.id);
    assert_eq!(
        (p.sla.resolution_due_at, p.sla.resolution_warn_at),
        (None, None)
    );
    assert_eq!(p.sla.resolution_elapsed_ms, H * 1000);
    d.tick(9 * H);
    assert!(d.escalations(t.id).is_empty(), "no breach while pending");
    d.act(11 * H, t.id, A::Resume { note: None })
        .expect("resume");
    let r = d.ticket(t.id);
    // 1h used before the pause; 7h left from 11h; 75% (6h) after 5h more.
    assert_eq!(r.sla.resolution_due_at, Some(18 * H * 1000));
    assert_eq!(r.sla.resolution_warn_at, Some(16 * H * 1000));
    assert!(
        d.log(t.id)
            .iter()
            .any(|(k, _, m)| k == "resumed" && m.contains("10h"))
    );
    d.tick(18 * H);
    assert_eq!(
        d.ticket(t.id).sla.resolution_breached_at,
        Some(18 * H * 1000)
    );
}

#[test]
fn business_hours_push_the_due_times_over_the_weekend() {
    let policy = format!(
        "{DESK_POLICY}\n[calendar.office]\ntimezone = \"UTC\"\nhours = {{ mon = \"09:00-17:00\", tue = \"09:00-17:00\", wed = \"09:00-17:00\", thu = \"09:00-17:00\", fri = \"09:00-17:00\" }}\n"
    )
    .replace("[sla.P3]\n    response = \"4h\"", "[sla.P3]\n    calendar = \"office\"\n    response = \"4h\"");
    // Friday 2026-11-27 16:00 UTC.
    let friday: Millis = "2026-11-27T16:00:00Z"
        .parse::<jiff::Timestamp>()
        .expect("ts")
        .as_millisecond();
    let mut d = Desk::at(&policy, friday);
    let mut m = request("new laptop");
    m.urgency = Some(Level::Medium);
    let t = d.open(0, m); // P3: 4 business hours to acknowledge
    assert_eq!(t.priority, Priority::P3);
    // 1h on Friday, 3h on Monday from 09:00: due Monday 12:00.
    let monday_noon = friday + (2 * 24 + 20) * H * 1000;
    assert_eq!(t.sla.response_due_at, Some(monday_noon));
    d.tick(2 * 24 * H); // Sunday 16:00
    assert!(d.ticket(t.id).sla.response_breached_at.is_none());
    d.tick((2 * 24 + 20) * H);
    assert_eq!(d.ticket(t.id).sla.response_breached_at, Some(monday_noon));
}

#[test]
fn p1_notifies_the_first_level_at_once_and_p3_does_not() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "high"); // critical check on a high-impact node: P1
    assert_eq!(t.priority, Priority::P1);
    let esc = d.escalations(t.id);
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0]["escalation"]["triggers"][0], "urgent");
    assert_eq!(d.ticket(t.id).escalation_level, 1);
    assert_eq!(d.notifications().len(), 1);
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "low"); // P3
    assert_eq!(t.priority, Priority::P3);
    assert!(d.escalations(t.id).is_empty());
    assert!(d.notifications().is_empty());
    // notify_at_once can be switched on for other priorities.
    let policy = DESK_POLICY.replace(
        "[sla.P3]\n    response = \"4h\"",
        "[sla.P3]\n    notify_at_once = true\n    response = \"4h\"",
    );
    let mut d = Desk::new(&policy);
    let t = d.fault(0, "web-01", "low");
    assert_eq!(d.escalations(t.id).len(), 1);
}

#[test]
fn sla_clocks_deferred_escalations_and_the_log_survive_a_restart() {
    let mut d = Desk::new(DESK_POLICY);
    let mut m = request("share is read-only");
    m.urgency = Some(Level::High); // medium x high: P2, 30m to acknowledge
    let t = d.open(0, m);
    d.act(
        5 * M,
        t.id,
        A::Comment {
            text: "permissions look fine".into(),
        },
    )
    .expect("comment");
    d.act(
        6 * M,
        t.id,
        A::Escalate {
            reason: "beyond first line".into(),
            complaint: false,
        },
    )
    .expect("level 1");
    // Response breach at 30m asks for level 2, which waits for 1h at level 1 (until 66m).
    d.tick(30 * M);
    let before = d.ticket(t.id);
    assert_eq!(
        before.sla.deferred.as_ref().map(|x| x.at),
        Some(66 * M * 1000)
    );
    let events: Vec<TicketEventRow> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::TicketEvent(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect();
    // The collector restarts: the store hands back the ticket and its log.
    let policy = Policy::from_toml_str(Path::new("policy.toml"), DESK_POLICY).expect("policy");
    let next_ids = Ids {
        ticket: 2,
        ticket_event: events.iter().map(|e| e.id).max().unwrap_or(0) + 1,
        request_number: 2,
        notification: 10,
        ..Ids::default()
    };
    let mut e = Engine::new(
        policy,
        parse_rules("t", RULES).expect("rules"),
        Snapshot {
            tickets: vec![before.clone()],
            ticket_events: events,
            now: 40 * M * 1000,
            next_ids,
            ..Snapshot::default()
        },
    );
    let out = e.handle(66 * M * 1000 - 1, Input::Tick);
    assert!(
        !out.effects
            .iter()
            .any(|x| matches!(x, Effect::TicketEvent(ev) if ev.kind == "escalated"))
    );
    let out = e.handle(66 * M * 1000, Input::Tick);
    let esc: Vec<&TicketEventRow> = out
        .effects
        .iter()
        .filter_map(|x| match x {
            Effect::TicketEvent(ev) if ev.kind == "escalated" => Some(ev),
            _ => None,
        })
        .collect();
    assert_eq!(esc.len(), 1);
    let data = &esc[0].data;
    assert_eq!(data["escalation"]["level"], 2);
    assert_eq!(data["escalation"]["triggers"][0], "response_breached");
    // The handover still carries what happened before the restart.
    assert!(
        data["handover"]["diagnosis"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("permissions")
    );
    let n: Vec<&NotificationRow> = out
        .effects
        .iter()
        .filter_map(|x| match x {
            Effect::Notification(n) => Some(&**n),
            _ => None,
        })
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].id, n[0].target.as_str()), (10, "senior"));
}

#[test]
fn a_priority_raise_keeps_the_time_used_in_the_old_calendar_and_p1_pages_at_once() {
    // P3 counts business hours, P1 around the clock; level 1 only after 30 minutes.
    let policy = format!(
        "{DESK_POLICY}\n[calendar.office]\ntimezone = \"UTC\"\nhours = {{ mon = \"09:00-17:00\", tue = \"09:00-17:00\", wed = \"09:00-17:00\", thu = \"09:00-17:00\", fri = \"09:00-17:00\" }}\n"
    )
    .replace("[sla.P3]\n    response = \"4h\"", "[sla.P3]\n    calendar = \"office\"\n    response = \"4h\"")
    .replace("name = \"on-duty\"\n    after = \"0s\"", "name = \"on-duty\"\n    after = \"30m\"")
    .replace("window = \"2h\"", "window = \"3d\"");
    // Friday 2026-11-27 16:00 UTC.
    let friday: Millis = "2026-11-27T16:00:00Z"
        .parse::<jiff::Timestamp>()
        .expect("ts")
        .as_millisecond();
    let mut d = Desk::at(&policy, friday);
    let t = d.fault(0, "web-01", "low"); // P3, business hours
    assert_eq!(t.priority, Priority::P3);
    d.act(60, t.id, A::Acknowledge { note: None }).expect("ack");
    // Monday 08:00: the node turns out to be business-critical and a second check fails: P1.
    let monday = (2 * 24 + 16) * H;
    d.step(monday, Step::Birth("web-01", "high"));
    d.step(
        monday,
        Step::Report(
            "web-01",
            9_999,
            &[("tcp:pg", Critical), ("tcp:web", Critical)],
            None,
        ),
    );
    let r = d.ticket(t.id);
    assert_eq!(r.priority, Priority::P1);
    // One business hour was used on Friday; P1 (4h around the clock) has 3h left.
    assert_eq!(r.sla.resolution_elapsed_ms, H * 1000);
    assert_eq!(
        r.sla.resolution_due_at,
        Some(friday + (monday + 3 * H) * 1000)
    );
    assert!(r.sla.resolution_breached_at.is_none());
    // Raised to P1: level 1 at once, without waiting for its 30 minutes.
    let esc = d.escalations(t.id);
    assert_eq!(esc.len(), 1, "{:?}", d.kinds(t.id));
    assert_eq!(esc[0]["escalation"]["triggers"][0], "urgent");
    d.tick(monday + 1);
    assert_eq!(d.escalations(t.id).len(), 1, "no breach fired by the raise");
}

#[test]
fn a_reloaded_policy_moves_the_due_times_of_open_tickets() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "medium"); // P2: acknowledge within 30m
    assert_eq!(d.ticket(t.id).sla.response_due_at, Some(30 * M * 1000));
    let policy = Policy::from_toml_str(
        Path::new("policy.toml"),
        &DESK_POLICY.replace(
            "[sla.P2]\n    response = \"30m\"",
            "[sla.P2]\n    response = \"10m\"",
        ),
    )
    .expect("policy");
    let out =
        d.e.reload(M * 1000, parse_rules("t", RULES).expect("rules"), policy);
    d.effects.extend(out.effects);
    assert_eq!(d.ticket(t.id).sla.response_due_at, Some(10 * M * 1000));
    d.tick(10 * M);
    assert_eq!(d.escalations(t.id).len(), 1);
}
