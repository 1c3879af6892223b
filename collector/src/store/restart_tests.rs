//! Restart tests: an engine's effects through a real DuckDB, a snapshot, and a second engine
//! that must carry on exactly where the first stopped (topology merges, suppression, problems).

use std::path::Path;

use tocsin_protocol::{CheckResult, CheckStatus, NodeKind, NodeState, Report, Status};

use super::*;
use crate::engine::model::{MaintenanceRow, ProblemState};
use crate::engine::{Command, Effect, Engine, Input, Policy};
use crate::rules::parse_rules;

const RULES: &str = r#"
    [[rule]]
    name = "node_offline"
    when = "offline"
    severity = "critical"
    category = "network"
    summary = "{{node}} is offline"

    [[rule]]
    name = "device_unreachable"
    check = "reachability"
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
"#;

const POLICY: &str =
    "[incident]\nverify_for = \"60s\"\n[problem]\nthreshold = 2\nwindow = \"1d\"\n";

/// An engine and its store, restartable.
struct Node {
    store: Store,
    engine: Engine,
    seq: u64,
    policy: &'static str,
}

#[allow(dead_code)]
fn engine(snapshot: crate::engine::Snapshot) -> Engine {
    engine_with(POLICY, snapshot)
}

fn engine_with(policy: &str, snapshot: crate::engine::Snapshot) -> Engine {
    Engine::new(
        Policy::from_toml_str(Path::new("p"), policy).expect("policy"),
        parse_rules("t", RULES).expect("rules"),
        snapshot,
    )
}

impl Node {
    fn new() -> Node {
        Node::with_policy(POLICY)
    }

    fn with_policy(policy: &'static str) -> Node {
        Node {
            store: Store::open_in_memory().expect("store"),
            engine: engine_with(policy, crate::engine::Snapshot::default()),
            seq: 0,
            policy,
        }
    }

    fn write(&mut self, effects: &[Effect]) {
        let tx = self.store.connection().transaction().expect("tx");
        write_effects(&tx, effects).expect("write");
        tx.commit().expect("commit");
    }

    fn feed(&mut self, now_s: i64, input: Input) -> Vec<Effect> {
        let out = self.engine.handle(now_s * 1000, input);
        self.write(&out.effects);
        out.effects
    }

    fn command(&mut self, now_s: i64, cmd: Command) -> crate::engine::Reply {
        let (reply, out) = self.engine.command(now_s * 1000, cmd).expect("command");
        self.write(&out.effects);
        reply
    }

    fn restart(&mut self, now_s: i64) {
        let snapshot = self
            .store
            .snapshot(SnapshotScope {
                now: now_s * 1000,
                problem_window_ms: 86_400_000,
            })
            .expect("snapshot");
        self.engine = engine_with(self.policy, snapshot);
    }

    fn status(&mut self, now_s: i64, node: &str, state: NodeState, parents: &[&str]) {
        let mut status = match state {
            NodeState::Offline => Status::last_will(),
            _ => Status {
                v: 1,
                state,
                ts: None,
                agent: None,
                inventory: None,
                parents: parents.iter().map(|p| p.to_string()).collect(),
                labels: Default::default(),
            },
        };
        status.state = state;
        self.feed(
            now_s,
            Input::Status {
                site: "dc1".into(),
                node: node.into(),
                status: Box::new(status),
            },
        );
    }

    fn check(&mut self, now_s: i64, node: &str, name: &str, status: CheckStatus) {
        self.seq += 1;
        let report = Report {
            v: 1,
            node: node.into(),
            site: "dc1".into(),
            kind: NodeKind::Host,
            seq: self.seq,
            ts: now_s * 1000,
            interval_s: 10,
            via: None,
            metrics: vec![],
            checks: vec![CheckResult {
                name: name.into(),
                status,
                output: String::new(),
                latency_ms: None,
            }],
        };
        self.feed(now_s, Input::Report(Box::new(report)));
    }

    fn incident_state(&self, id: i64) -> String {
        let v = self
            .store
            .reader()
            .expect("reader")
            .incident(id)
            .expect("read")
            .expect("incident exists");
        v["state"].as_str().unwrap_or_default().to_string()
    }

    fn incidents(&self) -> Vec<serde_json::Value> {
        self.store
            .reader()
            .expect("reader")
            .incidents(None)
            .expect("read")
            .into_iter()
            .map(serde_json::Value::Object)
            .collect()
    }
}

