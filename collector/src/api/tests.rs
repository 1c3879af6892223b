//! The API over real HTTP against a collector started in-process (store in a temp folder, no
//! broker: the write path goes API -> control queue -> engine -> writer -> answer).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::ApiClient;
use crate::config::CollectorConfig;

const RULES: &str = r#"
[[rule]]
name = "check_critical"
check = "*"
severity = "critical"
category = "software"
summary = "{{node}}: {{check}} is {{status}}"
"#;

pub(super) struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Json,
}

/// One raw HTTP/1.1 request; the answer's status, head and JSON body.
pub(super) async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    // A server may answer (413) before reading a large body; ignore a reset while sending it.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Json::Null),
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

pub(super) async fn collector(dir: &Path, http_extra: &str) -> crate::Running {
    collector_with(dir, http_extra, "").await
}

/// [`collector`] with extra `[store]` keys.
pub(super) async fn collector_with(
    dir: &Path,
    http_extra: &str,
    store_extra: &str,
) -> crate::Running {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("test.toml"), RULES).expect("rules");
    std::fs::write(
        rules.join("policy.toml"),
        "[incident]\nverify_for = \"60s\"\n",
    )
    .expect("policy");
    let text = format!(
        "[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n\
         [store]\npath = \"{}\"\n{store_extra}\n[rules]\ndir = \"{}\"\n",
        closed_port(),
        dir.join("t.duckdb").display(),
        rules.display()
    );
    let config =
        CollectorConfig::from_toml_str(Path::new("collector.toml"), &text).expect("config");
    crate::start(config).await.expect("collector starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_reads_and_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("op.token"), "op-secret\n").expect("token");
    std::fs::write(dir.path().join("view.token"), "view-secret\n").expect("token");
    let running = collector(
        dir.path(),
        &format!(
            "operator_token_file = \"{}\"\nviewer_token_file = \"{}\"",
            dir.path().join("op.token").display(),
            dir.path().join("view.token").display()
        ),
    )
    .await;
    let port = running.http_addr.port();
    let op = "Authorization: Bearer op-secret";
    let view = "Authorization: Bearer view-secret";

    // Health stays open; reads need a token; writes need the operator's.
    assert_eq!(request(port, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(request(port, "GET", "/metrics", &[], b"").await.status, 200);
    let a = request(port, "GET", "/api/v1/problems", &[], b"").await;
    assert_eq!(a.status, 401);
    assert!(
        a.headers.contains("www-authenticate: bearer"),
        "{}",
        a.headers
    );
    assert!(
        a.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("token"))
    );
    assert_eq!(
        request(port, "GET", "/api/v1/problems", &[view], b"")
            .await
            .status,
        200
    );
    assert_eq!(
        request(port, "GET", "/api/v1/problems", &[op], b"")
            .await
            .status,
        200
    );
    let a = request(port, "POST", "/api/v1/rules/reload", &[], b"").await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = request(
        port,
        "POST",
        "/api/v1/rules/reload",
        &["Authorization: Bearer wrong"],
        b"",
    )
    .await;
    assert_eq!(a.status, 401);
    let a = request(port, "POST", "/api/v1/rules/reload", &[view], b"").await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = request(port, "POST", "/api/v1/rules/reload", &[op], b"").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["rules"], 1);
    assert_eq!(a.body["files"], 1);

    // The CLI's client sends the token.
    let client = ApiClient::new(&format!("http://{}", running.http_addr));
    let err = client.get("/api/v1/problems").await.expect_err("no token");
    assert_eq!(err.exit_code(), 5);
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    let client = client.with_token(Some("op-secret".into()));
    assert_eq!(
        client.get("/api/v1/problems").await.expect("list"),
        json!([])
    );
    let r = client
        .post("/api/v1/rules/reload", None)
        .await
        .expect("reload");
    assert_eq!(r["rules"], 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_fitting_status_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = collector(dir.path(), "").await;
    let port = running.http_addr.port();
    let json_ct = "Content-Type: application/json";

    let a = request(port, "DELETE", "/api/v1/maintenance", &[], b"").await;
    assert_eq!(a.status, 405);
    assert!(a.headers.contains("allow: get, post"), "{}", a.headers);
    assert_eq!(
        request(port, "GET", "/api/v1/rules/reload", &[], b"")
            .await
            .status,
        405
    );
    let a = request(port, "DELETE", "/api/v1/tickets", &[], b"").await;
    assert_eq!(a.status, 405);
    assert!(a.headers.contains("allow: get, post"), "{}", a.headers);
    let a = request(port, "POST", "/api/v1/tickets", &[], b"{}").await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], "summary is required");
    assert_eq!(
        request(port, "GET", "/api/v1/nothing", &[], b"")
            .await
            .status,
        404
    );
    let a = request(port, "GET", "/api/v1/problems/PRB-000042", &[], b"").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["error"], "problem PRB-000042 does not exist");
    assert_eq!(
        request(port, "GET", "/api/v1/problems?state=bad", &[], b"")
            .await
            .status,
        400
    );
    assert_eq!(
        request(port, "GET", "/api/v1/maintenance?active=maybe", &[], b"")
            .await
            .status,
        400
    );
    let a = request(
        port,
        "POST",
        "/api/v1/problems/PRB-000042",
        &[json_ct],
        br#"{"state":"resolved"}"#,
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);

    let big = vec![b' '; 70 * 1024];
    let a = request(port, "POST", "/api/v1/maintenance", &[json_ct], &big).await;
    assert_eq!(a.status, 413);
    let a = request(port, "POST", "/api/v1/maintenance", &[json_ct], b"{nope").await;
    assert_eq!(a.status, 400);
    assert!(
        a.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid JSON")),
        "{}",
        a.body
    );
    let a = request(
        port,
        "POST",
        "/api/v1/maintenance",
        &[json_ct],
        br#"{"name":"n","match":{"node":"*"},"duration":"2h"}"#,
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"], "reason is required");
    let a = request(
        port,
        "POST",
        "/api/v1/maintenance",
        &[json_ct],
        br#"{"name":"n","match":{"hostname":"*"},"duration":"2h","reason":"r"}"#,
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"hostname\""))
    );
    assert_eq!(
        request(port, "POST", "/api/v1/maintenance/x/end", &[], b"")
            .await
            .status,
        400
    );

    // A broken rule file: 422 with each error; the old rules stay.
    std::fs::write(
        dir.path().join("rules/broken.toml"),
        "[[rule]]\nname = \"broken\"\nexpr = \"cpu.usage_pct >\"\nseverity = \"warning\"\ncategory = \"hardware\"\nsummary = \"x\"\n",
    )
    .expect("broken rule");
    let a = request(port, "POST", "/api/v1/rules/reload", &[], b"").await;
    assert_eq!(a.status, 422, "{}", a.body);
    let errors = a.body["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("broken.toml:"))),
        "{errors:?}"
    );
    assert!(
        a.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("old rules stay"))
    );
    let metrics = running.metrics.render();
    assert!(
        metrics.contains("tocsin_rules_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tocsin_rules_loaded 1"), "{metrics}");
    // The CLI shows the error lines.
    let client = ApiClient::new(&format!("http://{}", running.http_addr));
    let err = client
        .post("/api/v1/rules/reload", None)
        .await
        .expect_err("422");
    assert!(
        err.to_string().contains("\n  ") && err.to_string().contains("broken.toml:"),
        "{err}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_through_the_engine() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = collector(dir.path(), "").await;
    let client =
        ApiClient::new(&format!("http://{}", running.http_addr)).with_actor(Some("alice".into()));
    let w = client
        .post(
            "/api/v1/maintenance",
            Some(&json!({"name": "patch", "match": {"node": "web-*"}, "duration": "2h", "reason": "kernel"})),
        )
        .await
        .expect("created");
    let id = w["id"].as_i64().expect("id");
    assert!(id >= 1, "{w}");
    assert_eq!(w["name"], "patch");
    assert_eq!(w["match"]["node"], "web-*");
    assert_eq!(w["created_by"], "alice via open loopback");
    assert_eq!(w["in_effect"], true);
    // Committed before the answer: the list shows it right away.
    let list = client
        .get("/api/v1/maintenance?active=true")
        .await
        .expect("list");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let ended = client
        .post(&format!("/api/v1/maintenance/{id}/end"), None)
        .await
        .expect("ended");
    assert!(ended["cancelled_at"].is_string(), "{ended}");
    assert_eq!(ended["in_effect"], false);
    let list = client
        .get("/api/v1/maintenance?active=true")
        .await
        .expect("list");
    assert_eq!(list, json!([]));
    assert_eq!(
        client
            .get("/api/v1/maintenance")
            .await
            .expect("all")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let err = client
        .post("/api/v1/maintenance/999/end", None)
        .await
        .expect_err("unknown window");
    assert_eq!(err.exit_code(), 4, "{err}");
    assert!(running.metrics.render().contains("tocsin_commands_total 3"));
    running.stop().await;
}

/// `GET /api/v1/nodes`: the engine's state, sequence and times over the stored row's (the
/// store writes a row only with a stored report or a state change); other nodes and other
/// columns as stored.
#[test]
fn live_node_values_show_over_the_stored_ones() {
    let row = |node: &str, seq: u64| -> serde_json::Map<String, Json> {
        match json!({
            "site": "dc1", "node": node, "kind": "host", "state": "online", "last_seq": seq,
            "last_ts": "1970-01-01T00:00:01.000Z", "last_report_at": "1970-01-01T00:00:01.000Z",
            "state_changed_at": "1970-01-01T00:00:00.500Z", "updated_at": "1970-01-01T00:00:01.000Z",
        }) {
            Json::Object(m) => m,
            _ => unreachable!("an object"),
        }
    };
    let live = [super::LiveNode {
        site: "dc1".into(),
        node: "web-01".into(),
        state: crate::engine::model::Presence::Offline,
        state_changed_at: 9_000,
        last_seq: Some(7),
        last_ts: Some(8_000),
        last_report_at: Some(8_100),
        updated_at: 9_000,
    }];
    let out = super::with_live(vec![row("web-01", 1), row("db-01", 3)], &live);
    assert_eq!(out[0]["state"], "offline");
    assert_eq!(out[0]["last_seq"], 7);
    assert_eq!(out[0]["last_ts"], "1970-01-01T00:00:08.000Z");
    assert_eq!(out[0]["last_report_at"], "1970-01-01T00:00:08.100Z");
    assert_eq!(out[0]["state_changed_at"], "1970-01-01T00:00:09.000Z");
    assert_eq!(out[0]["updated_at"], "1970-01-01T00:00:09.000Z");
    assert_eq!(out[0]["kind"], "host", "other columns as stored");
    assert_eq!(
        out[1],
        Json::Object(row("db-01", 3)),
        "no live row: as stored"
    );
}
