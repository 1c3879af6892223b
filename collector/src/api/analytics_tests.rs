//! The analytics endpoints and the dashboard files through the real HTTP server: the summary,
//! the SQL sandbox's answers, refusals and limits, and who may call them.

use std::time::{Duration, Instant};

use serde_json::json;

use super::tests::{collector, request};

const VIEW: &str = "Authorization: Bearer view-secret";
const OP: &str = "Authorization: Bearer op-secret";

async fn with_tokens(dir: &std::path::Path, extra: &str) -> crate::Running {
    std::fs::write(dir.join("op.token"), "op-secret\n").expect("token");
    std::fs::write(dir.join("view.token"), "view-secret\n").expect("token");
    collector(
        dir,
        &format!(
            "operator_token_file = \"{}\"\nviewer_token_file = \"{}\"\n{extra}",
            dir.join("op.token").display(),
            dir.join("view.token").display()
        ),
    )
    .await
}

async fn query(port: u16, body: serde_json::Value) -> super::tests::Answer {
    request(
        port,
        "POST",
        "/api/v1/query",
        &[VIEW, "Content-Type: application/json"],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_endpoint_answers_a_select_for_a_viewer_and_refuses_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = with_tokens(dir.path(), "").await;
    let port = running.http_addr.port();

    let a = query(port, json!({"sql": "SELECT 42 AS answer, 'x' AS s"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["rows"], json!([[42, "x"]]));
    assert_eq!(
        a.body["columns"][0],
        json!({"name": "answer", "type": "INTEGER"})
    );
    assert_eq!(a.body["truncated"], json!(false));
    let a = query(
        port,
        json!({"sql": "SELECT * FROM range(5)", "limit": 2, "format": "objects"}),
    )
    .await;
    assert_eq!(a.body["rows"], json!([{"range": 0}, {"range": 1}]));
    assert_eq!(a.body["truncated"], json!(true));
    // Every table and view the docs name can be read.
    for table in [
        "nodes",
        "node_reports",
        "v_nodes",
        "alerts",
        "incidents",
        "tickets",
        "ticket_events",
        "problems",
        "notifications",
        "v_ticket_sla",
        "v_mtta_mttr",
        "v_incidents_daily",
        "v_top_problems",
        "v_noisy_nodes",
        "v_escalations",
        "incidents_all",
        "alerts_all",
    ] {
        let a = query(
            port,
            json!({"sql": format!("SELECT count(*) FROM {table}")}),
        )
        .await;
        assert_eq!(a.status, 200, "{table}: {}", a.body);
    }

    // Without a token: 401, like any read.
    let a = request(
        port,
        "POST",
        "/api/v1/query",
        &[],
        br#"{"sql": "SELECT 1"}"#,
    )
    .await;
    assert_eq!(a.status, 401);

    for sql in [
        "COPY tickets TO '/tmp/tocsin-leak.csv'",
        "ATTACH '/tmp/tocsin-other.duckdb' AS o",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA database_list",
        "DELETE FROM tickets",
        "SELECT 1; SELECT 2",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT nextval('rejected_payloads_id')",
    ] {
        let a = query(port, json!({ "sql": sql })).await;
        assert_eq!(a.status, 422, "{sql}: {}", a.body);
        let e = a.body["error"].as_str().unwrap_or_default();
        assert!(e.starts_with("refused: "), "{sql}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    assert!(!std::path::Path::new("/tmp/tocsin-leak.csv").exists());
    let a = query(port, json!({"sql": "SELECT * FROM no_such_table"})).await;
    assert_eq!(a.status, 422);
    assert!(
        a.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_table"))
    );
    for (body, what) in [
        (json!({"query": "SELECT 1"}), "no sql"),
        (json!({"sql": "SELECT 1", "limit": 0}), "limit 0"),
        (
            json!({"sql": "SELECT 1", "limit": 1_000_000}),
            "limit too high",
        ),
        (json!({"sql": "SELECT 1", "format": "csv"}), "format"),
    ] {
        assert_eq!(query(port, body).await.status, 400, "{what}");
    }
    let (_, text) = raw_get(port, "/metrics").await;
    assert!(
        text.contains("tocsin_queries_total{outcome=\"ok\"}"),
        "{text}"
    );
    assert!(!text.contains("tocsin_queries_total{outcome=\"refused\"} 0"));
    running.stop().await;
}

/// GET returning the status and the raw body (for non-JSON answers).
async fn raw_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, format!("{head}\r\n\r\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_query_is_cancelled_at_the_time_limit_without_holding_up_other_reads() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = with_tokens(
        dir.path(),
        "[analytics]\nquery_timeout = \"1s\"\nquery_concurrency = 1\nquery_queue = 1",
    )
    .await;
    let port = running.http_addr.port();
    let started = Instant::now();
    let long = tokio::spawn(query(
        port,
        json!({"sql": "SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3"}),
    ));
    // Late enough that the long one's cancellation (at its time limit, plus DuckDB's
    // interrupt latency, which grows on a loaded machine) comes well before this one's
    // wait runs out (its own time limit, from when it was queued).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One more waits for the slot (the queue holds one) and runs once the long one is
    // cancelled; a third finds the queue full.
    let queued = tokio::spawn(query(port, json!({"sql": "SELECT 1"})));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Other reads answer while it runs.
    let read_started = Instant::now();
    let nodes = request(port, "GET", "/api/v1/nodes", &[VIEW], b"").await;
    assert_eq!(nodes.status, 200);
    assert!(
        read_started.elapsed() < Duration::from_millis(700),
        "a read waited for the query: {:?}",
        read_started.elapsed()
    );
    let busy = query(port, json!({"sql": "SELECT 1"})).await;
    assert_eq!(busy.status, 429, "{}", busy.body);
    let a = long.await.expect("task");
    let queued = queued.await.expect("task");
    assert_eq!(queued.status, 200, "{}", queued.body);
    assert_eq!(a.status, 408, "{}", a.body);
    assert!(
        a.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("query_timeout"))
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The slot is free again.
    assert_eq!(query(port, json!({"sql": "SELECT 1"})).await.status, 200);
    let (_, text) = raw_get(port, "/metrics").await;
    assert!(
        text.contains("tocsin_queries_total{outcome=\"timed_out\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tocsin_queries_total{outcome=\"busy\"} 1"),
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_and_the_dashboard_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = with_tokens(dir.path(), "").await;
    let port = running.http_addr.port();

    let a = request(
        port,
        "GET",
        "/api/v1/analytics/summary?from=2026-01-01&to=2026-12-31&group_by=site",
        &[VIEW],
        b"",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["group_by"], json!("site"));
    assert_eq!(a.body["from"], json!("2026-01-01T00:00:00.000Z"));
    assert_eq!(a.body["totals"]["tickets"], json!(0));
    assert_eq!(a.body["totals"]["mtta_ms"], json!(null));
    assert_eq!(a.body["now"]["open_incidents_by_priority"]["P1"], json!(0));
    for bad in [
        "/api/v1/analytics/summary?group_by=team",
        "/api/v1/analytics/summary?from=soon",
        "/api/v1/analytics/summary?from=2026-02-01&to=2026-01-01",
    ] {
        let a = request(port, "GET", bad, &[VIEW], b"").await;
        assert_eq!(a.status, 400, "{bad}");
    }
    assert_eq!(
        request(port, "GET", "/api/v1/analytics/summary", &[], b"")
            .await
            .status,
        401
    );

    // The dashboard's files need no token (the data behind them does).
    let (status, page) = raw_get(port, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    assert!(page.contains("app.js"));
    assert!(
        page.contains("content-security-policy: default-src 'self'"),
        "{page}"
    );
    let (status, js) = raw_get(port, "/web/app.js").await;
    assert_eq!(status, 200);
    assert!(
        js.to_ascii_lowercase()
            .contains("content-type: text/javascript")
    );
    assert_eq!(raw_get(port, "/web/nope.js").await.0, 404);
    assert_eq!(raw_get(port, "/web/..%2Fconfig.rs").await.0, 404);
    // A page of another site cannot make the operator's browser write (no token needed on
    // loopback); the same origin and programs without an Origin can.
    let body = br#"{"sql": "SELECT 1"}"#;
    let a = request(
        port,
        "POST",
        "/api/v1/query",
        &[VIEW, "Origin: http://evil.example"],
        body,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = request(port, "POST", "/api/v1/query", &[VIEW, "Origin: null"], body).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = request(
        port,
        "POST",
        "/api/v1/query",
        &[VIEW, "Origin: http://127.0.0.1"],
        body,
    )
    .await;
    assert_eq!(a.status, 200, "same origin: {}", a.body);
    // A POST to the page is not a way in.
    let a = request(port, "POST", "/", &[OP], b"").await;
    assert_eq!(a.status, 405);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_moves_old_history_to_parquet_and_still_counts_it() {
    let dir = tempfile::tempdir().expect("tmp");
    // A database with a year-old closed incident (and its alert transitions) and a fresh one.
    {
        let mut store = crate::store::Store::open(&dir.path().join("t.duckdb")).expect("store");
        store
            .connection()
            .execute_batch(
                "INSERT INTO incidents (id, state, title, severity, category, priority, site, node,
                   root_alert, root_cause, opened_at, closed_at, updated_at)
                 VALUES (1, 'closed', 'old', 'critical', 'software', 'P2', 'dc1', 'web-01', 'a', 'c',
                   now()::TIMESTAMP - INTERVAL 400 DAY, now()::TIMESTAMP - INTERVAL 399 DAY, now()::TIMESTAMP - INTERVAL 399 DAY),
                        (2, 'closed', 'new', 'critical', 'software', 'P2', 'dc1', 'web-01', 'a', 'c',
                   now()::TIMESTAMP - INTERVAL 2 DAY, now()::TIMESTAMP - INTERVAL 1 DAY, now()::TIMESTAMP - INTERVAL 1 DAY);
                 INSERT INTO alerts (id, alert_key, rule, site, node, state, severity, category, summary,
                   detail, started_at, changed_at, incident_id)
                 VALUES (1, 'k', 'r', 'dc1', 'web-01', 'firing', 'critical', 'software', 's', 'd',
                   now()::TIMESTAMP - INTERVAL 400 DAY, now()::TIMESTAMP - INTERVAL 400 DAY, 1),
                        (2, 'k', 'r', 'dc1', 'web-01', 'resolved', 'critical', 'software', 's', 'd',
                   now()::TIMESTAMP - INTERVAL 400 DAY, now()::TIMESTAMP - INTERVAL 399 DAY, 1);",
            )
            .expect("seed");
    }
    let running = super::tests::collector_with(
        dir.path(),
        "",
        "retain = \"90d\"\nretention_interval = \"1s\"",
    )
    .await;
    let port = running.http_addr.port();
    let mut archived = 0.0;
    for _ in 0..100 {
        let (_, text) = raw_get(port, "/metrics").await;
        archived = text
            .lines()
            .find_map(|l| l.strip_prefix("tocsin_retention_rows_archived_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if archived > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(archived, 3.0, "one incident and two alert transitions");
    let count = |sql: &'static str| async move {
        let a = request(
            port,
            "POST",
            "/api/v1/query",
            &[],
            json!({ "sql": sql }).to_string().as_bytes(),
        )
        .await;
        assert_eq!(a.status, 200, "{sql}: {}", a.body);
        a.body["rows"][0][0].as_i64().expect("count")
    };
    assert_eq!(count("SELECT count(*) FROM incidents").await, 1);
    assert_eq!(count("SELECT count(*) FROM incidents_all").await, 2);
    assert_eq!(count("SELECT count(*) FROM alerts_all").await, 2);
    assert_eq!(
        count("SELECT sum(incidents)::BIGINT FROM v_incidents_daily").await,
        2
    );
    let month_dirs: Vec<String> = std::fs::read_dir(dir.path().join("archive/incidents"))
        .expect("archive")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|m| m != "month=0000-00")
        .collect();
    assert_eq!(month_dirs.len(), 1, "{month_dirs:?}");
    running.stop().await;
}
