//! Store tests: effects written through a real DuckDB, read back as the API and the engine see them.

use std::path::Path;

use tocsin_protocol::{CheckResult, CheckStatus, Inventory, NodeKind, NodeState, Report, Status};

use super::*;
use crate::engine::model::{
    IncidentState, MaintenanceRow, ProblemIncidentRow, ProblemRow, ProblemState,
};
use crate::engine::{Effect, Engine, Input, Level, Policy};
use crate::rules::{Category, parse_rules};

const DAY: i64 = 86_400_000;

/// The snapshot as of `now`, with a 7-day problem window.
pub(super) fn scope(now: i64) -> SnapshotScope {
    SnapshotScope {
        now,
        problem_window_ms: 7 * DAY,
    }
}

const RULES: &str = r#"
    [[rule]]
    name = "check_critical"
    check = "*"
    severity = "critical"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"
"#;

pub(super) fn engine(snapshot: crate::engine::Snapshot) -> Engine {
    Engine::new(
        Policy::from_toml_str(Path::new("p"), "[incident]\nverify_for = \"60s\"").expect("policy"),
        parse_rules("t", RULES).expect("rules"),
        snapshot,
    )
}

pub(super) fn report(seq: u64, ts: i64, status: CheckStatus) -> Input {
    node_report("web-01", seq, ts, status)
}

/// A report of `node` in dc1 with one `tcp:pg` check.
pub(super) fn node_report(node: &str, seq: u64, ts: i64, status: CheckStatus) -> Input {
    Input::Report(Box::new(Report {
        v: 1,
        node: node.into(),
        site: "dc1".into(),
        kind: NodeKind::Host,
        seq,
        ts,
        interval_s: 10,
        via: None,
        metrics: vec![],
        checks: vec![CheckResult {
            name: "tcp:pg".into(),
            status,
            output: "refused".into(),
            latency_ms: None,
        }],
    }))
}

pub(super) fn write(store: &mut Store, effects: &[Effect]) {
    let tx = store.connection().transaction().expect("tx");
    write_effects(&tx, effects).expect("write");
    tx.commit().expect("commit");
}

pub(super) fn status(state: NodeState) -> Input {
    Input::Status {
        site: "dc1".into(),
        node: "web-01".into(),
        status: Box::new(Status {
            v: 1,
            state,
            ts: None,
            agent: None,
            inventory: None,
            parents: vec![],
            labels: Default::default(),
        }),
    }
}

/// The engine keeps no report; a node row without one (a status change) keeps the stored
/// report, whether it comes in a later batch or after the report in the same batch.
#[test]
fn node_rows_without_a_report_keep_the_stored_one() {
    let mut store = Store::open_in_memory().expect("store");
    let mut e = engine(crate::engine::Snapshot::default());
    let out = e.handle(10_000, report(1, 10_000, CheckStatus::Ok));
    write(&mut store, &out.effects);
    let out = e.handle(11_000, status(NodeState::Offline));
    write(&mut store, &out.effects);
    let reader = store.reader().expect("reader");
    let nodes = reader.nodes().expect("nodes");
    assert_eq!(nodes[0]["state"], "offline");
    assert_eq!(nodes[0]["last_seq"], 1);
    assert_eq!(nodes[0]["last_report"]["checks"][0]["status"], "ok");

    // One batch: a report, then a status change of the same node.
    let mut batch = e
        .handle(20_000, report(2, 20_000, CheckStatus::Critical))
        .effects;
    batch.extend(e.handle(21_000, status(NodeState::Offline)).effects);
    write(&mut store, &batch);
    let nodes = reader.nodes().expect("nodes");
    assert_eq!(nodes[0]["state"], "offline");
    assert_eq!(nodes[0]["last_seq"], 2);
    assert_eq!(nodes[0]["last_report"]["checks"][0]["status"], "critical");

    // The engine's own node table holds no report, neither live nor after a restart.
    let snap = store.snapshot(scope(30_000)).expect("snapshot");
    assert!(snap.nodes.iter().all(|n| n.last_report.is_none()));
}

