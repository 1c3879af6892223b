//! Service-desk scenarios in simulated time: operator actions and their refusals, manual
//! tickets, routing, SLA clocks (pause, business hours) and every escalation trigger.

use super::*;
use crate::engine::desk::{ManualTicket, Reporter, TicketAction as A, TicketKind};

pub(super) const M: i64 = 60;
pub(super) const H: i64 = 60 * M;

/// Levels: on duty at once, senior after 1h at the previous level, manager after 2h.
pub(super) const DESK_POLICY: &str = r#"
    default_group = "service-desk"
    [grouping]
    window = "2h"
    [incident]
    verify_for = "10m"
    [sla.P1]
    response = "15m"
    resolution = "4h"
    [sla.P2]
    response = "30m"
    resolution = "8h"
    [sla.P3]
    response = "4h"
    resolution = "3d"
    [sla.P4]
    response = "1d"
    resolution = "7d"
    [[escalation]]
    name = "on-duty"
    after = "0s"
    notify = ["webhook:oncall", "group"]
    [[escalation]]
    name = "senior"
    after = "1h"
    notify = ["email:senior"]
    [[escalation]]
    name = "manager"
    after = "2h"
    notify = ["email:manager", "webhook:vendor"]
    [notify.webhook.oncall]
    url = "http://127.0.0.1:9000/hook"
    [notify.webhook.vendor]
    url = "http://127.0.0.1:9001/vendor"
    [notify.email.senior]
    to = ["senior@example.com"]
    [notify.email.manager]
    to = ["manager@example.com"]
    [notify.email.network]
    to = ["network@example.com"]
    [group.network]
    notify = ["email:network"]
    [[route]]
    match = { category = "network", site = "dc2" }
    group = "network-dc2"
    [[route]]
    match = { category = "network" }
    group = "network"
    [[route]]
    match = { "labels.service" = "payments" }
    group = "payments"
"#;

/// An engine and everything it produced, driven in simulated seconds.
pub(super) struct Desk {
    pub(super) e: Engine,
    pub(super) effects: Vec<Effect>,
    base: Millis,
}

impl Desk {
    pub(super) fn new(policy: &str) -> Desk {
        Desk::at(policy, 0)
    }

    /// A desk whose second 0 is `base` ms since the epoch.
    pub(super) fn at(policy: &str, base: Millis) -> Desk {
        let policy = Policy::from_toml_str(Path::new("policy.toml"), policy).expect("policy");
        Desk {
            e: Engine::new(
                policy,
                parse_rules("t", RULES).expect("rules"),
                Snapshot::default(),
            ),
            effects: Vec::new(),
            base,
        }
    }

    pub(super) fn ms(&self, s: i64) -> Millis {
        self.base + s * 1000
    }

    pub(super) fn step(&mut self, s: i64, step: Step) {
        let now = self.ms(s);
        let out = self.e.handle(now, input(now, &step));
        self.effects.extend(out.effects);
    }

    pub(super) fn tick(&mut self, s: i64) {
        self.step(s, Step::Tick);
    }

