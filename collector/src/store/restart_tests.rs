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
}

fn engine(snapshot: crate::engine::Snapshot) -> Engine {
    Engine::new(
        Policy::from_toml_str(Path::new("p"), POLICY).expect("policy"),
        parse_rules("t", RULES).expect("rules"),
        snapshot,
    )
}

impl Node {
    fn new() -> Node {
        Node {
            store: Store::open_in_memory().expect("store"),
            engine: engine(crate::engine::Snapshot::default()),
            seq: 0,
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

    fn command(&mut self, now_s: i64, cmd: Command) {
        let (_, out) = self.engine.command(now_s * 1000, cmd).expect("command");
        self.write(&out.effects);
    }

    fn restart(&mut self, now_s: i64) {
        let snapshot = self
            .store
            .snapshot(SnapshotScope {
                now: now_s * 1000,
                problem_window_ms: 86_400_000,
            })
            .expect("snapshot");
        self.engine = engine(snapshot);
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
