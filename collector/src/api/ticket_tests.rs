//! The ticket API over real HTTP against a collector started in-process: body checks, unknown
//! tickets, the whole operator lifecycle through the engine, and the real `tocsin` binary.

use std::path::PathBuf;

use serde_json::{Value as Json, json};

use super::tests::{Answer, collector, request};

const JSON_CT: &str = "Content-Type: application/json";
const ALICE: &str = "X-Tocsin-Actor: alice";

async fn post(port: u16, path: &str, body: &Json) -> Answer {
    request(
        port,
        "POST",
        path,
        &[JSON_CT, ALICE],
        body.to_string().as_bytes(),
    )
    .await
}

async fn get(port: u16, path: &str) -> Answer {
    request(port, "GET", path, &[], b"").await
}

fn error_of(a: &Answer) -> &str {
    a.body["error"].as_str().unwrap_or_default()
}

/// Every event of a ticket as one text (kind, actor, message, data), for searching.
fn log_text(ticket: &Json) -> String {
    ticket["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .map(|e| {
                    format!(
                        "{} {} {} {}",
                        e["kind"], e["actor"], e["message"], e["data"]
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_requests_are_checked_before_the_engine() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = collector(dir.path(), "").await;
    let port = running.http_addr.port();

    // Unknown field: 400 naming it, one line.
    let a = post(
        port,
        "/api/v1/tickets/INC-000001/resolve",
        &json!({"notes": "n", "cause_code": "c", "because": "x"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a).contains("unknown field \"because\""),
        "{}",
        a.body
    );
    assert!(!error_of(&a).contains('\n'));
    // Missing resolution notes.
    let a = post(
        port,
        "/api/v1/tickets/INC-000001/resolve",
        &json!({"cause_code": "c"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a), "notes is required");
    let a = request(port, "POST", "/api/v1/tickets/INC-000001/comment", &[], b"").await;
    assert_eq!(a.status, 400);
    assert!(error_of(&a).contains("with text"), "{}", a.body);
    // A valid action on a ticket that does not exist.
    let a = post(port, "/api/v1/tickets/INC-000099/ack", &json!({})).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(error_of(&a), "ticket INC-000099 does not exist");
    let a = request(port, "POST", "/api/v1/tickets/42/close", &[], b"").await;
    assert_eq!(a.status, 404, "{}", a.body);
    // Unknown actions and wrong methods.
    let a = post(port, "/api/v1/tickets/INC-000001/solve", &json!({})).await;
    assert_eq!(a.status, 404);
    assert!(error_of(&a).contains("ack, assign, comment"), "{}", a.body);
    let a = get(port, "/api/v1/tickets/INC-000001/ack").await;
    assert_eq!(a.status, 405);
    assert!(a.headers.contains("allow: post"), "{}", a.headers);
    let a = request(port, "PUT", "/api/v1/notifications", &[], b"").await;
    assert_eq!(a.status, 405);
    // Manual tickets.
    let a = post(
        port,
        "/api/v1/tickets",
        &json!({"summary": "s", "reporter": {"name": "Ann", "phone": "1"}}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        error_of(&a).contains("unknown field \"reporter.phone\""),
        "{}",
        a.body
    );
    let a = post(
        port,
        "/api/v1/tickets",
        &json!({"summary": "s", "reporter": "Ann", "priority": "P1"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        error_of(&a).contains("unknown field \"priority\""),
        "{}",
        a.body
    );
    // List filters.
    for (path, status) in [
        (
            "/api/v1/tickets?kind=request&group=network&assignee=bob",
            200,
        ),
        ("/api/v1/tickets?state=pending", 200),
        ("/api/v1/tickets?kind=change", 400),
        ("/api/v1/tickets?group=", 400),
        ("/api/v1/tickets?limit=0", 400),
        ("/api/v1/notifications", 200),
        ("/api/v1/notifications?state=failed&ticket=INC-000001", 200),
        ("/api/v1/notifications?state=sent", 400),
    ] {
        let a = get(port, path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        if status == 200 {
            assert_eq!(a.body, json!([]), "{path}");
        }
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_lifecycle_through_the_engine() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = collector(dir.path(), "").await;
    let port = running.http_addr.port();

    // A service request opened by a person.
    let a = post(
        port,
        "/api/v1/tickets",
        &json!({"kind": "request", "summary": "VPN account for a new colleague",
                "reporter": {"name": "Ann", "department": "Sales", "contact": "ann@example.com"},
                "category": "configuration", "services": ["vpn"], "description": "starts Monday"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let number = a.body["number"].as_str().expect("number").to_string();
    assert!(number.starts_with("REQ-"), "{number}");
    assert!(
        a.headers.contains(&format!(
            "location: /api/v1/tickets/{}",
            number.to_ascii_lowercase()
        )),
        "{}",
        a.headers
    );
    assert_eq!(a.body["state"], "new");
    assert_eq!(a.body["kind"], "request");
    assert_eq!(a.body["reporter"]["name"], "Ann");
    assert!(
        a.body["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{}",
        a.body
    );
    let base = format!("/api/v1/tickets/{number}");

    let a = post(port, &format!("{base}/ack"), &json!({"note": "on it"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "acknowledged");
    assert!(a.body["acknowledged_at"].is_string(), "{}", a.body);

    // A transfer to another group needs a reason, and the log keeps it.
    let a = post(
        port,
        &format!("{base}/assign"),
        &json!({"group": "network"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = post(
        port,
        &format!("{base}/assign"),
        &json!({"assignee": "bob", "group": "network", "reason": "the VPN gateway is theirs"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["assignment_group"], "network");
    assert_eq!(a.body["assignee"], "bob");
    let log = log_text(&a.body);
    assert!(log.contains("the VPN gateway is theirs"), "{log}");
    assert!(log.contains("alice via open loopback"), "{log}");

    let a = post(
        port,
        &format!("{base}/comment"),
        &json!({"text": "created the account"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(log_text(&a.body).contains("created the account"));
    let a = post(
        port,
        &format!("{base}/pending"),
        &json!({"reason": "waiting for the user's certificate"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "pending");
    let a = get(port, "/api/v1/tickets?state=pending").await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1), "{}", a.body);
    let a = post(port, &format!("{base}/resume"), &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "in_progress");
    let a = post(
        port,
        &format!("{base}/resolve"),
        &json!({"notes": "account works", "cause_code": "request-fulfilled"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "resolved");
    assert_eq!(a.body["resolution"], "account works");
    assert_eq!(a.body["cause_code"], "request-fulfilled");
    let a = post(
        port,
        &format!("{base}/close"),
        &json!({"note": "user confirmed"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "closed");

    // A closed ticket: only reopen.
    let a = post(port, &format!("{base}/comment"), &json!({"text": "x"})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let a = post(
        port,
        &format!("{base}/reopen"),
        &json!({"reason": "the account is locked again"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(a.body["state"], "closed");
    assert_eq!(a.body["reopened"], 1);

    // A fault report: closing it while it is worked on is a conflict that says what is allowed.
    let a = post(
        port,
        "/api/v1/tickets",
        &json!({"summary": "printer on floor 2 jams", "reporter": "Bob", "started_at": "2025-11-29T10:00:00Z"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let inc = a.body["number"].as_str().expect("number").to_string();
    assert!(inc.starts_with("INC-"), "{inc}");
    let id = a.body["id"].as_i64().expect("id");
    // By numeric id too.
    let a = post(port, &format!("/api/v1/tickets/{id}/ack"), &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(
        port,
        &format!("/api/v1/tickets/{inc}/comment"),
        &json!({"text": "paper tray is bent"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "in_progress");
    let a = post(port, &format!("/api/v1/tickets/{inc}/close"), &json!({})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let msg = error_of(&a);
    assert!(
        msg.contains("in_progress") && msg.contains("allowed"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));

    // Filters on the list.
    let a = get(port, "/api/v1/tickets?kind=request").await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1), "{}", a.body);
    assert_eq!(a.body[0]["number"], number.as_str());
    let a = get(port, "/api/v1/tickets?assignee=bob&group=network").await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1), "{}", a.body);
    let a = get(port, "/api/v1/tickets?kind=incident").await;
    assert_eq!(a.body[0]["number"], inc.as_str(), "{}", a.body);
    assert!(
        a.body[0]["affected"].is_object() || a.body[0]["affected"].is_null(),
        "{}",
        a.body
    );
    let a = get(port, &format!("/api/v1/notifications?ticket={number}")).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_array());
    running.stop().await;
}

/// The `tocsin` binary next to this test executable (built by `cargo test --workspace`).
fn tocsin_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/tocsin_collector-xxxx -> target/debug/tocsin
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .join("tocsin");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (it builds the binaries)",
        path.display()
    );
    path
}

async fn tocsin(api: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tocsin_bin())
        .arg("--api")
        .arg(api)
        .args(args)
        .env("TOCSIN_ACTOR", "carol")
        .env_remove("TOCSIN_TOKEN")
        .env_remove("TOCSIN_TOKEN_FILE")
        .output()
        .await
        .expect("run tocsin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_opens_and_works_tickets() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = collector(dir.path(), "").await;
    let api = format!("http://{}", running.http_addr);
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let out = tocsin(
        &api,
        &[
            "--json",
            "ticket",
            "new",
            "--summary",
            "Mail client keeps asking for the password",
            "--reporter",
            "Dan",
            "--department",
            "Finance",
            "--service",
            "mail",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let t: Json = serde_json::from_slice(&out.stdout).expect("json");
    let number = t["number"].as_str().expect("number").to_string();
    assert!(number.starts_with("INC-"), "{t}");

    let out = tocsin(&api, &["ticket", "ack", &number, "--note", "calling Dan"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.starts_with(&number) && shown.contains("acknowledged"),
        "{shown}"
    );
    assert!(shown.contains("carol via open loopback"), "{shown}");
    let out = tocsin(
        &api,
        &["ticket", "comment", &number, "password", "was", "expired"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));

    // The old form still shows it.
    let out = tocsin(&api, &["ticket", &number]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("password was expired"));

    // Closing while in progress: exit code 6 and the server's one-line reason.
    let out = tocsin(&api, &["ticket", "close", &number]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("HTTP 409"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Unknown ticket: 4; a bad command line: 2.
    let out = tocsin(&api, &["ticket", "ack", "INC-999999"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = tocsin(&api, &["ticket", "assign", &number]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = tocsin(&api, &["tickets", "--kind", "incident"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&number));
    let out = tocsin(&api, &["notifications", "--state", "pending"]).await;
    assert!(out.status.success(), "{}", text(&out));
    running.stop().await;
}