    pub(super) fn command(&mut self, s: i64, cmd: Command) -> Result<TicketRow, CommandError> {
        let (reply, out) = self.e.command(self.ms(s), cmd)?;
        self.effects.extend(out.effects);
        match reply {
            Reply::Ticket(t) => Ok(*t),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub(super) fn act(&mut self, s: i64, id: i64, action: A) -> Result<TicketRow, CommandError> {
        self.command(
            s,
            Command::Ticket {
                id,
                action,
                actor: "alice".into(),
                stored: None,
                history: Vec::new(),
            },
        )
    }

    pub(super) fn open(&mut self, s: i64, m: ManualTicket) -> TicketRow {
        self.command(
            s,
            Command::OpenTicket {
                ticket: Box::new(m),
                actor: "bob".into(),
            },
        )
        .expect("opened")
    }

    /// A monitoring ticket: `node` (with this criticality) reports `check` critical at `s`.
    pub(super) fn fault(
        &mut self,
        s: i64,
        node: &'static str,
        criticality: &'static str,
    ) -> TicketRow {
        self.step(s, Step::Birth(node, criticality));
        self.step(
            s,
            Step::Report(node, (s + 1) as u64, &[("tcp:pg", Critical)], None),
        );
        self.tickets().last().cloned().expect("a ticket opened")
    }

    pub(super) fn recover(&mut self, s: i64, node: &'static str) {
        self.step(
            s,
            Step::Report(node, (s + 1) as u64, &[("tcp:pg", Fine)], None),
        );
    }

    pub(super) fn tickets(&self) -> Vec<TicketRow> {
        tickets_in(&self.effects)
    }

    /// The ticket as last written.
    pub(super) fn ticket(&self, id: i64) -> TicketRow {
        self.tickets()
            .into_iter()
            .rev()
            .find(|t| t.id == id)
            .expect("ticket written")
    }

    /// (kind, actor, message) of a ticket's log.
    pub(super) fn log(&self, id: i64) -> Vec<(String, String, String)> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::TicketEvent(ev) if ev.ticket_id == id => {
                    Some((ev.kind.clone(), ev.actor.clone(), ev.message.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn kinds(&self, id: i64) -> Vec<String> {
        self.log(id).into_iter().map(|(k, _, _)| k).collect()
    }

    pub(super) fn escalations(&self, id: i64) -> Vec<serde_json::Value> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::TicketEvent(ev) if ev.ticket_id == id && ev.kind == "escalated" => {
                    Some(ev.data.clone())
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn notifications(&self) -> Vec<NotificationRow> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notification(n) => Some((**n).clone()),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn request(summary: &str) -> ManualTicket {
    ManualTicket {
        kind: TicketKind::Request,
        summary: summary.into(),
        description: "needs a new VPN profile".into(),
        reporter: Reporter {
            name: "Carol".into(),
            department: Some("Finance".into()),
            contact: Some("carol@example.com".into()),
        },
        category: None,
        impact: None,
        urgency: None,
        site: None,
        node: None,
        services: vec![],
        environment: None,
        started_at: None,
        group: None,
        assignee: None,
    }
}

pub(super) fn conflict(r: Result<TicketRow, CommandError>) -> String {
    match r {
        Err(CommandError::Conflict(m)) => m,
        other => panic!("want a conflict, got {other:?}"),
    }
}

pub(super) fn invalid(r: Result<TicketRow, CommandError>) -> String {
    match r {
        Err(CommandError::Invalid(m)) => m,
        other => panic!("want invalid, got {other:?}"),
    }
}

#[test]
fn a_service_request_through_every_operator_action() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.open(0, request("VPN access for Carol"));
    assert_eq!(t.number, "REQ-000001");
    assert_eq!((t.kind.as_str(), t.state), ("request", T::New));
    // Requests default to low urgency; medium impact: P4, routed to the default group.
    assert_eq!(t.priority, Priority::P4);
    assert_eq!(t.assignment_group, "service-desk");
    assert_eq!(t.reporter["name"], "Carol");
    assert_eq!(t.reporter["department"], "Finance");
    assert_eq!(t.reporter["entered_by"], "bob");
    assert_eq!(t.sla.response_due_at, Some(24 * H * 1000));
    let id = t.id;

    let t = d.act(60, id, A::Acknowledge { note: None }).expect("ack");
    assert_eq!(t.state, T::Acknowledged);
    assert_eq!(
        t.assignee.as_deref(),
        Some("alice"),
        "the acknowledger takes it"
    );
    assert_eq!(t.acknowledged_at, Some(60_000));
    assert_eq!(t.sla.response_due_at, None);
    let t = d
        .act(
            120,
            id,
            A::Assign {
                assignee: Some("dave".into()),
                group: Some("network".into()),
                reason: Some("VPN is the network team's".into()),
            },
        )
        .expect("transfer");
    assert_eq!(t.assignment_group, "network");
    assert_eq!(t.assignee.as_deref(), Some("dave"));
    assert_eq!(t.state, T::InProgress);
    let t = d
        .act(
            180,
            id,
            A::Comment {
                text: "profile template found".into(),
            },
        )
        .expect("comment");
    assert_eq!(t.state, T::InProgress);
    let t = d
        .act(
            240,
            id,
            A::Pend {
                reason: "waiting for Carol's manager to approve".into(),
            },
        )
        .expect("pend");
    assert_eq!(t.state, T::Pending);
    assert_eq!(t.sla.resolution_due_at, None, "paused");
    let t = d.act(300, id, A::Resume { note: None }).expect("resume");
    assert_eq!(t.state, T::InProgress);
    let t = d
        .act(
            360,
            id,
            A::Resolve {
                notes: "profile issued".into(),
                cause_code: "fulfilled".into(),
            },
        )
        .expect("resolve");
    assert_eq!(t.state, T::Resolved);
    assert_eq!(t.resolution.as_deref(), Some("profile issued"));
    let t = d
        .act(
            420,
            id,
            A::Close {
                note: Some("Carol confirmed".into()),
            },
        )
        .expect("close");
    assert_eq!(t.state, T::Closed);
    assert_eq!(t.closed_at, Some(420_000));
    assert_eq!(
        d.kinds(id),
        [
            "opened",
            "acknowledged",
            "transferred",
            "comment",
            "pending",
            "resumed",
            "resolved",
            "closed"
        ]
    );
    let log = d.log(id);
    assert!(log[1..].iter().all(|(_, actor, _)| actor == "alice"));
    assert!(
        log[2].2.contains("from service-desk to network") && log[2].2.contains("network team's")
    );
    assert!(log[4].2.contains("waiting for Carol's manager"));
    // The transfer handed the record to the receiving group's own targets.
    let n = d.notifications();
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(
        (n[0].channel.as_str(), n[0].target.as_str()),
        ("email", "network")
    );
    assert_eq!(n[0].event, "ticket.transferred");
    assert_eq!(n[0].payload["handover"]["record"]["number"], "REQ-000001");
}

#[test]
fn invalid_actions_are_refused_with_what_is_allowed_and_change_nothing() {
    let mut d = Desk::new(DESK_POLICY);
    let id = d.open(0, request("printer")).id;
    // The acknowledger becomes the assignee by name, without the credential the API notes.
    let other = d.open(1, request("scanner")).id;
    let t = d
        .command(
            2,
            Command::Ticket {
                id: other,
                action: A::Acknowledge { note: None },
                actor: "carol via operator token".into(),
                stored: None,
                history: Vec::new(),
            },
        )
        .expect("ack");
    assert_eq!(t.assignee.as_deref(), Some("carol"));
    assert_eq!(
        d.log(other).last().map(|l| l.1.clone()),
        Some("carol via operator token".into())
    );
    let before = d.effects.len();
    let cases: Vec<(A, &str)> = vec![
        (A::Close { note: None }, "cannot close a ticket that is new"),
        (
            A::Resume { note: None },
            "cannot resume a ticket that is new",
        ),
        (
            A::Reopen { reason: "x".into() },
            "cannot reopen a ticket that is new",
        ),
    ];
    for (action, want) in cases {
        let msg = conflict(d.act(10, id, action));
        assert!(msg.contains(want) && msg.contains("allowed:"), "{msg}");
        assert!(msg.starts_with("REQ-000001: "), "{msg}");
    }
    // Missing required fields.
    assert!(
        invalid(d.act(
            10,
            id,
            A::Resolve {
                notes: "done".into(),
                cause_code: " ".into()
            }
        ))
        .contains("cause_code")
    );
    assert!(invalid(d.act(10, id, A::Comment { text: "".into() })).contains("text"));
    assert!(invalid(d.act(10, id, A::Pend { reason: "".into() })).contains("reason"));
    let msg = invalid(d.act(
        10,
        id,
        A::Assign {
            assignee: None,
            group: Some("network".into()),
            reason: None,
        },
    ));
    assert!(msg.contains("transfer") && msg.contains("reason"), "{msg}");
    assert_eq!(d.effects.len(), before, "refusals write nothing");
    assert!(matches!(
        d.act(10, 999, A::Acknowledge { note: None }),
        Err(CommandError::NotFound(_))
    ));

    d.act(20, id, A::Acknowledge { note: None }).expect("ack");
    assert!(
        conflict(d.act(30, id, A::Acknowledge { note: None }))
            .contains("cannot acknowledge a ticket that is acknowledged")
    );
    d.act(
        40,
        id,
        A::Resolve {
            notes: "fixed".into(),
            cause_code: "config".into(),
        },
    )
    .expect("resolve");
    assert!(
        conflict(d.act(
            50,
            id,
            A::Escalate {
                reason: "x".into(),
                complaint: false
            }
        ))
        .contains("reopen")
    );
    let closed = d.act(60, id, A::Close { note: None }).expect("close");
    // The engine lets go of closed tickets: actions on them need the stored row; only reopen.
    let stored = Some(Box::new(closed.clone()));
    // The API hands in the stored log too: the reopen's handover carries it.
    let history: Vec<TicketEventRow> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::TicketEvent(ev) if ev.ticket_id == id => Some(ev.clone()),
            _ => None,
        })
        .collect();
    let msg = conflict(d.command(
        70,
        Command::Ticket {
            id,
            action: A::Comment {
                text: "late note".into(),
            },
            actor: "alice".into(),
            stored: stored.clone(),
            history: Vec::new(),
        },
    ));
    assert!(
        msg.contains("closed") && msg.contains("allowed: reopen"),
        "{msg}"
    );
    let t = d
        .command(
            80,
            Command::Ticket {
                id,
                action: A::Reopen {
                    reason: "printer jams again".into(),
                },
                actor: "alice".into(),
                stored,
                history,
            },
        )
        .expect("reopen a closed ticket");
    assert_eq!((t.state, t.reopened, t.closed_at), (T::InProgress, 1, None));
    assert!(t.close_held.is_some());
    assert_eq!(
        d.kinds(id).last().map(String::as_str),
        Some("escalated"),
        "a reopen escalates"
    );
}

#[test]
fn manual_fault_report_gets_an_inc_number_the_nodes_environment_and_routing() {
    let mut d = Desk::new(DESK_POLICY);
    d.step(0, Step::Birth("db-01", "high"));
    let mut m = request("payments are slow");
    m.kind = TicketKind::Incident;
    m.node = Some("db-01".into());
    m.urgency = Some(Level::High);
    m.category = Some(crate::rules::Category::Network);
    m.services = vec!["payments".into()];
    m.environment = Some(serde_json::json!({"browser": "firefox 140"}));
    let t = d.open(10, m.clone());
    assert_eq!(t.number, "INC-000001");
    assert_eq!(
        t.priority,
        Priority::P1,
        "high impact (node label) x high urgency"
    );
    assert_eq!(t.environment["inventory"]["os"], "Debian GNU/Linux");
    assert_eq!(t.environment["reported"]["browser"], "firefox 140");
    assert_eq!(t.affected["services"][0], "payments");
    assert_eq!(t.site.as_deref(), Some("dc1"));
    assert_eq!(t.assignment_group, "network", "category network at dc1");
    // P1: the first level hears at once, with the handover.
    let esc = d.escalations(t.id);
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0]["escalation"]["triggers"][0], "urgent");
    // Unknown node: refused with what to do.
    m.node = Some("nope".into());
    assert!(
        invalid(d.command(
            20,
            Command::OpenTicket {
                ticket: Box::new(m),
                actor: "bob".into()
            }
        ))
        .contains("not known")
    );
    // A monitoring ticket takes the next INC number.
    let inc = d.fault(30, "web-01", "low");
    assert_eq!(inc.number, "INC-000002");
}

#[test]
fn routing_first_match_wins_and_falls_back_to_the_default_group() {
    let mut d = Desk::new(DESK_POLICY);
    let cases = [
        (
            Some(crate::rules::Category::Network),
            Some("dc2"),
            "network-dc2",
        ),
        (
            Some(crate::rules::Category::Network),
            Some("dc1"),
            "network",
        ),
        (
            Some(crate::rules::Category::Hardware),
            Some("dc2"),
            "service-desk",
        ),
        (None, None, "service-desk"),
    ];
    for (i, (category, site, group)) in cases.into_iter().enumerate() {
        let mut m = request("route me");
        m.category = category;
        m.site = site.map(String::from);
        let t = d.open(i as i64, m);
        assert_eq!(t.assignment_group, group, "{category:?} at {site:?}");
    }
    // Node labels route too.
    d.step(10, Step::Birth("pay-01", "medium"));
    let mut m = request("labels");
    m.node = Some("pay-01".into());
    // Birth gives only a criticality label; a payments node routes to payments.
    let t = d.open(11, m.clone());
    assert_eq!(t.assignment_group, "service-desk");
    m.group = Some("dba".into());
    assert_eq!(
        d.open(12, m).assignment_group,
        "dba",
        "an explicit group wins"
    );
}

#[test]
fn monitoring_ticket_moves_with_its_incident_and_recurrence_reopens_and_escalates() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "low");
    d.recover(M, "web-01");
    let r = d.ticket(t.id);
    assert_eq!(r.state, T::Resolved);
    assert_eq!(r.resolution.as_deref(), Some("recovered automatically"));
    // Recurs inside the 10-minute verification period: reopened, escalated.
    d.step(
        5 * M,
        Step::Report("web-01", 500, &[("tcp:pg", Critical)], None),
    );
    let r = d.ticket(t.id);
    assert_eq!(
        (r.state, r.reopened, r.resolution.clone()),
        (T::New, 1, None)
    );
    let esc = d.escalations(t.id);
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0]["escalation"]["triggers"][0], "reopened");
    // Recovers again and stays quiet: closed after verification.
    d.recover(6 * M, "web-01");
    d.tick(16 * M);
    assert_eq!(d.ticket(t.id).state, T::Closed);
    assert_eq!(d.kinds(t.id).last().map(String::as_str), Some("closed"));
}