/// web-01's birth: agent 0.1.0, inventory with its hostname, label criticality=high.
pub(super) fn birth() -> Input {
    Input::Status {
        site: "dc1".into(),
        node: "web-01".into(),
        status: Box::new(Status {
            v: 1,
            state: NodeState::Online,
            ts: Some(1_000),
            agent: Some(tocsin_protocol::AgentInfo {
                version: "0.1.0".into(),
            }),
            inventory: Some(Inventory {
                hostname: Some("web-01".into()),
                ..Inventory::default()
            }),
            parents: vec![],
            labels: [("criticality".to_string(), "high".to_string())].into(),
        }),
    }
}

#[test]
fn engine_effects_round_trip_through_duckdb() {
    let mut store = Store::open_in_memory().expect("store");
    let mut e = engine(crate::engine::Snapshot::default());
    let out = e.handle(1_000, birth());
    write(&mut store, &out.effects);
    let out = e.handle(10_000, report(1, 10_000, CheckStatus::Critical));
    write(&mut store, &out.effects);

    let reader = store.reader().expect("reader");
    let nodes = reader.nodes().expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["inventory"]["hostname"], "web-01");
    assert_eq!(nodes[0]["labels"]["criticality"], "high");
    assert_eq!(nodes[0]["last_seq"], 1);
    assert_eq!(nodes[0]["last_report"]["checks"][0]["name"], "tcp:pg");

    let firing = reader.alerts(Some("firing")).expect("alerts");
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0]["labels"]["check"], "tcp:pg");

    let incidents = reader.incidents(Some("open")).expect("incidents");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["ticket_number"], "INC-000001");
    assert_eq!(incidents[0]["priority"], "P1");
    let detail = reader.incident(1).expect("incident").expect("exists");
    assert_eq!(detail["root_alert_detail"]["rule"], "check_critical");

    let tickets = reader.tickets(&TicketFilter::default()).expect("tickets");
    assert_eq!(tickets.len(), 1);
    let ticket = reader
        .ticket("INC-000001")
        .expect("ticket")
        .expect("exists");
    assert_eq!(ticket["state"], "new");
    assert_eq!(ticket["environment"]["inventory"]["hostname"], "web-01");
    assert_eq!(ticket["events"][0]["kind"], "opened");
    assert_eq!(ticket["opened_at"], "1970-01-01T00:00:10.000Z");
    assert!(reader.ticket("1").expect("by id").is_some());
    assert!(reader.ticket("INC-999999").expect("missing").is_none());

    // Restart: the snapshot resumes the incident, and the next ticket gets the next number.
    let snap = store.snapshot(scope(20_000)).expect("snapshot");
    assert_eq!(snap.incidents.len(), 1);
    assert_eq!(snap.alerts.len(), 1);
    assert_eq!(snap.next_ids.incident_number, 2);
    let mut e = engine(snap);
    // The redelivered report is a duplicate after the restart too.
    assert!(
        e.handle(11_000, report(1, 10_000, CheckStatus::Critical))
            .duplicate
    );
    let out = e.handle(20_000, report(2, 20_000, CheckStatus::Ok));
    write(&mut store, &out.effects);
    let reader = store.reader().expect("reader");
    assert_eq!(
        reader.incidents(Some("resolved")).expect("resolved").len(),
        1
    );
    assert_eq!(
        reader.ticket("INC-000001").expect("t").expect("t")["state"],
        "resolved"
    );
    let out = e.handle(90_000, Input::Tick);
    write(&mut store, &out.effects);
    let out = e.handle(100_000, report(3, 100_000, CheckStatus::Critical));
    write(&mut store, &out.effects);
    let numbers: Vec<String> = store
        .reader()
        .expect("reader")
        .tickets(&TicketFilter::default())
        .expect("tickets")
        .iter()
        .map(|t| t["number"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(numbers, ["INC-000002", "INC-000001"]);
    let counts = store.reader().expect("reader").counts().expect("counts");
    assert_eq!(counts["incidents_open"], 1);
}

#[test]
fn duckdb_memory_counts_what_the_tables_hold() {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let empty = super::writer::duckdb_memory_bytes(&conn).expect("duckdb_memory()");
    conn.execute_batch(
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(200000)",
    )
    .expect("a table of 200,000 rows");
    let full = super::writer::duckdb_memory_bytes(&conn).expect("duckdb_memory()");
    // About 10 MB of keys and hashes, in memory.
    assert!(
        full >= empty + (4 << 20),
        "{empty} bytes empty, {full} with the table"
    );
    let tags = super::writer::duckdb_memory_by_tag(&conn).expect("duckdb_memory() by tag");
    assert_eq!(tags.iter().map(|t| t.memory).sum::<u64>(), full);
    assert!(
        tags.iter().all(|t| t.memory > 0 || t.temporary > 0),
        "only the tags holding something: {tags:?}"
    );
    assert!(
        tags.windows(2).all(|w| w[0].memory >= w[1].memory),
        "largest first: {tags:?}"
    );
    // An in-memory database's table lives under its own tag, in lower case.
    assert!(
        tags.iter()
            .any(|t| t.tag == "in_memory_table" && t.memory >= 4 << 20),
        "{tags:?}"
    );
}

#[test]
fn rejected_payloads_are_kept_with_reason() {
    let store = Store::open_in_memory().expect("store");
    let reader = store.reader().expect("reader");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel(8);
    let stats = std::sync::Arc::new(WriterStats::default());
    let writer = store.into_writer(&crate::config::StoreConfig::default());
    let s2 = stats.clone();
    let handle = std::thread::spawn(move || writer.run(rx, ack_tx, s2));
    tx.blocking_send(WriteMsg {
        effects: vec![],
        rejected: Some(RejectedRow {
            received_at: 5_000,
            topic: "tocsin/v1/dc1/web/report".into(),
            site: Some("dc1".into()),
            node: Some("web".into()),
            reason: "malformed".into(),
            error: "malformed payload: expected value".into(),
            payload_size: 5,
            payload: "hello".into(),
        }),
        ack: Some(42u32),
        committed: None,
        outbox: Vec::new(),
    })
    .expect("send");
    assert_eq!(
        ack_rx.blocking_recv(),
        Some(42),
        "ack released after commit"
    );
    drop(tx);
    handle
        .join()
        .expect("writer thread")
        .expect("writer ends cleanly");
    let rows = reader.rejected(10).expect("rejected");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["reason"], "malformed");
    assert_eq!(rows[0]["payload"], "hello");
    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_batch_that_cannot_be_stored_is_never_acknowledged() {
    let store = Store::open_in_memory().expect("store");
    let mut e = engine(crate::engine::Snapshot::default());
    let alert = e
        .handle(10_000, report(1, 10_000, CheckStatus::Critical))
        .effects
        .into_iter()
        .find(|x| matches!(x, Effect::Alert(_)))
        .expect("alert effect");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel(8);
    let mut writer = store.into_writer(&crate::config::StoreConfig::default());
    writer.retry_delays = vec![std::time::Duration::from_millis(1)];
    let stats = std::sync::Arc::new(WriterStats::default());
    let s2 = stats.clone();
    let handle = std::thread::spawn(move || writer.run(rx, ack_tx, s2));
    let msg = |ack: u32| WriteMsg {
        effects: vec![alert.clone()],
        rejected: None,
        ack: Some(ack),
        committed: None,
        outbox: Vec::new(),
    };
    tx.blocking_send(msg(1)).expect("send");
    assert_eq!(ack_rx.blocking_recv(), Some(1));
    // The same alert row again violates its primary key: the commit fails every time.
    tx.blocking_send(msg(2)).expect("send");
    assert_eq!(
        ack_rx.blocking_recv(),
        None,
        "no ack for data that was not stored"
    );
    let result = handle.join().expect("writer thread");
    assert!(result.is_err(), "the writer reports that it gave up");
    assert_eq!(
        stats.errors.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "first try and one retry"
    );
}

fn problem_row(id: i64, state: ProblemState, at: i64) -> ProblemRow {
    ProblemRow {
        id,
        number: format!("PRB-{id:06}"),
        state,
        signature: "check_critical:dc1/web-01".into(),
        rule: "check_critical".into(),
        site: "dc1".into(),
        node: "web-01".into(),
        group_key: Some("service=pay".into()),
        title: "web-01: tcp:pg keeps failing".into(),
        category: Category::Software,
        kb: Some("kb/pg.md".into()),
        workaround: None,
        incident_count: 3,
        opened_at: at,
        last_incident_at: at,
        known_error_at: None,
        resolved_at: None,
        updated_at: at,
    }
}

fn window(id: i64, name: &str, starts: i64, ends: i64, by: &str) -> MaintenanceRow {
    MaintenanceRow {
        id,
        name: name.into(),
        match_: [
            ("node".to_string(), "web-*".to_string()),
            ("labels.role".to_string(), "db".to_string()),
        ]
        .into(),
        starts_at: starts,
        ends_at: ends,
        every_ms: None,
        reason: "kernel update".into(),
        created_by: by.into(),
        created_at: starts,
        cancelled_at: None,
    }
}

/// Every field and effect added with topology, problems and maintenance: written, read back
/// by the API's queries, and restored by the snapshot.
fn new_effects_round_trip(store: &mut Store) {
    let now = 30 * DAY;
    let mut e = engine(crate::engine::Snapshot::default());
    let out = e.handle(now, report(1, now, CheckStatus::Critical));
    let mut effects = Vec::new();
    for eff in out.effects {
        match eff {
            Effect::Alert(mut a) => {
                a.suppressed_by = None;
                a.flapping = true;
                a.transition.description = "pgbouncer in front of it".into();
                let mut suppressed = a.clone();
                suppressed.id = a.id + 100;
                suppressed.incident_id = None;
                suppressed.suppressed_by = Some("patch".into());
                suppressed.flapping = false;
                suppressed.transition.key = "check_critical:dc1/web-02{check=tcp:pg}".into();
                suppressed.transition.node = "web-02".into();
                effects.push(Effect::Alert(a));
                effects.push(Effect::Alert(suppressed));
            }
            Effect::Incident(mut i) => {
                i.impact = Level::High;
                i.urgency = Level::Medium;
                i.signature = "check_critical:dc1/web-01".into();
                i.group_key = Some("service=pay".into());
                i.nodes_affected = 3;
                i.symptoms = 2;
                i.flapping = true;
                i.problem_id = Some(1);
                // A second incident, merged into the first.
                let mut merged = (*i).clone();
                merged.id = i.id + 1;
                merged.state = IncidentState::Merged;
                merged.merged_into = Some(i.id);
                merged.ticket_id = None;
                merged.problem_id = None;
                effects.push(Effect::Incident(i));
                effects.push(Effect::Incident(Box::new(merged)));
            }
            Effect::IncidentAlert(mut l) => {
                l.role = "related".into();
                effects.push(Effect::IncidentAlert(l.clone()));
                // The engine may re-link an alert with a new role: last one wins.
                l.role = "root".into();
                effects.push(Effect::IncidentAlert(l));
            }
            Effect::Ticket(mut t) => {
                t.problem_id = Some(1);
                t.workaround = Some("restart pgbouncer".into());
                effects.push(Effect::Ticket(t));
            }
            other => effects.push(other),
        }
    }
    effects.push(Effect::Problem(Box::new(problem_row(
        1,
        ProblemState::Open,
        now - DAY,
    ))));
    let mut known = problem_row(1, ProblemState::KnownError, now - DAY);
    known.workaround = Some("restart pgbouncer".into());
    known.known_error_at = Some(now);
    known.updated_at = now;
    // Two versions of one problem in one batch: the last is stored.
    effects.push(Effect::Problem(Box::new(known)));
    let mut resolved = problem_row(2, ProblemState::Resolved, now - 20 * DAY);
    resolved.number = "PRB-000002".into();
    resolved.resolved_at = Some(now - 10 * DAY);
    effects.push(Effect::Problem(Box::new(resolved)));
    for incident_id in [1, 1] {
        effects.push(Effect::ProblemIncident(ProblemIncidentRow {
            problem_id: 1,
            incident_id,
            linked_at: now,
        }));
    }
    effects.push(Effect::Maintenance(Box::new(window(
        1,
        "patch",
        now - 3_600_000,
        now + 3_600_000,
        "alice",
    ))));
    let mut weekly = window(2, "weekly", now - 8 * DAY, now - 8 * DAY + 7_200_000, "bob");
    weekly.every_ms = Some(7 * DAY);
    effects.push(Effect::Maintenance(Box::new(weekly)));
    effects.push(Effect::Maintenance(Box::new(window(
        3,
        "old",
        now - 3 * DAY,
        now - 2 * DAY,
        "alice",
    ))));
    let mut cancelled = window(4, "cancelled", now - 3_600_000, now + 3_600_000, "alice");
    cancelled.cancelled_at = Some(now - 60_000);
    effects.push(Effect::Maintenance(Box::new(cancelled)));
    effects.push(Effect::Maintenance(Box::new(window(
        5,
        "from policy",
        now - 3_600_000,
        now + 3_600_000,
        "policy",
    ))));
    write(store, &effects);
    // A problem link written again in a later transaction is an upsert, not a key violation.
    write(
        store,
        &[Effect::ProblemIncident(ProblemIncidentRow {
            problem_id: 1,
            incident_id: 1,
            linked_at: now + 1,
        })],
    );

    let reader = store.reader().expect("reader");
    // Alerts carry suppressed_by and flapping.
    let alerts = reader.alerts(None).expect("alerts");
    let web02 = alerts
        .iter()
        .find(|a| a["node"] == "web-02")
        .expect("suppressed alert");
    assert_eq!(web02["suppressed_by"], "patch");
    assert_eq!(web02["flapping"], false);
    assert_eq!(web02["incident_id"], serde_json::Value::Null);
    let web01 = alerts
        .iter()
        .find(|a| a["node"] == "web-01")
        .expect("alert");
    assert_eq!(web01["flapping"], true);
    assert_eq!(web01["source"], "check");
    assert_eq!(web01["description"], "pgbouncer in front of it");

    // Incidents: the new columns, the problem number, the merge.
    let incidents = reader.incidents(None).expect("incidents");
    assert_eq!(incidents.len(), 2);
    let first = incidents.iter().find(|i| i["id"] == 1).expect("incident 1");
    assert_eq!(first["impact"], "high");
    assert_eq!(first["urgency"], "medium");
    assert_eq!(first["nodes_affected"], 3);
    assert_eq!(first["symptoms"], 2);
    assert_eq!(first["flapping"], true);
    assert_eq!(first["group_key"], "service=pay");
    assert_eq!(first["problem_number"], "PRB-000001");
    assert_eq!(
        reader.incidents(Some("merged")).expect("merged")[0]["merged_into"],
        1
    );
    let detail = reader.incident(1).expect("incident").expect("exists");
    assert_eq!(detail["root_alert_detail"]["rule"], "check_critical");
    assert_eq!(detail["alerts"][0]["role"], "root");
    assert_eq!(detail["symptoms"], 2);
    assert_eq!(detail["merged_from"], serde_json::json!([2]));
    assert_eq!(detail["problem"]["number"], "PRB-000001");
    assert_eq!(detail["problem"]["state"], "known_error");
    assert_eq!(detail["problem"]["workaround"], "restart pgbouncer");
    let merged = reader.incident(2).expect("incident").expect("exists");
    assert_eq!(merged["state"], "merged");
    assert_eq!(merged["merged_into"], 1);
    assert_eq!(merged["problem"], serde_json::Value::Null);
    let node: String = store
        .connection()
        .query_row(
            "SELECT node FROM incident_alerts WHERE incident_id = 1",
            [],
            |r| r.get(0),
        )
        .expect("link node");
    assert_eq!(node, "web-01");

    // Tickets name their problem and its workaround.
    let ticket = reader
        .ticket("INC-000001")
        .expect("ticket")
        .expect("exists");
    assert_eq!(ticket["problem_number"], "PRB-000001");
    assert_eq!(ticket["workaround"], "restart pgbouncer");

    // Problems: list by state, one by number or id, with its incidents.
    assert_eq!(reader.problems(None).expect("all").len(), 2);
    let open = reader.problems(Some("known_error")).expect("known errors");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["number"], "PRB-000001");
    assert_eq!(open[0]["incident_count"], 3);
    assert_eq!(open[0]["kb"], "kb/pg.md");
    assert_eq!(open[0]["known_error_at"], crate::time::rfc3339(now));
    let p = reader
        .problem("PRB-000001")
        .expect("problem")
        .expect("exists");
    assert_eq!(p["incidents"].as_array().map(Vec::len), Some(1));
    assert_eq!(p["incidents"][0]["id"], 1);
    assert_eq!(p["incidents"][0]["ticket_number"], "INC-000001");
    assert_eq!(p["incidents"][0]["node"], "web-01");
    assert!(reader.problem("1").expect("by id").is_some());
    assert!(reader.problem("PRB-000009").expect("missing").is_none());
    assert_eq!(reader.problem_id("PRB-000002").expect("id"), Some(2));
    assert_eq!(reader.problem_id("nope").expect("id"), None);

    // Maintenance: all, active, in effect now, match as JSON.
    let all = reader
        .maintenance(MaintenanceFilter::All, now)
        .expect("all");
    assert_eq!(all.len(), 5);
    let active = reader
        .maintenance(MaintenanceFilter::Active, now)
        .expect("active");
    let names: Vec<&str> = active.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["from policy", "weekly", "patch"]);
    let patch = reader
        .maintenance_window(1, now)
        .expect("read")
        .expect("exists");
    assert_eq!(patch["match"]["node"], "web-*");
    assert_eq!(patch["match"]["labels.role"], "db");
    assert_eq!(patch["in_effect"], true);
    assert_eq!(patch["created_by"], "alice");
    // The weekly window started 8 days ago for 2 hours: its second run is 1 day ago, over.
    let weekly = reader
        .maintenance_window(2, now)
        .expect("read")
        .expect("exists");
    assert_eq!(weekly["in_effect"], false);
    assert_eq!(weekly["every_ms"], 7 * DAY);
    let weekly = reader
        .maintenance_window(2, now - DAY + 60_000)
        .expect("read")
        .expect("exists");
    assert_eq!(weekly["in_effect"], true, "inside the second repetition");
    assert_eq!(
        reader
            .maintenance_window(4, now)
            .expect("read")
            .expect("exists")["in_effect"],
        false
    );
    assert!(reader.maintenance_window(9, now).expect("read").is_none());
    assert_eq!(reader.counts().expect("counts")["problems_open"], 1);

    // The snapshot restores all of it.
    let snap = store.snapshot(scope(now)).expect("snapshot");
    let inc = snap
        .incidents
        .iter()
        .find(|i| i.id == 1)
        .expect("incident 1 restored");
    assert_eq!(inc.impact, Level::High);
    assert_eq!(inc.urgency, Level::Medium);
    assert_eq!(inc.signature, "check_critical:dc1/web-01");
    assert_eq!(inc.group_key.as_deref(), Some("service=pay"));
    assert_eq!(
        (inc.nodes_affected, inc.symptoms, inc.flapping),
        (3, 2, true)
    );
    assert_eq!(inc.problem_id, Some(1));
    assert!(
        snap.incidents
            .iter()
            .all(|i| i.state != IncidentState::Merged),
        "merged incidents are finished"
    );
    let t = &snap.tickets[0];
    assert_eq!(
        (t.problem_id, t.workaround.as_deref()),
        (Some(1), Some("restart pgbouncer"))
    );
    assert_eq!(snap.problems.len(), 1, "resolved problems are not restored");
    let p = &snap.problems[0];
    assert_eq!(p.state, ProblemState::KnownError);
    assert_eq!(p.workaround.as_deref(), Some("restart pgbouncer"));
    assert_eq!(p.known_error_at, Some(now));
    assert_eq!(p.group_key.as_deref(), Some("service=pay"));
    assert_eq!(p.kb.as_deref(), Some("kb/pg.md"));
    assert_eq!(p.incident_count, 3);
    assert_eq!(p.opened_at, now - DAY);
    assert_eq!(snap.recent.len(), 1);
    assert_eq!(
        snap.recent[0],
        crate::engine::RecentIncident {
            signature: "check_critical:dc1/web-01".into(),
            incident_id: 1,
            opened_at: now,
            problem_id: Some(1),
        }
    );
    let restored: Vec<(&str, Option<i64>)> = snap
        .maintenance
        .iter()
        .map(|m| (m.name.as_str(), m.every_ms))
        .collect();
    // Policy windows come back as last stored: the engine cancels those gone from the policy.
    assert_eq!(
        restored,
        [
            ("patch", None),
            ("weekly", Some(7 * DAY)),
            ("from policy", None)
        ]
    );
    assert_eq!(
        snap.maintenance[0],
        window(1, "patch", now - 3_600_000, now + 3_600_000, "alice")
    );
    assert_eq!(snap.next_ids.problem, 3);
    assert_eq!(snap.next_ids.maintenance, 6);
    // Outside the problem window nothing is recent any more.
    let later = store
        .snapshot(SnapshotScope {
            now: now + 8 * DAY,
            problem_window_ms: 7 * DAY,
        })
        .expect("snapshot");
    assert!(later.recent.is_empty());
    assert_eq!(
        later
            .maintenance
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["weekly", "from policy"],
        "the one-off window is over"
    );
    // And an engine starts from it.
    let _ = engine(snap);
}

