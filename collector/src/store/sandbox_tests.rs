//! The SQL sandbox against a real database file: what it answers, and every way out it refuses.

use std::time::{Duration, Instant};

use super::*;
use crate::store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    secret: std::path::PathBuf,
    archive: std::path::PathBuf,
}

/// A database file with an archive folder, two nodes, and a file outside both.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "user,password\nroot,hunter2\n").expect("secret");
    let archive = dir.path().join("archive");
    let mut store =
        Store::open_with_archive(&dir.path().join("t.duckdb"), Some(&archive)).expect("store");
    store
        .connection()
        .execute_batch(
            "INSERT INTO nodes (site, node, kind, state, state_changed_at, first_seen, updated_at)
             VALUES ('dc1', 'web-01', 'host', 'online', TIMESTAMP '2026-11-29 10:00:00', TIMESTAMP '2026-11-29 10:00:00', TIMESTAMP '2026-11-29 10:00:00'),
                    ('dc1', 'db-01', 'host', 'offline', TIMESTAMP '2026-11-29 11:00:00', TIMESTAMP '2026-11-29 11:00:00', TIMESTAMP '2026-11-29 11:00:00');",
        )
        .expect("seed");
    Fixture {
        _dir: dir,
        store,
        secret,
        archive: archive.canonicalize().expect("archive"),
    }
}

fn run(f: &Fixture, sql: &str) -> Result<QueryResult, QueryError> {
    f.store
        .query_handle()
        .expect("handle")
        .run(sql, 100, RowFormat::Rows)
}