#[test]
fn an_operators_comment_holds_the_automatic_close_until_an_operator_closes() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "low");
    d.act(
        M,
        t.id,
        A::Comment {
            text: "looking at the pg logs".into(),
        },
    )
    .expect("comment");
    // A comment while it is being worked does not hold it; one during verification (the fix
    // is in doubt) does.
    assert!(d.ticket(t.id).close_held.is_none());
    d.recover(2 * M, "web-01");
    d.act(
        3 * M,
        t.id,
        A::Comment {
            text: "user still sees timeouts".into(),
        },
    )
    .expect("comment");
    d.tick(13 * M);
    let r = d.ticket(t.id);
    assert_eq!(r.state, T::Resolved, "held for an operator");
    assert!(
        d.log(t.id)
            .iter()
            .any(|(k, _, m)| k == "verified" && m.contains("alice commented"))
    );
    // Closing it closes the incident with it.
    d.act(
        14 * M,
        t.id,
        A::Close {
            note: Some("confirmed with the DBA".into()),
        },
    )
    .expect("close");
    assert_eq!(d.ticket(t.id).state, T::Closed);
    assert_eq!(
        incidents_in(&d.effects).last().map(|i| i.state),
        Some(I::Closed)
    );
    assert_eq!(d.e.open_incidents(), 0);
}

