//! Retention against a real database file and archive folder: what moves, what stays, and
//! that the views still count the moved history, also after a restart and an interrupted run.

use std::path::{Path, PathBuf};

use super::*;
use crate::store::Store;

/// 2026-06-01T00:00:00Z: everything finished before it is old.
const CUTOFF: Millis = 1_780_272_000_000;

fn incident(id: i64, state: &str, opened: &str, closed: Option<&str>) -> String {
    let closed = closed.map_or("NULL".to_string(), |c| format!("TIMESTAMP '{c}'"));
    format!(
        "INSERT INTO incidents (id, state, title, severity, category, priority, site, node, root_alert,
           root_cause, opened_at, closed_at, updated_at)
         VALUES ({id}, '{state}', 'i{id}', 'critical', 'software', 'P2', 'dc1', 'web-01', 'a{id}',
           'cause', TIMESTAMP '{opened}', {closed}, coalesce({closed}, TIMESTAMP '{opened}'));"
    )
}

fn alert(id: i64, key: &str, state: &str, at: &str, incident: Option<i64>) -> String {
    let incident = incident.map_or("NULL".to_string(), |i| i.to_string());
    format!(
        "INSERT INTO alerts (id, alert_key, rule, site, node, state, severity, category, summary, detail,
           started_at, changed_at, incident_id)
         VALUES ({id}, '{key}', 'r', 'dc1', 'web-01', '{state}', 'critical', 'software', 's', 'd',
           TIMESTAMP '{at}', TIMESTAMP '{at}', {incident});"
    )
}

fn link(incident: i64, key: &str, at: &str) -> String {
    format!(
        "INSERT INTO incident_alerts (incident_id, alert_key, role, linked_at)
         VALUES ({incident}, '{key}', 'root', TIMESTAMP '{at}');"
    )
}

fn seed(store: &mut Store) {
    let mut sql = String::new();
    // 1 and 2: closed long ago (January, February): archived with their links and alerts.
    sql += &incident(
        1,
        "closed",
        "2026-01-10 08:00:00",
        Some("2026-01-11 08:00:00"),
    );
    sql += &incident(
        2,
        "closed",
        "2026-02-05 08:00:00",
        Some("2026-02-06 08:00:00"),
    );
    // 3: opened long ago and still open: stays.
    sql += &incident(3, "open", "2026-01-05 08:00:00", None);
    // 4: closed recently: stays.
    sql += &incident(
        4,
        "closed",
        "2026-11-01 08:00:00",
        Some("2026-11-02 08:00:00"),
    );
    // 5: merged long ago, but a live alert still points at it: stays.
    sql += &incident(
        5,
        "merged",
        "2026-01-20 08:00:00",
        Some("2026-01-20 09:00:00"),
    );
    sql += &link(1, "k1", "2026-01-10 08:00:00");
    sql += &link(2, "k2", "2026-02-05 08:00:00");
    sql += &link(3, "k3", "2026-01-05 08:00:00");
    sql += &alert(1, "k1", "firing", "2026-01-10 08:00:00", Some(1));
    sql += &alert(2, "k1", "resolved", "2026-01-11 07:00:00", Some(1));
    sql += &alert(3, "k2", "firing", "2026-02-05 08:00:00", Some(2));
    sql += &alert(4, "k2", "resolved", "2026-02-06 07:00:00", Some(2));
    // k3 fires for the open incident 3: stays.
    sql += &alert(5, "k3", "firing", "2026-01-05 08:00:00", Some(3));
    // k5 has fired since January (its current state): stays, and keeps incident 5.
    sql += &alert(6, "k5", "firing", "2026-01-20 08:00:00", Some(5));
    // k6: an old flap without an incident, resolved: archived.
    sql += &alert(7, "k6", "firing", "2026-03-01 08:00:00", None);
    sql += &alert(8, "k6", "resolved", "2026-03-01 08:05:00", None);
    // Recent.
    sql += &alert(9, "k7", "firing", "2026-11-01 08:00:00", Some(4));
    store.connection().execute_batch(&sql).expect("seed");
}

/// A seeded store with an archive folder: (the folder holding both, the archive, the store).
fn seeded() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let mut store =
        Store::open_with_archive(&dir.path().join("t.duckdb"), Some(&archive)).expect("store");
    seed(&mut store);
    (dir, archive, store)
}

/// Transactions small enough that the seeded history takes several.
const TINY: Chunk = Chunk {
    incidents: 1,
    alerts: 2,
};

fn count(store: &mut Store, sql: &str) -> i64 {
    store
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .expect(sql)
}

/// One value of a query, as text (lists cast with `::VARCHAR`).
fn text(store: &mut Store, sql: &str) -> String {
    store
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .expect(sql)
}

