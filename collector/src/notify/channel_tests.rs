//! Delivery tests of the e-mail and MQTT channels: the dispatcher over a real DuckDB file,
//! against an SMTP sink and a private Mosquitto on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::tests::{Harness, Setup, config, handover_payload, policy, row};
use crate::config::{SmtpConfig, SmtpTls};

/// What the SMTP sink received.
#[derive(Debug, Default, Clone)]
struct Mail {
    rcpt: Vec<String>,
    data: String,
}

/// A minimal SMTP server: enough of the protocol for one client to hand over messages.
async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let out = mails.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mails = out.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                let mut mail = Mail::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "MAIL" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "RCPT" => {
                            mail.rcpt
                                .push(line.get(8..).unwrap_or("").trim().to_string());
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                mail.data.push_str(&l);
                                mail.data.push('\n');
                            }
                            mails.lock().expect("mails").push(std::mem::take(&mut mail));
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, mails)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_reaches_the_relay_with_subject_and_handover() {
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, mails) = smtp_sink().await;
    let mut setup = Setup::new(
        policy(
            "[email.desk]\nto = [\"desk@example.com\", \"Boss <boss@example.com>\"]\nsubject_prefix = \"[tocsin]\"\n",
        ),
        config(8),
    );
    setup.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port: addr.port(),
        from: "tocsin <tocsin@example.org>".into(),
        username: None,
        password_file: None,
        tls: Some(SmtpTls::None),
        timeout: Duration::from_secs(5),
    });
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        setup,
        &[row(1, "email", "desk", handover_payload())],
    );
    h.wait_state(1, "delivered").await;
    let got = mails.lock().expect("mails").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].rcpt, ["<desk@example.com>", "<boss@example.com>"]);
    // Headers as one line each (long ones are folded).
    let data = got[0].data.replace("\n ", " ").replace("\n\t", " ");
    for want in [
        "Subject: [tocsin] ticket.escalated INC-000042 db-01: check tcp:pg is critical",
        "Message-ID: <INC-000042.1.email.desk@example.org>",
        "X-Tocsin-Idempotency-Key: INC-000042:1:email:desk",
        "From: tocsin <tocsin@example.org>",
        "== SLA ==",
        "Reason: 75% of the resolution time used",
        "- 2026-11-29T16:45:00.000Z comment by alice: restarted pg, no change",
        "opened by monitoring",
    ] {
        assert!(data.contains(want), "missing {want:?} in\n{data}");
    }
    assert_eq!(h.stats.delivered.get("email"), 1);
    h.stop().await;
}

/// A private Mosquitto on a free port, killed on drop; None (with a message) when not installed.
struct Mosquitto {
    port: u16,
    child: std::process::Child,
}

impl Mosquitto {
    fn start(dir: &Path) -> Option<Mosquitto> {
        let Some(bin) = [
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto",
            "/usr/local/sbin/mosquitto",
        ]
        .iter()
        .map(Path::new)
        .find(|p| p.exists()) else {
            assert!(
                std::env::var("TOCSIN_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
                "mosquitto is not installed but TOCSIN_REQUIRE_MOSQUITTO=1"
            );
            eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("conf");
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let m = Mosquitto { port, child };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(m)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Subscribe to `filter`; every publish received goes to the returned queue.
async fn subscribe(port: u16, id: &str, filter: &str) -> mpsc::Receiver<rumqttc::Publish> {
    let opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
    let (tx, rx) = mpsc::channel(16);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    client
        .subscribe(filter, rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(ev) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = ev
                && let Some(s) = subscribed_tx.take()
            {
                let _ = s.send(());
            }
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev
                && tx.send(p).await.is_err()
            {
                break;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("suback in time")
        .expect("suback");
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_events_are_published_under_the_events_topic() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let mut sub = subscribe(broker.port, "notify-test-sub", "tocsin/v1/events/#").await;
    let mut setup = Setup::new(
        policy("[mqtt.bus]\n[mqtt.archive]\ntopic = \"archive\"\nqos = 2\nretain = true\n"),
        config(8),
    );
    setup.mqtt = Some(rumqttc::MqttOptions::new(
        "tocsin-test-notify",
        "127.0.0.1",
        broker.port,
    ));
    let payload = handover_payload();
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        setup,
        &[
            row(1, "mqtt", "bus", payload.clone()),
            row(2, "mqtt", "archive", json!({"n": 2})),
        ],
    );
    h.wait_state(1, "delivered").await;
    h.wait_state(2, "delivered").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("a publish in time")
            .expect("publish");
        got.push((
            p.topic.clone(),
            serde_json::from_slice::<Json>(&p.payload).expect("json"),
        ));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got[0].0, "tocsin/v1/events/archive/ticket.escalated");
    assert_eq!(got[0].1, json!({"n": 2}));
    assert_eq!(got[1].0, "tocsin/v1/events/tickets/ticket.escalated");
    assert_eq!(got[1].1, payload);
    // retain = true: a later subscriber gets the archive event too, flagged retained.
    let mut late = subscribe(
        broker.port,
        "notify-test-late",
        "tocsin/v1/events/archive/#",
    )
    .await;
    let p = tokio::time::timeout(Duration::from_secs(10), late.recv())
        .await
        .expect("retained in time")
        .expect("retained");
    assert!(p.retain);
    assert_eq!(h.stats.delivered.get("mqtt"), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_without_a_broker_is_retried_not_lost() {
    let dir = tempfile::tempdir().expect("tmp");
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut setup = Setup::new(policy("[mqtt.bus]\n"), config(2));
    setup.mqtt = Some(rumqttc::MqttOptions::new(
        "tocsin-test-none",
        "127.0.0.1",
        port,
    ));
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        setup,
        &[row(1, "mqtt", "bus", json!({"n": 1}))],
    );
    let r = h.wait_state(1, "failed").await;
    assert_eq!(r["attempts"], 2);
    let err = r["last_error"].as_str().expect("error");
    assert!(err.contains(&format!("mqtt 127.0.0.1:{port}")), "{err}");
    assert_eq!(h.stats.retried.get("mqtt"), 1);
    h.stop().await;
}