#[test]
fn alerts_merged_into_a_parents_incident_keep_it_open_after_a_restart() {
    let mut n = Node::new();
    n.status(0, "mon-01", NodeState::Online, &[]);
    n.status(0, "sw-1", NodeState::Online, &["mon-01"]);
    n.status(0, "h1", NodeState::Online, &["sw-1"]);
    n.status(0, "h2", NodeState::Online, &["sw-1"]);
    n.check(1, "sw-1", "reachability", CheckStatus::Ok);
    // The hosts' wills first (incidents 1 and 2), then the switch: merged into 3.
    n.status(10, "h1", NodeState::Offline, &[]);
    n.status(11, "h2", NodeState::Offline, &[]);
    n.check(12, "sw-1", "reachability", CheckStatus::Critical);
    assert_eq!(n.incident_state(1), "merged");
    assert_eq!(n.incident_state(3), "open");

    n.restart(20);
    // The switch answers again, the hosts are still offline: the incident stays open.
    n.check(30, "sw-1", "reachability", CheckStatus::Ok);
    assert_eq!(n.incident_state(3), "open");
    n.status(40, "h1", NodeState::Online, &["sw-1"]);
    assert_eq!(n.incident_state(3), "open");
    n.status(41, "h2", NodeState::Online, &["sw-1"]);
    assert_eq!(n.incident_state(3), "resolved");
    // Nothing else was opened on the way.
    assert_eq!(n.incidents().len(), 3);
}

#[test]
fn an_alert_suppressed_before_a_restart_pages_when_its_window_ends() {
    let mut n = Node::new();
    n.status(0, "web-01", NodeState::Online, &[]);
    n.command(
        1,
        Command::AddMaintenance(MaintenanceRow {
            id: 0,
            name: "patching".into(),
            match_: [("node".to_string(), "web-01".to_string())].into(),
            starts_at: 0,
            ends_at: 100_000,
            every_ms: None,
            reason: String::new(),
            created_by: "test".into(),
            created_at: 0,
            cancelled_at: None,
        }),
    );
    n.check(20, "web-01", "tcp:pg", CheckStatus::Critical);
    assert!(n.incidents().is_empty());
    n.restart(50);
    n.check(60, "web-01", "tcp:pg", CheckStatus::Critical);
    assert!(n.incidents().is_empty(), "still inside the window");
    n.feed(101, Input::Tick);
    let incidents = n.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["node"], "web-01");
}

#[test]
fn a_resolved_problem_does_not_come_back_after_a_restart() {
    let mut n = Node::new();
    n.status(0, "db-01", NodeState::Online, &[]);
    for t in [10, 200] {
        n.check(t, "db-01", "tcp:pg", CheckStatus::Critical);
        n.check(t + 10, "db-01", "tcp:pg", CheckStatus::Ok);
        n.feed(t + 100, Input::Tick);
    }
    let problems = n
        .store
        .reader()
        .expect("reader")
        .problems(None)
        .expect("read");
    assert_eq!(problems.len(), 1);
    n.command(
        400,
        Command::UpdateProblem {
            id: 1,
            state: Some(ProblemState::Resolved),
            workaround: None,
            actor: "alice".into(),
        },
    );
    n.restart(500);
    n.check(600, "db-01", "tcp:pg", CheckStatus::Critical);
    let problems = n
        .store
        .reader()
        .expect("reader")
        .problems(None)
        .expect("read");
    assert_eq!(
        problems.len(),
        1,
        "one recurrence after the fix opens no new problem"
    );
}

const DESK_POLICY: &str = r#"
[incident]
verify_for = "60s"
[sla.P2]
response = "10m"
resolution = "1h"
[sla.P4]
response = "1h"
resolution = "1d"
[[escalation]]
name = "on-duty"
notify = ["webhook:oncall"]
[[escalation]]
name = "senior"
after = "30m"
notify = ["webhook:oncall"]
[notify.webhook.oncall]
url = "http://127.0.0.1:9/hook"
"#;

fn ticket_json(n: &Node, key: &str) -> serde_json::Value {
    n.store
        .reader()
        .expect("reader")
        .ticket(key)
        .expect("read")
        .expect("ticket exists")
}