fn parquet_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["alerts", "incidents", "incident_alerts"] {
        let Ok(months) = std::fs::read_dir(dir.join(table)) else {
            continue;
        };
        for m in months.flatten() {
            let month = m.file_name().to_string_lossy().into_owned();
            if month == SCHEMA_PARTITION {
                continue;
            }
            for f in std::fs::read_dir(m.path()).expect("month").flatten() {
                out.push(format!(
                    "{table}/{month}/{}",
                    f.file_name().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn old_history_moves_to_monthly_parquet_and_the_views_still_count_it() {
    let (dir, archive, mut store) = seeded();
    let db = dir.path().join("t.duckdb");
    let daily_before = count(
        &mut store,
        "SELECT sum(incidents)::BIGINT FROM v_incidents_daily",
    );
    let noisy_before = count(&mut store, "SELECT sum(firing)::BIGINT FROM v_noisy_nodes");
    assert_eq!(daily_before, 5);

    let conn = store.clone_connection().expect("connection");
    let archived = run(&conn, &archive, CUTOFF, "1700").expect("retention");
    assert_eq!(
        archived,
        Archived {
            alerts: 6,
            incidents: 2,
            incident_alerts: 2,
            files: 7,
        }
    );
    assert_eq!(
        parquet_files(&archive),
        [
            "alerts/month=2026-01/1700_0.parquet",
            "alerts/month=2026-02/1700_0.parquet",
            "alerts/month=2026-03/1700_0.parquet",
            "incident_alerts/month=2026-01/1700_0.parquet",
            "incident_alerts/month=2026-02/1700_0.parquet",
            "incidents/month=2026-01/1700_0.parquet",
            "incidents/month=2026-02/1700_0.parquet",
        ]
    );
    // The live file keeps what is recent, open or still needed.
    let live = text(
        &mut store,
        "SELECT list(id ORDER BY id)::VARCHAR FROM incidents",
    );
    assert_eq!(live, "[3, 4, 5]");
    let live_alerts = text(
        &mut store,
        "SELECT list(id ORDER BY id)::VARCHAR FROM alerts",
    );
    assert_eq!(live_alerts, "[5, 6, 9]");
    assert_eq!(count(&mut store, "SELECT count(*) FROM incident_alerts"), 1);
    // The history is still counted.
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents_all"), 5);
    assert_eq!(count(&mut store, "SELECT count(*) FROM alerts_all"), 9);
    assert_eq!(
        count(&mut store, "SELECT count(*) FROM incident_alerts_all"),
        3
    );
    assert_eq!(
        count(
            &mut store,
            "SELECT sum(incidents)::BIGINT FROM v_incidents_daily"
        ),
        daily_before
    );
    assert_eq!(
        count(&mut store, "SELECT sum(firing)::BIGINT FROM v_noisy_nodes"),
        noisy_before
    );
    let jan: i64 = count(
        &mut store,
        "SELECT count(*) FROM incidents_archive WHERE opened_at < TIMESTAMP '2026-02-01'",
    );
    assert_eq!(jan, 1, "the archive keeps the columns and their types");

    assert_eq!(
        count(
            &mut store,
            "SELECT incidents FROM archive_batches WHERE batch = '1700'"
        ),
        2,
        "the run is recorded with what it moved"
    );
    // A second run finds nothing more; nothing is counted twice.
    let again = run(&conn, &archive, CUTOFF, "1800").expect("second run");
    assert_eq!(again.rows(), 0);
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents_all"), 5);

    // After a restart the views read the archive again.
    drop(conn);
    drop(store);
    let mut store = Store::open_with_archive(&db, Some(&archive)).expect("reopen");
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents_all"), 5);
    assert_eq!(count(&mut store, "SELECT count(*) FROM alerts_all"), 9);
    assert_eq!(
        count(
            &mut store,
            "SELECT sum(incidents)::BIGINT FROM v_incidents_daily"
        ),
        5
    );
}

#[test]
fn an_interrupted_run_is_finished_or_discarded_and_never_doubles_rows() {
    let (_dir, archive, mut store) = seeded();
    let archive = archive.canonicalize().expect("archive");

    // A run that died before its commit: the rows are live, its files must go.
    let dead = archive
        .join(".staging-1")
        .join("incidents")
        .join("month=2026-01");
    std::fs::create_dir_all(&dead).expect("staging");
    store
        .connection()
        .execute_batch(&format!(
            "COPY (SELECT * FROM incidents WHERE id = 1) TO {} (FORMAT parquet)",
            literal(&dead.join("1_0.parquet"))
        ))
        .expect("copy");
    // A run that committed (its batch is recorded) but died before moving its files: they
    // must be moved in.
    let committed = archive
        .join(".staging-2")
        .join("incidents")
        .join("month=2025-12");
    std::fs::create_dir_all(&committed).expect("staging");
    store
        .connection()
        .execute_batch(&format!(
            "CREATE TEMP TABLE gone AS SELECT * REPLACE (99 AS id, TIMESTAMP '2025-12-01' AS opened_at) FROM incidents WHERE id = 1;
             COPY gone TO {} (FORMAT parquet);",
            literal(&committed.join("2_0.parquet"))
        ))
        .expect("copy");
    store
        .connection()
        .execute_batch("INSERT INTO archive_batches VALUES ('2', now()::TIMESTAMP, 0, 1, 0)")
        .expect("the run's commit");

    let conn = store.clone_connection().expect("connection");
    recover(&conn, &archive).expect("recover");
    assert!(!archive.join(".staging-1").exists());
    assert!(!archive.join(".staging-2").exists());
    assert!(archive.join("incidents/month=2025-12/2_0.parquet").exists());
    assert_eq!(
        count(&mut store, "SELECT count(*) FROM incidents_all"),
        6,
        "the five live ones and the committed one; the uncommitted copy is gone"
    );
}

/// A run moves the history in transactions of at most a chunk each, one batch per
/// transaction, until none is left: the same rows as in one, each once.
#[test]
fn a_long_history_moves_in_bounded_transactions() {
    let (_dir, archive, mut store) = seeded();
    let conn = store.clone_connection().expect("connection");
    let chunk = TINY;
    let archived = run_in_chunks(&conn, &archive, CUTOFF, "1700", chunk).expect("retention");
    assert_eq!(
        (
            archived.alerts,
            archived.incidents,
            archived.incident_alerts
        ),
        (6, 2, 2),
        "what one transaction moves"
    );
    // Incidents 1 and 2 in the first two, alerts two at a time: three batches, the oldest
    // first, each recorded with what it moved.
    let batches = text(
        &mut store,
        "SELECT list((batch, alerts, incidents, incident_alerts) ORDER BY batch)::VARCHAR
             FROM archive_batches",
    );
    assert_eq!(
        batches,
        "[(1700, 2, 1, 1), (1700-1, 2, 1, 1), (1700-2, 2, 0, 0)]"
    );
    let files = parquet_files(&archive.canonicalize().expect("archive"));
    assert_eq!(files.len(), archived.files);
    assert!(files.contains(&"incidents/month=2026-02/1700-1_0.parquet".to_string()));
    assert!(!archive.join(".staging-1700-3").exists());
    // Everything is counted once, live or archived.
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents_all"), 5);
    assert_eq!(count(&mut store, "SELECT count(*) FROM alerts_all"), 9);
    assert_eq!(
        count(&mut store, "SELECT count(*) FROM incident_alerts_all"),
        3
    );
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents"), 3);
    // The next run finds nothing.
    let again = run_in_chunks(&conn, &archive, CUTOFF, "1800", chunk).expect("again");
    assert_eq!(again.rows(), 0);
    assert_eq!(CHUNK.incidents, 100_000, "the default stays a bounded one");
}

/// A run that fails after some of its transactions committed says what they moved (the
/// metrics count it as archived), and the next run moves in the committed batch's files and
/// goes on: every row archived once.
#[test]
fn a_run_that_fails_midway_reports_what_it_moved() {
    let (_dir, archive, mut store) = seeded();
    let conn = store.clone_connection().expect("connection");
    let chunk = TINY;
    // The second transaction commits, then cannot move its incident's file into place.
    let blocker = archive.join("incidents/month=2026-02/1700-1_0.parquet");
    std::fs::create_dir_all(&blocker).expect("blocker");
    let failed = run_in_chunks(&conn, &archive, CUTOFF, "1700", chunk).expect_err("must fail");
    assert!(
        failed.error.to_string().contains("cannot move into"),
        "{}",
        failed.error
    );
    assert_eq!(
        (
            failed.moved.alerts,
            failed.moved.incidents,
            failed.moved.incident_alerts
        ),
        (4, 2, 2),
        "both committed transactions count"
    );
    let batches = text(
        &mut store,
        "SELECT list(batch ORDER BY batch)::VARCHAR FROM archive_batches",
    );
    assert_eq!(batches, "[1700, 1700-1]");
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents"), 3);

    std::fs::remove_dir(&blocker).expect("unblock");
    let rest = run_in_chunks(&conn, &archive, CUTOFF, "1800", chunk).expect("next run");
    assert_eq!(
        (rest.alerts, rest.incidents, rest.incident_alerts),
        (2, 0, 0),
        "the next run moves only what is left"
    );
    let files = parquet_files(&archive.canonicalize().expect("archive"));
    assert!(files.contains(&"incidents/month=2026-02/1700-1_0.parquet".to_string()));
    assert!(!archive.join(".staging-1700-1").exists());
    assert_eq!(count(&mut store, "SELECT count(*) FROM incidents_all"), 5);
    assert_eq!(count(&mut store, "SELECT count(*) FROM alerts_all"), 9);
    assert_eq!(
        count(&mut store, "SELECT count(*) FROM incident_alerts_all"),
        3
    );
}
