//! Store upgrades: a database written by an older schema is migrated in place and keeps working.

use super::tests::{engine, report, scope, write};
use super::*;
use crate::engine::Level;
use tocsin_protocol::CheckStatus;

/// Rows of every 0001 table, as a collector before migration 0002 wrote them.
const SCHEMA_1_ROWS: &str = "
    INSERT INTO nodes VALUES ('dc1', 'web-01', 'host', 'online', '0.1.0', NULL, '{}', '[]', NULL, 5,
        epoch_ms(10000), epoch_ms(10000), NULL, epoch_ms(1000), epoch_ms(1000), epoch_ms(10000));
    INSERT INTO alerts VALUES (1, 'check_critical:dc1/web-01{check=tcp:pg}', 'check_critical', 'dc1', 'web-01',
        '{\"check\":\"tcp:pg\"}', 'firing', 'critical', 'software', NULL, 'pg down', 'refused', NULL,
        epoch_ms(10000), epoch_ms(10000), 1);
    INSERT INTO incidents VALUES (1, 'open', 'pg down', 'critical', 'software', 'P1', 'dc1', 'web-01',
        'check_critical:dc1/web-01{check=tcp:pg}', 'pg down', 1, epoch_ms(10000), NULL, NULL, epoch_ms(10000));
    INSERT INTO incident_alerts VALUES (1, 'check_critical:dc1/web-01{check=tcp:pg}', 'root', epoch_ms(10000));
    INSERT INTO tickets VALUES (1, 'INC-000001', 'incident', 'new', 'P1', 'high', 'high', 'software',
        'service-desk', 'pg down', 'd', '{}', '{}', 1, 'dc1', 'web-01', NULL, epoch_ms(10000), NULL, NULL,
        NULL, epoch_ms(10000));
    INSERT INTO ticket_events VALUES (1, 1, epoch_ms(10000), 'opened', 'monitoring', 'opened', '{}');
    INSERT INTO problems VALUES (1, 'open', 'sig', 'recurring pg', NULL, epoch_ms(5000), NULL, epoch_ms(5000));
    INSERT INTO problem_incidents VALUES (1, 1, epoch_ms(10000));
";

fn upgraded_from_schema_1(conn: &mut duckdb::Connection) {
    assert_eq!(super::migrations::migrate_to(conn, 1).expect("schema 1"), 1);
    conn.execute_batch(SCHEMA_1_ROWS).expect("old rows");
    assert_eq!(
        super::migrations::migrate(conn).expect("upgrade"),
        MIGRATIONS.len() - 1
    );
}

fn check_upgraded(store: &mut Store) {
    let reader = store.reader().expect("reader");
    let alerts = reader
        .alerts(Some("firing"))
        .expect("alerts through the recreated view");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["suppressed_by"], serde_json::Value::Null);
    assert_eq!(alerts[0]["flapping"], false);
    let inc = reader.incident(1).expect("incident").expect("exists");
    assert_eq!(inc["nodes_affected"], 1);
    assert_eq!(inc["symptoms"], 0);
    assert_eq!(inc["alerts"][0]["role"], "root");
    let p = reader.problem("1").expect("problem").expect("exists");
    assert_eq!(p["incident_count"], 0);
    assert_eq!(p["incidents"][0]["id"], 1);
    let snap = store
        .snapshot(scope(20_000))
        .expect("snapshot of an upgraded database");
    let i = &snap.incidents[0];
    assert_eq!((i.impact, i.urgency), (Level::Medium, Level::High));
    assert_eq!(i.signature, "");
    assert_eq!(i.nodes_affected, 1);
    assert_eq!(snap.problems[0].number, "PRB-000001");
    assert!(
        snap.recent.is_empty(),
        "incidents without a signature count towards nothing"
    );
    assert_eq!(snap.next_ids.problem, 2);
    assert_eq!(snap.next_ids.maintenance, 1);
    // New rows go into the upgraded tables.
    let mut e = engine(snap);
    let out = e.handle(30_000, report(6, 30_000, CheckStatus::Ok));
    write(store, &out.effects);
    assert_eq!(
        store
            .reader()
            .expect("reader")
            .incidents(Some("resolved"))
            .expect("resolved")
            .len(),
        1
    );
}

#[test]
fn a_schema_1_database_upgrades_in_place() {
    let mut conn = duckdb::Connection::open_in_memory().expect("open");
    upgraded_from_schema_1(&mut conn);
    let mut store = Store::with_connection(conn, None).expect("store");
    check_upgraded(&mut store);

    // The same with a file written by the old schema and reopened by this build.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("old.duckdb");
    {
        let mut conn = duckdb::Connection::open(&path).expect("open file");
        assert_eq!(
            super::migrations::migrate_to(&mut conn, 1).expect("schema 1"),
            1
        );
        conn.execute_batch(SCHEMA_1_ROWS).expect("old rows");
    }
    let mut store = Store::open(&path).expect("open and upgrade");
    check_upgraded(&mut store);
}

/// Migration 0006 moves each node's stored report from `nodes.last_report` to
/// `node_reports`; the API's node list shows it as before.
#[test]
fn a_schema_5_report_moves_to_node_reports() {
    let mut conn = duckdb::Connection::open_in_memory().expect("open");
    assert_eq!(
        super::migrations::migrate_to(&mut conn, 5).expect("schema 5"),
        5
    );
    conn.execute_batch(
        "INSERT INTO nodes (site, node, kind, state, labels, parents, last_seq, last_ts,
             last_report_at, last_report, state_changed_at, first_seen, updated_at)
         VALUES ('dc1', 'web-01', 'host', 'online', '{}', '[]', 7, epoch_ms(70000),
             epoch_ms(70000), '{\"seq\":7}', epoch_ms(1000), epoch_ms(1000), epoch_ms(70000)),
            ('dc1', 'web-02', 'host', 'online', '{}', '[]', NULL, NULL, NULL, NULL,
             epoch_ms(1000), epoch_ms(1000), epoch_ms(1000));",
    )
    .expect("schema 5 rows");
    assert_eq!(super::migrations::migrate(&mut conn).expect("upgrade"), 1);
    let moved: (String, u64, i64) = conn
        .query_row(
            "SELECT node, seq, epoch_ms(report_at) FROM node_reports",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("one moved report");
    assert_eq!(moved, ("web-01".to_string(), 7, 70_000));
    let store = Store::with_connection(conn, None).expect("store");
    let nodes = store.reader().expect("reader").nodes().expect("nodes");
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["last_report"]["seq"], 7);
    assert_eq!(nodes[1]["last_report"], serde_json::Value::Null);
    assert_eq!(nodes[1]["last_seq"], serde_json::Value::Null);
}