fn outbox(n: &mut Node) -> Vec<(i64, String, String)> {
    let mut stmt = n
        .store
        .connection()
        .prepare("SELECT id, idempotency_key, state FROM notifications ORDER BY id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[test]
fn ticket_sla_log_numbers_and_past_cases_survive_a_restart() {
    use crate::engine::{ManualTicket, Reply, Reporter, TicketAction, TicketKind};
    let mut n = Node::with_policy(DESK_POLICY);
    n.status(0, "db-01", NodeState::Online, &[]);
    // A fault (P2: acknowledge within 10m), resolved by an operator, closed after verification.
    n.check(10, "db-01", "tcp:pg", CheckStatus::Critical);
    let first = ticket_json(&n, "INC-000001");
    assert_eq!(first["priority"], "P2");
    n.command(
        20,
        Command::Ticket {
            id: 1,
            action: TicketAction::Resolve {
                notes: "raised max_connections".into(),
                cause_code: "capacity".into(),
            },
            actor: "alice".into(),
            stored: None,
            history: Vec::new(),
        },
    );
    n.check(30, "db-01", "tcp:pg", CheckStatus::Ok);
    n.feed(100, Input::Tick);
    assert_eq!(ticket_json(&n, "INC-000001")["state"], "closed");
    // A service request with a comment, pending then resumed.
    let manual = ManualTicket {
        kind: TicketKind::Request,
        summary: "new DB user".into(),
        description: String::new(),
        reporter: Reporter {
            name: "Carol".into(),
            department: None,
            contact: None,
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
    };
    let Reply::Ticket(req) = n.command(
        200,
        Command::OpenTicket {
            ticket: Box::new(manual.clone()),
            actor: "bob".into(),
        },
    ) else {
        panic!("a ticket")
    };
    assert_eq!(req.number, "REQ-000001");
    let act = |n: &mut Node, t: i64, action: TicketAction| {
        n.command(
            t,
            Command::Ticket {
                id: req.id,
                action,
                actor: "alice".into(),
                stored: None,
                history: Vec::new(),
            },
        );
    };
    act(
        &mut n,
        210,
        TicketAction::Comment {
            text: "which schema?".into(),
        },
    );
    act(&mut n, 220, TicketAction::Acknowledge { note: None });
    act(
        &mut n,
        230,
        TicketAction::Pend {
            reason: "asked Carol".into(),
        },
    );

    n.restart(300);
    // Numbers and ids continue (no primary-key clash), and the clock is still paused.
    let Reply::Ticket(req2) = n.command(
        310,
        Command::OpenTicket {
            ticket: Box::new(manual),
            actor: "bob".into(),
        },
    ) else {
        panic!("a ticket")
    };
    assert_eq!(req2.number, "REQ-000002");
    let stored = ticket_json(&n, "REQ-000001");
    assert_eq!(stored["state"], "pending");
    assert!(stored["resolution_due_at"].is_null(), "paused: {stored}");
    act(&mut n, 400, TicketAction::Resume { note: None });
    let resumed = ticket_json(&n, "REQ-000001");
    assert_eq!(resumed["state"], "in_progress");
    // P4: 1d to resolve; 10s used before the pause (220 -> 230), so due 1d - 10s after 400.
    let due = resumed["resolution_due_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!due.is_empty(), "{resumed}");
    act(
        &mut n,
        410,
        TicketAction::Escalate {
            reason: "needs the DBA".into(),
            complaint: false,
        },
    );
    let esc = ticket_json(&n, "REQ-000001");
    assert_eq!(esc["escalation_level"], 1);
    let events = esc["events"].as_array().cloned().unwrap_or_default();
    let escalated = events
        .iter()
        .find(|e| e["kind"] == "escalated")
        .expect("escalated event");
    let data: serde_json::Value = match &escalated["data"] {
        serde_json::Value::String(s) => serde_json::from_str(s).expect("json"),
        v => v.clone(),
    };
    // The handover made after the restart still holds the comment made before it.
    assert_eq!(data["handover"]["diagnosis"][0]["message"], "which schema?");
    let rows = outbox(&mut n);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, "pending");
    assert!(rows[0].1.starts_with("REQ-000001:"));

    // The same fault again: the new ticket names the closed one and its resolution.
    n.restart(500);
    n.check(600, "db-01", "tcp:pg", CheckStatus::Critical);
    let second = ticket_json(&n, "INC-000002");
    let similar: serde_json::Value = match &second["similar"] {
        serde_json::Value::String(s) => serde_json::from_str(s).expect("json"),
        v => v.clone(),
    };
    assert_eq!(similar[0]["number"], "INC-000001");
    assert_eq!(similar[0]["resolution"], "raised max_connections");
}