fn refused(f: &Fixture, sql: &str) -> String {
    match run(f, sql) {
        Err(QueryError::Refused(m)) => m,
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

fn node_count(f: &Fixture) -> i64 {
    run(f, "SELECT count(*) FROM nodes").expect("count").rows[0][0]
        .as_i64()
        .expect("number")
}

#[test]
fn a_select_answers_with_typed_columns_and_json_values() {
    let f = fixture();
    let r = run(
        &f,
        "SELECT node, state, first_seen, 1.5::DOUBLE AS x, [1, 2] AS l
         FROM nodes ORDER BY node; -- the trailing semicolon and comment are fine",
    )
    .expect("select");
    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["node", "state", "first_seen", "x", "l"]);
    let types: Vec<&str> = r.columns.iter().map(|c| c.type_name.as_str()).collect();
    assert_eq!(
        types,
        ["VARCHAR", "VARCHAR", "TIMESTAMP", "DOUBLE", "INTEGER[]"]
    );
    assert_eq!(r.row_count, 2);
    assert!(!r.truncated);
    assert_eq!(
        r.rows[0],
        serde_json::json!(["db-01", "offline", "2026-11-29T11:00:00.000Z", 1.5, [1, 2]])
    );

    let objects = f
        .store
        .query_handle()
        .expect("handle")
        .run(
            "FROM nodes SELECT node ORDER BY node",
            100,
            RowFormat::Objects,
        )
        .expect("objects");
    assert_eq!(objects.rows[1], serde_json::json!({"node": "web-01"}));
}

#[test]
fn a_null_column_and_unusual_types_answer() {
    let f = fixture();
    let r = run(
        &f,
        "SELECT NULL AS x, INTERVAL 90 MINUTE AS i, DATE '2026-11-30' AS d, {'a': 1} AS s",
    )
    .expect("select");
    assert_eq!(r.columns[0].type_name, "NULL");
    assert_eq!(r.rows[0][0], serde_json::Value::Null);
    assert_eq!(r.rows[0][2], serde_json::json!("2026-11-30"));
    assert_eq!(r.rows[0][3], serde_json::json!({"a": 1}));
}

#[test]
fn an_answer_too_large_is_refused_not_built() {
    let f = fixture();
    let m = refused(&f, "SELECT repeat('x', 1000000) FROM range(100)");
    assert!(m.contains("larger than 32 MiB"), "{m}");
    let m = run(&f, "SELECT 'infinity'::TIMESTAMP_S AS t");
    assert!(
        m.is_ok() || matches!(m, Err(QueryError::Failed(_))),
        "{m:?}"
    );
}

#[test]
fn the_row_limit_truncates_and_says_so() {
    let f = fixture();
    let r = f
        .store
        .query_handle()
        .expect("handle")
        .run("SELECT * FROM range(10) ORDER BY 1", 3, RowFormat::Rows)
        .expect("select");
    assert_eq!(r.row_count, 3);
    assert!(r.truncated);
    assert_eq!(
        r.rows,
        [
            serde_json::json!([0]),
            serde_json::json!([1]),
            serde_json::json!([2])
        ]
    );
}

#[test]
fn statements_other_than_one_select_are_refused_by_the_parser() {
    let f = fixture();
    let out = f.archive.join("x.parquet");
    let out = out.display();
    for sql in [
        "INSERT INTO nodes (site, node, kind, state, state_changed_at, first_seen, updated_at) VALUES ('x', 'y', 'host', 'online', now(), now())",
        "UPDATE nodes SET state = 'gone'",
        "DELETE FROM nodes",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE nodes",
        "ALTER TABLE nodes ADD COLUMN x INTEGER",
        &format!("COPY nodes TO '{out}' (FORMAT parquet)"),
        &format!("COPY nodes FROM '{out}'"),
        "EXPORT DATABASE '/tmp/tocsin-export'",
        "ATTACH ':memory:' AS other",
        "ATTACH '/tmp/tocsin-other.duckdb' AS other",
        "DETACH other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "CALL checkpoint()",
        "CHECKPOINT",
        "BEGIN TRANSACTION",
        "VACUUM",
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE nodes",
    ] {
        let m = refused(&f, sql);
        assert!(
            m.contains("only a read-only SELECT") || m.contains("exactly one SELECT"),
            "{sql}: {m}"
        );
    }
    assert_eq!(node_count(&f), 2, "nothing changed");
    assert!(!f.archive.join("x.parquet").exists());
}

#[test]
fn file_access_is_refused_by_duckdb_itself() {
    let f = fixture();
    let secret = f.secret.display().to_string();
    for sql in [
        format!("SELECT * FROM read_csv('{secret}')"),
        "SELECT * FROM read_json('/etc/hostname')".to_string(),
        "SELECT * FROM read_csv_auto('/etc/passwd')".to_string(),
        "SELECT * FROM sniff_csv('/etc/passwd')".to_string(),
        "SELECT * FROM glob('/etc/*')".to_string(),
        "SELECT * FROM read_parquet('/tmp/*.parquet')".to_string(),
    ] {
        let m = refused(&f, &sql);
        assert!(m.contains("refused by the sandbox"), "{sql}: {m}");
    }
    // A file name as a table: replacement scans are off without external access.
    let e = run(&f, &format!("SELECT * FROM '{secret}'"));
    assert!(e.is_err(), "{e:?}");
    // The archive folder is the one place it may read (exported history).
    let ok = run(
        &f,
        &format!(
            "SELECT count(*) FROM read_parquet('{}/incidents/*/*.parquet')",
            f.archive.display()
        ),
    )
    .expect("the archive is readable");
    assert_eq!(ok.rows[0][0], serde_json::json!(0));
}

#[test]
fn functions_that_step_outside_the_sandbox_are_refused() {
    let f = fixture();
    let db = f._dir.path().join("t.duckdb");
    let db = db.display();
    for sql in [
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT setval(''rejected_payloads_id'', 1) AS v'))".to_string(),
        "SELECT * FROM query('SELECT 1')".to_string(),
        "SELECT * FROM main.query_table('nodes')".to_string(),
        "SELECT SETVAL('rejected_payloads_id', 5)".to_string(),
        "SELECT * FROM checkpoint()".to_string(),
        "SELECT * FROM force_checkpoint()".to_string(),
        "SELECT * FROM truncate_duckdb_logs()".to_string(),
        "SELECT * FROM enable_logging()".to_string(),
        format!("SELECT * FROM read_blob('{db}')"),
        format!("SELECT content FROM read_text('{db}.wal')"),
        "WITH x AS (SELECT nextval('rejected_payloads_id') AS n) SELECT n FROM x".to_string(),
    ] {
        let m = refused(&f, &sql);
        assert!(m.contains("may not run here"), "{sql}: {m}");
    }
    let seq = run(&f, "SELECT currval('rejected_payloads_id')");
    assert!(seq.is_err(), "the sequence was never advanced: {seq:?}");
}

#[test]
fn the_read_only_transaction_is_a_second_fence_behind_the_name_list() {
    let mut f = fixture();
    // The sandbox's own transaction mode, without its name check: DuckDB refuses the write.
    let conn = f.store.connection();
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .expect("begin");
    let e = conn.query_row("SELECT nextval('rejected_payloads_id')", [], |r| {
        r.get::<_, i64>(0)
    });
    let message = e
        .expect_err("a write in a read-only transaction")
        .to_string();
    assert!(message.contains("read-only"), "{message}");
    conn.execute_batch("ROLLBACK").expect("rollback");
    let e = run(&f, "SELECT * FROM query('DELETE FROM nodes')");
    assert!(e.is_err(), "{e:?}");
    assert_eq!(node_count(&f), 2);
}

#[test]
fn settings_stay_locked_for_every_connection() {
    let mut f = fixture();
    let conn = f.store.connection();
    for sql in [
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET allowed_directories = ['/']",
        "SET autoinstall_known_extensions = true",
    ] {
        assert!(conn.execute_batch(sql).is_err(), "{sql} was accepted");
    }
    let external: bool = conn
        .query_row(
            "SELECT current_setting('enable_external_access')",
            [],
            |r| r.get(0),
        )
        .expect("setting");
    assert!(!external);
}

#[test]
fn a_long_query_is_cancelled_and_does_not_hold_up_writes() {
    let mut f = fixture();
    let handle = f.store.query_handle().expect("handle");
    let interrupter = handle.interrupter();
    let started = Instant::now();
    let long = std::thread::spawn(move || {
        handle.run(
            "SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3",
            10,
            RowFormat::Rows,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile the writer's connection commits as usual.
    let write_started = Instant::now();
    {
        let tx = f.store.connection().transaction().expect("tx");
        tx.execute_batch(
            "INSERT INTO nodes (site, node, kind, state, state_changed_at, first_seen, updated_at)
             VALUES ('dc2', 'app-01', 'host', 'online', now()::TIMESTAMP, now()::TIMESTAMP, now()::TIMESTAMP)",
        )
        .expect("insert");
        tx.commit().expect("commit");
    }
    let write_took = write_started.elapsed();
    assert!(!long.is_finished(), "the long query should still run");
    interrupter.interrupt();
    let result = long.join().expect("thread");
    assert!(matches!(result, Err(QueryError::Interrupted)), "{result:?}");
    assert!(
        write_took < Duration::from_secs(2),
        "the write waited for the query: {write_took:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(node_count(&f), 3);
}

#[test]
fn terminating_semicolons_go_and_literals_and_comments_stay() {
    assert_eq!(trim_statement("SELECT 1;"), "SELECT 1");
    assert_eq!(
        trim_statement("SELECT ';' AS s; -- done; really\n"),
        "SELECT ';' AS s -- done; really"
    );
    assert_eq!(
        trim_statement("SELECT \"a;b\", $$x;y$$ /* ; */ ;;"),
        "SELECT \"a;b\", $$x;y$$ /* ; */"
    );
}
