//! Store tests: effects written through a real DuckDB, read back as the API and the engine see them.

use std::path::Path;

use tocsin_protocol::{CheckResult, CheckStatus, Inventory, NodeKind, NodeState, Report, Status};

use super::*;
use crate::engine::{Effect, Engine, Input, Policy};
use crate::rules::parse_rules;

const RULES: &str = r#"
    [[rule]]
    name = "check_critical"
    check = "*"
    severity = "critical"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"
"#;

fn engine(snapshot: crate::engine::Snapshot) -> Engine {
    Engine::new(
        Policy::from_toml_str(Path::new("p"), "[incident]\nverify_for = \"60s\"").expect("policy"),
        parse_rules("t", RULES).expect("rules"),
        snapshot,
    )
}

fn report(seq: u64, ts: i64, status: CheckStatus) -> Input {
    Input::Report(Box::new(Report {
        v: 1,
        node: "web-01".into(),
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

fn write(store: &mut Store, effects: &[Effect]) {
    let tx = store.connection().transaction().expect("tx");
    write_effects(&tx, effects).expect("write");
    tx.commit().expect("commit");
}

#[test]
fn engine_effects_round_trip_through_duckdb() {
    let mut store = Store::open_in_memory().expect("store");
    let mut e = engine(crate::engine::Snapshot::default());
    let birth = Input::Status {
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
    };
    let out = e.handle(1_000, birth);
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
    let snap = store.snapshot().expect("snapshot");
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
fn file_database_survives_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sub/tocsin.duckdb");
    {
        let mut store = Store::open(&path).expect("open");
        let mut e = engine(crate::engine::Snapshot::default());
        let out = e.handle(10_000, report(1, 10_000, CheckStatus::Critical));
        write(&mut store, &out.effects);
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.snapshot().expect("snapshot").incidents.len(), 1);
    let err = Store::open(Path::new("/proc/nope/x.duckdb")).expect_err("unwritable");
    assert!(
        err.to_string().starts_with("/proc/nope/x.duckdb: "),
        "{err}"
    );
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