#[test]
fn closing_while_alerts_fire_is_refused() {
    let mut d = Desk::new(DESK_POLICY);
    let t = d.fault(0, "web-01", "low");
    let r = d
        .act(
            M,
            t.id,
            A::Resolve {
                notes: "restarted pg".into(),
                cause_code: "software".into(),
            },
        )
        .expect("resolve");
    assert_eq!(r.state, T::Resolved);
    assert!(
        d.log(t.id)
            .last()
            .is_some_and(|(_, _, m)| m.contains("still firing"))
    );
    let msg = conflict(d.act(2 * M, t.id, A::Close { note: None }));
    assert!(msg.contains("still fire"), "{msg}");
    // Monitoring confirms the fix, then the ticket closes after verification.
    d.recover(3 * M, "web-01");
    assert_eq!(
        d.ticket(t.id).resolution.as_deref(),
        Some("restarted pg"),
        "operator's notes kept"
    );
    d.tick(14 * M);
    assert_eq!(d.ticket(t.id).state, T::Closed);
}

#[test]
fn every_ticket_event_reaches_the_event_targets_once_per_target() {
    let policy = format!("{DESK_POLICY}\n[notify.mqtt.bus]\ntopic = \"tickets\"\n").replace(
        "default_group = \"service-desk\"",
        "default_group = \"service-desk\"\n[notify]\nevents = [\"mqtt:bus\"]",
    );
    let mut d = Desk::new(&policy);
    let t = d.open(0, request("hello"));
    d.act(10, t.id, A::Acknowledge { note: None }).expect("ack");
    let n = d.notifications();
    let events: Vec<&str> = n.iter().map(|n| n.event.as_str()).collect();
    assert_eq!(events, ["ticket.opened", "ticket.acknowledged"]);
    assert!(n.iter().all(|n| n.channel == "mqtt" && n.target == "bus"));
    assert_ne!(
        n[0].key, n[1].key,
        "each notification has its own idempotency key"
    );
    assert_eq!(n[1].payload["ticket"]["state"], "acknowledged");
    assert_eq!(n[1].payload["entry"]["actor"], "alice");
}

#[test]
fn a_new_ticket_lists_similar_past_incidents_and_how_they_were_resolved() {
    let mut d = Desk::new(DESK_POLICY);
    let first = d.fault(0, "web-01", "low");
    d.act(
        M,
        first.id,
        A::Resolve {
            notes: "vacuumed the pg table".into(),
            cause_code: "capacity".into(),
        },
    )
    .expect("resolve");
    d.recover(2 * M, "web-01");
    d.tick(13 * M);
    assert_eq!(d.ticket(first.id).state, T::Closed);
    let second = d.fault(H, "web-01", "low");
    assert_ne!(second.id, first.id);
    assert_eq!(second.similar[0]["number"], first.number.as_str());
    assert_eq!(second.similar[0]["resolution"], "vacuumed the pg table");
    assert_eq!(second.similar[0]["cause_code"], "capacity");
    assert!(
        second.description.contains("Similar past incidents"),
        "{}",
        second.description
    );
}