#[test]
fn new_effects_round_trip_in_memory() {
    let mut store = Store::open_in_memory().expect("store");
    new_effects_round_trip(&mut store);
}

#[test]
fn new_effects_round_trip_in_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.duckdb");
    let mut store = Store::open(&path).expect("open");
    new_effects_round_trip(&mut store);
    drop(store);
    let store = Store::open(&path).expect("reopen");
    let snap = store.snapshot(scope(30 * DAY)).expect("snapshot");
    assert_eq!(snap.problems.len(), 1);
    // The weekly window, and the policy's as last stored.
    assert_eq!(snap.maintenance.len(), 2 + 1);
}

#[test]
fn committed_is_told_after_the_commit_and_never_for_a_failed_write() {
    let store = Store::open_in_memory().expect("store");
    let mut e = engine(crate::engine::Snapshot::default());
    let alert = e
        .handle(10_000, report(1, 10_000, CheckStatus::Critical))
        .effects
        .into_iter()
        .find(|x| matches!(x, Effect::Alert(_)))
        .expect("alert effect");
    let (tx, rx) = tokio::sync::mpsc::channel::<WriteMsg<u32>>(8);
    let (ack_tx, _ack_rx) = tokio::sync::mpsc::channel(8);
    let mut writer = store.into_writer(&crate::config::StoreConfig::default());
    writer.retry_delays = vec![];
    let stats = std::sync::Arc::new(WriterStats::default());
    let handle = std::thread::spawn(move || writer.run(rx, ack_tx, stats));
    let (done, committed) = tokio::sync::oneshot::channel();
    tx.blocking_send(WriteMsg {
        committed: Some(done),
        ..WriteMsg::effects(vec![alert.clone()])
    })
    .expect("send");
    assert_eq!(committed.blocking_recv(), Ok(()));
    // The same alert id again cannot be stored: the receiver learns it was not.
    let (done, committed) = tokio::sync::oneshot::channel();
    tx.blocking_send(WriteMsg {
        committed: Some(done),
        ..WriteMsg::effects(vec![alert])
    })
    .expect("send");
    assert!(committed.blocking_recv().is_err());
    assert!(handle.join().expect("writer thread").is_err());
}
