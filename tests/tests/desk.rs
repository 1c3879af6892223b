//! The service desk end to end with real binaries: a check fails, the ticket opens with the
//! node's inventory, nobody acknowledges, the escalation webhook (a receiver started here) gets
//! the handover, an operator acknowledges through the CLI, the check recovers, and the ticket
//! ends closed after verification.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tocsin_tests::write_file as write;
use tocsin_tests::{
    Broker, Collector, CollectorOptions, Proc, bin, free_port, start_collector, wait_for,
};

const WAIT: Duration = Duration::from_secs(40);

const RULES: &str = r#"
[[rule]]
name = "check_critical"
check = "*"
severity = "critical"
category = "software"
summary = "{{node}}: check {{check}} is {{status}}: {{output}}"
runbook = "kb/check-failed.md"
"#;

/// Short targets: acknowledge within 3s; level 1 (on duty) hears it through the webhook.
fn policy(hook_port: u16) -> String {
    format!(
        r#"
[incident]
verify_for = "3s"
[sla.P2]
response = "3s"
resolution = "1h"
[[escalation]]
name = "on-duty"
after = "0s"
notify = ["webhook:oncall"]
[[escalation]]
name = "senior"
after = "1h"
notify = ["webhook:oncall"]
[notify.webhook.oncall]
url = "http://127.0.0.1:{hook_port}/hook"
timeout = "5s"
"#
    )
}

/// One request the receiver got: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1 that records every POST and answers 200.
fn receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                    if k == "content-length" {
                        length = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            sink.lock().expect("lock").push(Received { headers, body });
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, got)
}

#[test]
fn failing_check_escalates_unacknowledged_then_ack_by_cli_recovery_and_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_mosquitto, broker) = Broker::mosquitto_or_embedded(dir.path());
    let mqtt_port = broker.port();
    let (hook_port, hooks) = receiver();
    let policy = policy(hook_port);
    let options = CollectorOptions {
        policy: &policy,
        ..CollectorOptions::new("collector-desk", RULES)
    };
    let Collector {
        proc: mut collector,
        api,
        ..
    } = start_collector(dir.path(), broker, &options, WAIT);

    // An agent whose check points at a port nothing listens on: critical. Medium impact x
    // high urgency: P2, which does not page at once.
    let check_port = free_port();
    let agent_config = dir.path().join("agent.toml");
    write(
        &agent_config,
        &format!(
            "site = \"dc1\"\nnode = \"web-01\"\ninterval = \"1s\"\nlabels = {{ criticality = \"medium\", service = \"shop\" }}\n\
             [broker]\nurl = \"mqtt://127.0.0.1:{mqtt_port}\"\n[spool]\ndir = \"{}\"\n\
             [[check]]\nname = \"db\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{check_port}\"\ntimeout = \"1s\"\n",
            dir.path().join("spool").display()
        ),
    );
    let mut acmd = Command::new(bin("tocsin-agent"));
    acmd.arg("run")
        .arg("--config")
        .arg(&agent_config)
        .env("RUST_LOG", "info");
    let mut agent = Proc::spawn("agent", acmd, dir.path());

    let ticket = wait_for("a ticket for the failing check", WAIT, || {
        api.list("/api/v1/tickets").into_iter().next()
    });
    let number = ticket["number"].as_str().unwrap_or_default().to_string();
    assert_eq!(number, "INC-000001");
    assert_eq!(ticket["priority"], "P2");
    let detail = api.get(&format!("/api/v1/tickets/{number}"));
    // Intake: who, when, what, where, how bad.
    assert_eq!(detail["reporter"]["node"], "web-01");
    assert!(detail["reporter"]["agent_version"].is_string(), "{detail}");
    assert!(
        detail["environment"]["inventory"]["hostname"].is_string(),
        "inventory in the ticket: {detail}"
    );
    assert!(detail["environment"]["inventory"]["os"].is_string());
    assert!(detail["detected_at"].is_string() || detail["detected_at"].is_number());
    assert!(
        detail["description"]
            .as_str()
            .unwrap_or_default()
            .contains("tcp:db"),
        "{detail}"
    );

    // Nobody acknowledges: after 3s the response target is missed and level 1 is called.
    let hook = wait_for("the escalation webhook", WAIT, || {
        hooks.lock().expect("lock").first().cloned()
    });
    assert_eq!(hook.body["event"], "ticket.escalated");
    assert_eq!(hook.body["escalation"]["level"], 1);
    assert_eq!(hook.body["escalation"]["triggers"][0], "response_breached");
    let handover = &hook.body["handover"];
    assert_eq!(handover["record"]["number"], number.as_str());
    assert!(
        handover["record"]["environment"]["inventory"]["hostname"].is_string(),
        "the handover carries the inventory: {handover}"
    );
    assert_eq!(handover["record"]["affected"]["services"][0], "shop");
    assert!(handover["sla"]["response_breached_at"].is_string());
    assert!(
        handover["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|e| e["kind"] == "opened")),
        "{handover}"
    );
    let key = hook
        .header("idempotency-key")
        .unwrap_or_default()
        .to_string();
    assert!(key.starts_with(&format!("{number}:")), "{key}");
    let outbox = api.list(&format!("/api/v1/notifications?ticket={number}"));
    let delivered = wait_for("the notification marked delivered", WAIT, || {
        api.list("/api/v1/notifications?state=delivered")
            .into_iter()
            .next()
    });
    assert_eq!(delivered["target"], "oncall");
    assert!(!outbox.is_empty());

    // An operator acknowledges through the CLI.
    let out = Command::new(bin("tocsin"))
        .arg("--api")
        .arg(&api.base)
        .args(["ticket", "ack", &number, "--note", "looking at it"])
        .env_remove("TOCSIN_TOKEN")
        .env_remove("TOCSIN_TOKEN_FILE")
        .output()
        .expect("run tocsin");
    assert!(
        out.status.success(),
        "tocsin ticket ack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked = api.get(&format!("/api/v1/tickets/{number}"));
    assert_eq!(acked["state"], "acknowledged");
    assert!(acked["assignee"].is_string());

    // The check recovers: the ticket resolves, then closes after the verification period.
    let listener = TcpListener::bind(("127.0.0.1", check_port)).expect("bind check port");
    let closed = wait_for("the ticket closed after verification", WAIT, || {
        let t = api.get(&format!("/api/v1/tickets/{number}"));
        (t["state"] == "closed").then_some(t)
    });
    drop(listener);
    assert_eq!(closed["resolution"], "recovered automatically");
    let kinds: Vec<&str> = closed["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    let order = [
        "opened",
        "sla_breached",
        "escalated",
        "acknowledged",
        "resolved",
        "closed",
    ];
    let mut at = 0;
    for want in order {
        let Some(pos) = kinds[at..].iter().position(|k| *k == want) else {
            panic!("{want} missing after position {at} in {kinds:?}");
        };
        at += pos + 1;
    }
    // Exactly one webhook call: no duplicate sends.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hooks.lock().expect("lock").len(), 1);
    agent.terminate();
    collector.terminate();
}
