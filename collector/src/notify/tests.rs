//! Delivery tests: backoff and classification, then the dispatcher against a real DuckDB file
//! and a real HTTP receiver on 127.0.0.1 (e-mail and MQTT: `channel_tests.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::*;
use crate::config::{NotifyConfig, SmtpConfig};
use crate::engine::Effect;
use crate::engine::model::NotificationRow;
use crate::store::{Store, StoreError, write_effects};

pub(super) fn config(max_attempts: u32) -> NotifyConfig {
    NotifyConfig {
        max_attempts,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        concurrency: 4,
    }
}

fn pending(attempts: i64) -> PendingNotification {
    PendingNotification {
        id: 7,
        key: "INC-000042:9:webhook:hook".into(),
        channel: Some("webhook".into()),
        target: "hook".into(),
        event: "ticket.escalated".into(),
        ticket_id: Some(42),
        payload: json!({}),
        attempts,
        created_at: 1_000,
    }
}

#[test]
fn backoff_doubles_from_the_initial_pause_up_to_the_cap() {
    let c = NotifyConfig::default();
    let got: Vec<u64> = (1..=10).map(|n| backoff(&c, n).as_secs()).collect();
    assert_eq!(got, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(backoff(&c, 0), Duration::from_secs(2));
    assert_eq!(
        backoff(&c, u32::MAX),
        Duration::from_secs(300),
        "no overflow"
    );
}

#[test]
fn an_attempt_is_marked_delivered_retried_or_failed() {
    let c = config(3);
    let ok = decide(&c, &pending(0), &Ok(()), 10_000);
    assert_eq!(ok.outcome, Outcome::Delivered { at: 10_000 });
    assert_eq!((ok.attempts, ok.last_error), (1, None));

    let retry = decide(
        &c,
        &pending(1),
        &Err(SendError::Retry("HTTP 500".into())),
        10_000,
    );
    assert_eq!(retry.attempts, 2);
    assert_eq!(
        retry.outcome,
        Outcome::Retry {
            next_attempt_at: 10_100
        },
        "second failure waits initial x 2"
    );
    assert_eq!(retry.last_error.as_deref(), Some("HTTP 500"));

    let last = decide(
        &c,
        &pending(2),
        &Err(SendError::Retry("HTTP 500".into())),
        10_000,
    );
    assert_eq!(last.outcome, Outcome::Failed { at: 10_000 });
    assert_eq!(
        last.last_error.as_deref(),
        Some("HTTP 500 (gave up after 3 attempts)")
    );

    let refused = decide(
        &c,
        &pending(0),
        &Err(SendError::Permanent("HTTP 404".into())),
        5,
    );
    assert_eq!(
        (refused.outcome, refused.attempts),
        (Outcome::Failed { at: 5 }, 1)
    );
}

#[test]
fn http_statuses_are_classified() {
    use webhook::{Verdict, classify};
    for (code, want) in [
        (200, Verdict::Delivered),
        (202, Verdict::Delivered),
        (204, Verdict::Delivered),
        (400, Verdict::Permanent),
        (401, Verdict::Permanent),
        (404, Verdict::Permanent),
        (410, Verdict::Permanent),
        (408, Verdict::Retry),
        (429, Verdict::Retry),
        (301, Verdict::Retry),
        (500, Verdict::Retry),
        (503, Verdict::Retry),
    ] {
        let status = StatusCode::from_u16(code).expect("status");
        assert_eq!(classify(status), want, "{code}");
    }
}

#[test]
fn mqtt_topics_and_message_ids() {
    assert_eq!(
        mqtt::event_topic("tocsin", "tickets", "ticket.escalated").expect("topic"),
        "tocsin/v1/events/tickets/ticket.escalated"
    );
    assert!(matches!(
        mqtt::event_topic("tocsin", "tickets", "a/b"),
        Err(SendError::Permanent(_))
    ));
    assert_eq!(
        email::message_id("INC-000042:9:email:desk", "example.com"),
        "<INC-000042.9.email.desk@example.com>"
    );
    assert_eq!(email::message_id("::", "x.org"), "<tocsin@x.org>");
}

#[test]
fn broker_acknowledgements_resolve_the_right_publish() {
    use rumqttc::QoS;
    use tokio::sync::oneshot::{self, error::TryRecvError};
    let mut acks = mqtt::Acks::default();
    let (a, mut ra) = oneshot::channel();
    let (b, mut rb) = oneshot::channel();
    let (c, mut rc) = oneshot::channel();
    let (d, mut rd) = oneshot::channel();
    acks.handed(QoS::AtLeastOnce, a);
    acks.handed(QoS::AtMostOnce, b);
    acks.handed(QoS::ExactlyOnce, c);
    acks.written(1);
    acks.written(0);
    assert_eq!(rb.try_recv(), Ok(Ok(())), "QoS 0: delivered once written");
    // Packet id 1 is still taken: the next publish waits for it.
    acks.await_ack(1);
    acks.acknowledged(1);
    assert_eq!(ra.try_recv(), Ok(Ok(())));
    assert_eq!(rc.try_recv(), Err(TryRecvError::Empty));
    acks.written(1);
    acks.acknowledged(1);
    assert_eq!(
        rc.try_recv(),
        Ok(Ok(())),
        "the collided publish, once acknowledged"
    );
    acks.handed(QoS::AtLeastOnce, d);
    acks.written(2);
    acks.fail_all("gone");
    assert_eq!(rd.try_recv(), Ok(Err("gone".to_string())));
    assert_eq!(acks.len(), 0);
}

/// An escalation's payload, shaped as the engine makes it.
pub(super) fn handover_payload() -> Json {
    let line = |at: &str, actor: &str, kind: &str, message: &str| json!({"at": at, "actor": actor, "kind": kind, "message": message});
    json!({
        "event": "ticket.escalated",
        "ticket": {"id": 42, "number": "INC-000042", "summary": "db-01: check tcp:pg is critical",
                   "priority": "P1", "state": "acknowledged", "assignment_group": "dba"},
        "escalation": {"level": 2, "name": "senior", "triggers": ["resolution_75"],
                       "reason": "75% of the resolution time used"},
        "handover": {
            "history": [
                line("2026-11-29T16:40:02.000Z", "monitoring", "opened", "opened by monitoring"),
                line("2026-11-29T16:45:00.000Z", "alice", "comment", "restarted pg, no change"),
            ],
            "record": {"assignment_group": "dba", "node": "db-01", "workaround": null,
                       "environment": {"os": "Debian 12", "cores": 4}},
            "state": "acknowledged",
            "escalation_level": 2,
            "sla": {"resolution_due_at": "2026-11-29T20:40:02.000Z", "resolution_used_pct": 75,
                    "resolution_breached_at": null, "clock": "running"},
            "diagnosis": [line("2026-11-29T16:45:00.000Z", "alice", "comment", "restarted pg, no change")],
            "actions": [line("2026-11-29T16:41:00.000Z", "bob", "acknowledged", "on it")],
        },
    })
}

#[test]
fn an_email_reads_like_a_handover() {
    let mut n = pending(0);
    n.event = "ticket.escalated".into();
    n.payload = handover_payload();
    assert_eq!(
        email::subject(Some("[tocsin]"), &n),
        "[tocsin] ticket.escalated INC-000042 db-01: check tcp:pg is critical"
    );
    let body = email::body(&n);
    let order = [
        "== Escalation ==",
        "== Handover ==",
        "== Record ==",
        "== SLA ==",
        "== Diagnosis ==",
        "== Actions ==",
        "== History ==",
        "The notification as JSON:",
    ]
    .map(|h| {
        body.find(h)
            .unwrap_or_else(|| panic!("no {h:?} in\n{body}"))
    });
    assert!(order.is_sorted(), "sections in reading order:\n{body}");
    for want in [
        "ticket.escalated - INC-000042 (P1)\ndb-01: check tcp:pg is critical\n",
        "Reason: 75% of the resolution time used",
        "== Handover ==\nEscalation level: 2\nState: acknowledged\n",
        "Assignment group: dba",
        "Environment:\n  Cores: 4\n  Os: Debian 12",
        "Resolution used pct: 75",
        "- 2026-11-29T16:45:00.000Z comment by alice: restarted pg, no change",
        "- 2026-11-29T16:41:00.000Z acknowledged by bob: on it",
        "Idempotency key: INC-000042:9:webhook:hook",
        "\"handover\": {",
    ] {
        assert!(body.contains(want), "missing {want:?} in\n{body}");
    }
    assert!(
        !body.contains("Workaround"),
        "null fields are left out:\n{body}"
    );
    // A payload without a ticket or handover still gives a subject and body.
    n.payload = json!("just text");
    assert_eq!(email::subject(None, &n), "ticket.escalated");
    assert!(email::body(&n).contains("(no ticket number)"));
    // A plain ticket event: the ticket and the log entry.
    n.payload = json!({"event": "ticket.acknowledged", "ticket": {"number": "INC-000007", "summary": "x"},
        "entry": {"at": "2026-11-29T16:41:00.000Z", "actor": "bob", "kind": "acknowledged", "message": "on it"}});
    let body = email::body(&n);
    assert!(
        body.contains("== Entry ==\n2026-11-29T16:41:00.000Z acknowledged by bob: on it\n"),
        "{body}"
    );
    assert!(
        body.contains("== Ticket ==\nNumber: INC-000007\n"),
        "{body}"
    );
}

// ---- the dispatcher against a real database ----

pub(super) fn row(id: i64, channel: &str, target: &str, payload: Json) -> NotificationRow {
    NotificationRow {
        id,
        key: format!("INC-000042:{id}:{channel}:{target}"),
        channel: channel.into(),
        target: target.into(),
        event: "ticket.escalated".into(),
        ticket_id: Some(42),
        payload,
        created_at: crate::time::now_millis() - 1_000,
    }
}

fn effects(rows: &[NotificationRow]) -> Vec<Effect> {
    rows.iter()
        .map(|r| Effect::Notification(Box::new(r.clone())))
        .collect()
}

pub(super) fn policy(text: &str) -> NotifyPolicy {
    toml::from_str(text).expect("notify policy")
}

fn webhook_policy(addr: SocketAddr) -> NotifyPolicy {
    policy(&format!(
        "[webhook.hook]\nurl = \"http://{addr}/hook\"\ntimeout = \"5s\"\nheaders = {{ Authorization = \"Bearer s3cret\" }}\n"
    ))
}

/// A dispatcher over a DuckDB file, with its writer thread.
pub(super) struct Harness {
    reader: Reader,
    write: mpsc::Sender<WriteMsg<()>>,
    pub(super) stats: Arc<NotifyStats>,
    targets: watch::Sender<Arc<NotifyPolicy>>,
    shutdown: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<Result<(), StoreError>>,
    _acks: mpsc::Receiver<()>,
}

pub(super) struct Setup {
    policy: NotifyPolicy,
    config: NotifyConfig,
    pub(super) smtp: Option<SmtpConfig>,
    pub(super) mqtt: Option<rumqttc::MqttOptions>,
    /// Marks reach the writer only once this says `true` (a writer slow to commit).
    hold_marks: Option<watch::Receiver<bool>>,
}

impl Setup {
    pub(super) fn new(policy: NotifyPolicy, config: NotifyConfig) -> Setup {
        Setup {
            policy,
            config,
            smtp: None,
            mqtt: None,
            hold_marks: None,
        }
    }
}

impl Harness {
    /// Open `path`, store `rows` pending (as the engine's writer would), start delivering.
    pub(super) fn start(path: &Path, setup: Setup, rows: &[NotificationRow]) -> Harness {
        let mut store = Store::open(path).expect("store");
        let tx = store.connection().transaction().expect("tx");
        write_effects(&tx, &effects(rows)).expect("write");
        tx.commit().expect("commit");
        let reader = store.reader().expect("reader");
        let outbox_reader = store.reader().expect("reader");
        let wake = Arc::new(Notify::new());
        let writer = store
            .into_writer(&crate::config::StoreConfig::default())
            .with_outbox_wake(wake.clone());
        let (write, write_rx) = mpsc::channel(64);
        let (ack_tx, acks) = mpsc::channel(64);
        let writer = std::thread::spawn(move || {
            writer.run(
                write_rx,
                ack_tx,
                Arc::new(crate::store::WriterStats::default()),
            )
        });
        let marks = match setup.hold_marks {
            None => write.clone(),
            Some(mut open) => {
                let (held, mut held_rx) = mpsc::channel::<WriteMsg<()>>(64);
                let write = write.clone();
                tokio::spawn(async move {
                    while let Some(m) = held_rx.recv().await {
                        if open.wait_for(|o| *o).await.is_err() || write.send(m).await.is_err() {
                            break;
                        }
                    }
                });
                held
            }
        };
        let stats = Arc::new(NotifyStats::default());
        let (targets, targets_rx) = watch::channel(Arc::new(setup.policy));
        let (shutdown, shutdown_rx) = broadcast::channel(1);
        let dispatcher = Dispatcher::new(NotifyDeps {
            config: setup.config,
            smtp: setup.smtp,
            targets: targets_rx,
            topic_root: "tocsin".into(),
            mqtt: setup.mqtt,
            reader: outbox_reader,
            write: marks,
            wake,
            stats: stats.clone(),
        })
        .expect("dispatcher");
        let task = tokio::spawn(dispatcher.run(shutdown_rx));
        Harness {
            reader,
            write,
            stats,
            targets,
            shutdown,
            task,
            writer,
            _acks: acks,
        }
    }

    /// More rows, through the writer (which wakes the dispatcher); returns once committed.
    async fn insert(&self, rows: &[NotificationRow]) {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.write
            .send(WriteMsg {
                committed: Some(done),
                ..WriteMsg::effects(effects(rows))
            })
            .await
            .expect("writer");
        committed.await.expect("committed");
    }

    fn row(&self, id: i64) -> serde_json::Map<String, Json> {
        self.reader
            .notification_row(id)
            .expect("read")
            .expect("row exists")
    }

    /// Wait until row `id` is in `state`; the row then.
    pub(super) async fn wait_state(&self, id: i64, state: &str) -> serde_json::Map<String, Json> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.row(id);
            if r["state"] == state {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "row {id} never became {state}: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("dispatcher stops within its grace period")
            .expect("dispatcher task");
        drop(self.write);
        tokio::task::spawn_blocking(move || self.writer.join())
            .await
            .expect("join")
            .expect("writer thread")
            .expect("writer ends cleanly");
    }
}

/// One request the test receiver got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    key: Option<String>,
    event: Option<String>,
    auth: Option<String>,
    content_type: Option<String>,
    body: Json,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An HTTP receiver answering the statuses in `script` in turn, then 200; each after `delay`.
async fn receiver(script: &[u16], delay: Duration) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log: Log = Arc::default();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, script) = (seen.clone(), script.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, script) = (seen.clone(), script.clone());
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let mut s = Seen {
                            path: req.uri().path().to_string(),
                            key: header("idempotency-key"),
                            event: header("x-tocsin-event"),
                            auth: header("authorization"),
                            content_type: header("content-type"),
                            body: Json::Null,
                        };
                        let bytes = req.into_body().collect().await?.to_bytes();
                        s.body = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
                        seen.lock().expect("log").push(s);
                        tokio::time::sleep(delay).await;
                        let status = script.lock().expect("script").pop_front().unwrap_or(200);
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"not here")));
                        *resp.status_mut() = StatusCode::from_u16(status).expect("status");
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().expect("log").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_posted_once_with_its_key_and_marked_delivered() {
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, log) = receiver(&[], Duration::ZERO).await;
    let payload = json!({"ticket": {"number": "INC-000042"}, "event": "ticket.escalated"});
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        Setup::new(webhook_policy(addr), config(8)),
        &[row(1, "webhook", "hook", payload.clone())],
    );
    let r = h.wait_state(1, "delivered").await;
    assert_eq!(r["attempts"], 1);
    assert!(r["sent_at"].is_string(), "{r:?}");
    // A row committed while running wakes the dispatcher.
    h.insert(&[row(2, "webhook", "hook", json!({"n": 2}))])
        .await;
    h.wait_state(2, "delivered").await;
    // Two polls later still nothing is sent again.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let got = seen(&log);
    assert_eq!(got.len(), 2, "each row sent exactly once: {got:?}");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].body, payload);
    assert_eq!(got[0].key.as_deref(), Some("INC-000042:1:webhook:hook"));
    assert_eq!(got[0].event.as_deref(), Some("ticket.escalated"));
    assert_eq!(got[0].auth.as_deref(), Some("Bearer s3cret"));
    assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(got[1].key.as_deref(), Some("INC-000042:2:webhook:hook"));
    assert_eq!(h.stats.delivered.get("webhook"), 2);
    assert_eq!(h.stats.failed.get("webhook"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_delivered() {
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, log) = receiver(&[500, 500], Duration::ZERO).await;
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        Setup::new(webhook_policy(addr), config(8)),
        &[row(1, "webhook", "hook", json!({"n": 1}))],
    );
    let r = h.wait_state(1, "delivered").await;
    assert_eq!(r["attempts"], 3);
    let err = r["last_error"].as_str().expect("last error kept");
    assert!(
        err.contains("HTTP 500") && err.contains("not here"),
        "{err}"
    );
    assert!(!err.contains("/hook"), "the URL path is not quoted: {err}");
    assert_eq!(seen(&log).len(), 3);
    assert_eq!(h.stats.retried.get("webhook"), 2);
    assert_eq!(h.stats.delivered.get("webhook"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_keeps_failing_is_given_up_after_max_attempts() {
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, log) = receiver(&[500; 10], Duration::ZERO).await;
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        Setup::new(webhook_policy(addr), config(3)),
        &[row(1, "webhook", "hook", json!({"n": 1}))],
    );
    let r = h.wait_state(1, "failed").await;
    assert_eq!(r["attempts"], 3);
    assert!(r["failed_at"].is_string(), "{r:?}");
    assert!(r["sent_at"].is_null());
    let err = r["last_error"].as_str().expect("error");
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(seen(&log).len(), 3, "no attempt after giving up");
    assert_eq!(h.stats.failed.get("webhook"), 1);
    assert_eq!(h.stats.retried.get("webhook"), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_missing_targets_fail_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, log) = receiver(&[404], Duration::ZERO).await;
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        Setup::new(webhook_policy(addr), config(8)),
        &[
            row(1, "webhook", "hook", json!({"n": 1})),
            row(2, "webhook", "gone", json!({"n": 2})),
            row(3, "email", "desk", json!({"n": 3})),
        ],
    );
    let r = h.wait_state(1, "failed").await;
    assert_eq!(r["attempts"], 1);
    assert!(
        r["last_error"]
            .as_str()
            .expect("error")
            .contains("HTTP 404")
    );
    let r = h.wait_state(2, "failed").await;
    let err = r["last_error"].as_str().expect("error");
    assert!(err.contains("[notify.webhook.gone]"), "{err}");
    let r = h.wait_state(3, "failed").await;
    assert_eq!(r["attempts"], 1);
    let err = r["last_error"].as_str().expect("error");
    assert!(err.contains("[notify.email.desk]"), "{err}");
    assert_eq!(seen(&log).len(), 1);
    assert_eq!(h.stats.failed.get("webhook"), 2);
    assert_eq!(h.stats.failed.get("email"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_without_smtp_fails_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = policy("[email.desk]\nto = [\"desk@example.com\"]\n");
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        Setup::new(p, config(8)),
        &[row(1, "email", "desk", handover_payload())],
    );
    let r = h.wait_state(1, "failed").await;
    let err = r["last_error"].as_str().expect("error");
    assert!(err.contains("no [smtp] in collector.toml"), "{err}");
    assert_eq!(h.stats.failed.get("email"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_gets_each_row_once_and_a_reload_moves_the_target() {
    let dir = tempfile::tempdir().expect("tmp");
    // Each answer takes longer than several polls: rows in flight must not be sent again.
    let (addr, log) = receiver(&[], Duration::from_millis(1_300)).await;
    let rows: Vec<_> = (1..=6)
        .map(|i| row(i, "webhook", "hook", json!({"n": i})))
        .collect();
    let h = Harness::start(
        &dir.path().join("t.duckdb"),
        Setup::new(webhook_policy(addr), config(8)),
        &rows,
    );
    for i in 1..=6 {
        h.wait_state(i, "delivered").await;
    }
    let mut keys: Vec<_> = seen(&log).into_iter().filter_map(|s| s.key).collect();
    keys.sort();
    assert_eq!(keys.len(), 6, "each row sent once: {keys:?}");
    keys.dedup();
    assert_eq!(keys.len(), 6);
    // Reload: the same target name now points at another receiver.
    let (addr2, log2) = receiver(&[], Duration::ZERO).await;
    h.targets.send_replace(Arc::new(webhook_policy(addr2)));
    h.insert(&[row(7, "webhook", "hook", json!({"n": 7}))])
        .await;
    h.wait_state(7, "delivered").await;
    assert_eq!(seen(&log).len(), 6);
    assert_eq!(seen(&log2).len(), 1);
    h.stop().await;
}

/// A row waiting for its mark's commit does not hold a send's place: with one send at a
/// time and no mark committed, every row still goes out, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_sent_while_earlier_marks_wait_for_the_writer() {
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, log) = receiver(&[], Duration::ZERO).await;
    let rows: Vec<_> = (1..=5)
        .map(|i| row(i, "webhook", "hook", json!({"n": i})))
        .collect();
    let (open, hold) = watch::channel(false);
    let mut config = config(8);
    config.concurrency = 1;
    let setup = Setup {
        hold_marks: Some(hold),
        ..Setup::new(webhook_policy(addr), config)
    };
    let h = Harness::start(&dir.path().join("t.duckdb"), setup, &rows);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen(&log).len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 5 sent while the marks waited",
            seen(&log).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.row(1)["state"], "pending", "no mark committed yet");
    open.send_replace(true);
    for i in 1..=5 {
        h.wait_state(i, "delivered").await;
    }
    // Polls while the marks waited sent nothing twice.
    let mut keys: Vec<_> = seen(&log).into_iter().filter_map(|s| s.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5);
    assert_eq!(seen(&log).len(), 5);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_rows_survive_a_restart_and_delivered_rows_are_not_sent_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.duckdb");
    let (addr, log) = receiver(&[], Duration::ZERO).await;
    let p = || Setup::new(webhook_policy(addr), config(8));
    let h = Harness::start(
        &path,
        p(),
        &[
            row(1, "webhook", "hook", json!({"n": 1})),
            row(2, "webhook", "hook", json!({"n": 2})),
        ],
    );
    h.wait_state(1, "delivered").await;
    h.wait_state(2, "delivered").await;
    h.stop().await;
    // Written while no dispatcher ran (e.g. committed just before a crash).
    let h = Harness::start(&path, p(), &[row(3, "webhook", "hook", json!({"n": 3}))]);
    h.wait_state(3, "delivered").await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut keys: Vec<_> = seen(&log).into_iter().filter_map(|s| s.key).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "INC-000042:1:webhook:hook",
            "INC-000042:2:webhook:hook",
            "INC-000042:3:webhook:hook"
        ]
    );
    assert_eq!(
        h.row(1)["attempts"],
        1,
        "row 1 not touched by the second run"
    );
    h.stop().await;
}
