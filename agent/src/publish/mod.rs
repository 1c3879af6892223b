//! MQTT publishing with store-and-forward: retained births on every connect, reports through the disk spool, clean stop.
//!
//! A [`Publisher`] owns a background task that drives the rumqttc event loop. Reports are
//! handed over with a non-blocking enqueue; the task writes each to the [`spool::Spool`]
//! first and publishes from the spool in order (oldest first, so reports queued during an
//! outage go out before new ones, with their original timestamps). A report leaves the spool
//! only when the broker's PUBACK for it arrives: the task assigns packet ids itself, so every
//! PUBACK is matched to exactly one report. After a broken connection, everything not
//! acknowledged is sent again (the collector drops duplicates by `seq`).
//!
//! Births (the agent's and one per probed device) are published retained on every ConnAck,
//! ahead of the backlog. [`Publisher::shutdown`] publishes the retained `stopped` status of
//! each, waits (bounded) for their PUBACKs and disconnects cleanly, so the broker does not
//! send the last will.

mod queue;
pub mod spool;
pub mod tls;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    Request,
};
use tocsin_protocol::{MAX_PAYLOAD_BYTES, NodeState, Report, Status};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::AgentError;
use crate::collect::now_ms;
use crate::config::AgentConfig;
use queue::{Item, Queue, REPORTS_AT_STOP, STABLE_CONNECTION};
use spool::Spool;

/// Reports that may wait between the run loop and the MQTT task (normally empty: the task
/// moves each to the spool at once).
pub const COMMAND_CAPACITY: usize = 256;
/// Publishes in flight (sent, PUBACK not yet received) at most.
pub const WINDOW: u16 = 32;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Pause between reconnect attempts while stopping (the whole stop is bounded by its caller).
const STOP_RETRY: Duration = Duration::from_millis(100);

/// Why a report was not handed to the MQTT task.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish queue is full ({COMMAND_CAPACITY} reports waiting for the spool)")]
    QueueFull,
    #[error("report is {0} bytes, over the protocol limit of {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge(usize),
    #[error("cannot serialise: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Every `stopped` was acknowledged and the connection closed with DISCONNECT.
    Clean,
    /// No acknowledgement in time: the connection was dropped (the broker sends the last will).
    TimedOut,
}

/// Counters shared between the MQTT task and the run loop (for the agent's own metrics).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Reports that never reached the broker and never will (queue full, too large, spool full).
    pub(crate) dropped: AtomicU64,
    /// Reports acknowledged by the broker.
    pub(crate) acked: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    pub(crate) spool_errors: AtomicU64,
    /// Reports the spool dropped (full, or damaged files).
    pub(crate) spool_dropped: AtomicU64,
    pub(crate) connected: AtomicBool,
}

/// What the publisher's counters say, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub dropped: u64,
    pub acked: u64,
    /// Reports in the spool (waiting for the broker).
    pub queued: u64,
    pub queued_bytes: u64,
    pub spool_errors: u64,
    pub connected: bool,
}

pub(crate) enum Command {
    Report { topic: String, payload: Vec<u8> },
    Birth { topic: String, status: Box<Status> },
    ForgetBirth { topic: String },
}

/// The retained `stopped` status.
pub fn stopped_status() -> Status {
    Status {
        state: NodeState::Stopped,
        ts: Some(now_ms()),
        ..Status::last_will()
    }
}

/// MQTT options for an agent config: client id, keep-alive, credentials, last will, TLS.
/// Fails when a TLS file cannot be read or used.
pub fn mqtt_options(
    config: &AgentConfig,
    password: Option<String>,
) -> Result<MqttOptions, AgentError> {
    let url = &config.broker.url;
    let mut options = MqttOptions::new(config.client_id(), url.host.clone(), url.port);
    options.set_keep_alive(config.broker.keep_alive);
    options.set_clean_session(true);
    options.set_inflight(WINDOW);
    // Topic and header overhead on top of the largest payload the protocol accepts.
    options.set_max_packet_size(MAX_PAYLOAD_BYTES + 4096, MAX_PAYLOAD_BYTES + 4096);
    if let Some(user) = &config.broker.username {
        options.set_credentials(user.clone(), password.unwrap_or_default());
    }
    let will = serde_json::to_vec(&Status::last_will()).unwrap_or_default();
    options.set_last_will(LastWill::new(
        config.status_topic(),
        will,
        QoS::AtLeastOnce,
        true,
    ));
    if url.tls {
        options.set_transport(tls::transport(&config.broker)?);
    }
    Ok(options)
}

/// Publishes one agent's births and reports (its own and its devices').
#[derive(Debug)]
pub struct Publisher {
    handle: PublisherHandle,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<StopOutcome>>,
}

/// A cheap, cloneable way to hand reports and births to a [`Publisher`] (one per device task).
#[derive(Debug, Clone)]
pub struct PublisherHandle {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for Publisher {
    type Target = PublisherHandle;
    fn deref(&self) -> &PublisherHandle {
        &self.handle
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Report { topic, payload } => {
                write!(f, "Report({topic}, {} bytes)", payload.len())
            }
            Command::Birth { topic, .. } => write!(f, "Birth({topic})"),
            Command::ForgetBirth { topic } => write!(f, "ForgetBirth({topic})"),
        }
    }
}

impl Publisher {
    /// Start the connection task with the spool in `config.spool.dir`. Returns at once;
    /// connecting happens in the background. `birth` (the agent's own status) is published
    /// retained on every ConnAck, with a fresh `ts`.
    pub fn start(
        config: &AgentConfig,
        password: Option<String>,
        birth: Status,
    ) -> Result<Self, AgentError> {
        let options = mqtt_options(config, password)?;
        let (client, eventloop) = AsyncClient::new(options, 10);
        let shared = Arc::new(Shared::default());
        let mut spool = Spool::open(&config.spool.dir, config.spool.max_bytes);
        spool.discard_foreign(&format!("{}/v1/{}/", config.topic_root, config.site));
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let driver = Driver {
            eventloop,
            _client: client,
            q: Queue::new(
                spool,
                vec![(config.status_topic(), birth)],
                Arc::clone(&shared),
                config.broker.url.to_string(),
            ),
        };
        driver.q.update_stats();
        let task = tokio::spawn(driver.run(rx, stop_rx));
        Ok(Publisher {
            handle: PublisherHandle { tx, shared },
            stop_tx: Some(stop_tx),
            task: Some(task),
        })
    }

    /// A handle for other tasks.
    pub fn handle(&self) -> PublisherHandle {
        self.handle.clone()
    }

    /// Publish the retained `stopped` statuses, wait up to `timeout` for their PUBACKs, then
    /// disconnect cleanly. Past the timeout the connection is dropped instead, and the broker
    /// publishes the last will (`offline`): never a stale `online`. Unsent reports stay in
    /// the spool for the next start.
    pub async fn shutdown(mut self, timeout: Duration) -> StopOutcome {
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return StopOutcome::TimedOut;
        };
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "MQTT task failed");
                StopOutcome::TimedOut
            }
            Err(_) => {
                task.abort();
                let _ = task.await;
                tracing::warn!(
                    "broker did not acknowledge the stopped status within {timeout:?}; dropping the connection (the broker will announce offline)"
                );
                StopOutcome::TimedOut
            }
        }
    }
}

impl PublisherHandle {
    /// Hand a report to the spool without waiting. An error means it was dropped (counted).
    pub fn publish_report(&self, topic: &str, report: &Report) -> Result<(), PublishError> {
        let result = serde_json::to_vec(report)
            .map_err(PublishError::from)
            .and_then(|payload| {
                if payload.len() > MAX_PAYLOAD_BYTES {
                    return Err(PublishError::TooLarge(payload.len()));
                }
                self.tx
                    .try_send(Command::Report {
                        topic: topic.to_string(),
                        payload,
                    })
                    .map_err(|_| PublishError::QueueFull)
            });
        if result.is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Set (or replace) the retained birth published on `topic` now and on every connect.
    pub fn set_birth(&self, topic: &str, status: Status) {
        let cmd = Command::Birth {
            topic: topic.to_string(),
            status: Box::new(status),
        };
        if self.tx.try_send(cmd).is_err() {
            tracing::warn!(topic, "publish queue full; birth status not updated");
        }
    }

    /// Stop announcing a birth on `topic` (a device removed by a reload); publishes its
    /// `stopped` status so the collector does not page for it.
    pub fn forget_birth(&self, topic: &str) {
        let cmd = Command::ForgetBirth {
            topic: topic.to_string(),
        };
        if self.tx.try_send(cmd).is_err() {
            tracing::warn!(topic, "publish queue full; removed device not announced");
        }
    }

    /// The counters for the agent's own metrics.
    pub fn stats(&self) -> PublisherStats {
        let s = &self.shared;
        PublisherStats {
            dropped: s.dropped.load(Ordering::Relaxed) + s.spool_dropped.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            queued_bytes: s.queued_bytes.load(Ordering::Relaxed),
            spool_errors: s.spool_errors.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Reports dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats().dropped
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The MQTT task: the event loop, and the [`Queue`] of everything to publish.
///
/// The two are separate fields so a pending `poll()` of the event loop (which borrows it) can
/// stay alive while commands are handled on the queue: `poll()` is cancelled only while
/// nothing of ours is in flight.
struct Driver {
    eventloop: EventLoop,
    /// Kept so the event loop's request channel stays open.
    _client: AsyncClient,
    q: Queue,
}

/// What ended waiting for the event loop.
enum Wake {
    Event(Result<Event, ConnectionError>),
    /// Something new to send while idle: poll was cancelled (safe: nothing in flight).
    Work,
    Stop,
}

impl Driver {
    /// Hand the queue's publishes to the event loop.
    fn flush_outbox(&mut self) {
        self.eventloop.pending.extend(self.q.outbox.drain(..));
    }

    /// Poll the event loop while handling commands on the side.
    async fn next(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        rx_open: &mut bool,
        stop_rx: &mut oneshot::Receiver<()>,
    ) -> Wake {
        let poll = self.eventloop.poll();
        tokio::pin!(poll);
        loop {
            tokio::select! {
                biased;
                _ = &mut *stop_rx => return Wake::Stop,
                event = &mut poll => return Wake::Event(event),
                cmd = rx.recv(), if *rx_open => match cmd {
                    Some(cmd) => {
                        self.q.handle(cmd);
                        self.q.update_stats();
                        if self.q.idle() {
                            return Wake::Work;
                        }
                    }
                    // Every sender is gone: nobody can ask for a clean stop any more.
                    None => *rx_open = false,
                },
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut stop_rx: oneshot::Receiver<()>,
    ) -> StopOutcome {
        let mut backoff = BACKOFF_START;
        let mut failures: u64 = 0;
        let mut rx_open = true;
        let mut connected_at: Option<tokio::time::Instant> = None;
        loop {
            while let Ok(cmd) = rx.try_recv() {
                self.q.handle(cmd);
            }
            self.q.fill();
            self.flush_outbox();
            self.q.update_stats();
            let event = match self.next(&mut rx, &mut rx_open, &mut stop_rx).await {
                Wake::Stop => break,
                Wake::Work => continue,
                Wake::Event(event) => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %self.q.broker, backlog = self.q.spool.len(), "connected to broker");
                    failures = 0;
                    connected_at = Some(tokio::time::Instant::now());
                    self.q.on_connack();
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => self.q.on_puback(ack.pkid),
                Ok(_) => {}
                Err(e) => {
                    let was_connected = self.q.connected;
                    self.q.connection_lost();
                    self.eventloop.pending.clear();
                    self.eventloop.state.events.clear();
                    self.q.update_stats();
                    if connected_at
                        .take()
                        .is_some_and(|at| at.elapsed() >= STABLE_CONNECTION)
                    {
                        backoff = BACKOFF_START;
                    }
                    failures += 1;
                    log_failure(&self.q.broker, &e, was_connected, failures, backoff);
                    // Wait out the backoff, still spooling what arrives.
                    let sleep = tokio::time::sleep(backoff);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut stop_rx => return self.stop(rx).await,
                            () = &mut sleep => break,
                            cmd = rx.recv(), if rx_open => match cmd {
                                Some(cmd) => { self.q.handle(cmd); self.q.update_stats(); }
                                None => rx_open = false,
                            },
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.stop(rx).await
    }

    /// Publish `stopped` for every birth, wait for their PUBACKs, send DISCONNECT. Unbounded
    /// here: the caller aborts. What is in flight and a few more spooled messages go out
    /// ahead of the stops; the rest stays in the spool for the next start.
    async fn stop(mut self, mut rx: mpsc::Receiver<Command>) -> StopOutcome {
        rx.close();
        while let Some(cmd) = rx.recv().await {
            self.q.handle(cmd);
        }
        self.q.urgent.clear();
        self.q.update_stats();
        let all_stops: Vec<String> = self.q.births.iter().map(|(t, _)| t.clone()).collect();
        let room = usize::from(WINDOW).saturating_sub(all_stops.len()).max(1);
        let mut stops: VecDeque<String> = VecDeque::new();
        let mut reports_sent = false;
        let mut disconnect_queued = false;
        loop {
            if self.q.connected {
                if !reports_sent {
                    // Oldest unsent first, as always, so `stopped` is the last word.
                    self.q.fill_spool(room, REPORTS_AT_STOP);
                    stops = all_stops.iter().cloned().collect();
                    reports_sent = true;
                }
                while self.q.has_room(usize::from(WINDOW)) {
                    let Some(topic) = stops.pop_front() else {
                        break;
                    };
                    let payload = serde_json::to_vec(&stopped_status()).unwrap_or_default();
                    self.q.send(&topic, payload, true, Item::Stopped);
                }
                self.flush_outbox();
                if stops.is_empty() && self.q.inflight.is_empty() && !disconnect_queued {
                    self.eventloop
                        .pending
                        .push_back(Request::Disconnect(rumqttc::Disconnect));
                    disconnect_queued = true;
                }
            }
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    self.q.connected = true;
                    self.q.inflight.clear();
                    self.q.cursor = 0;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => self.q.on_puback(ack.pkid),
                Ok(Event::Outgoing(Outgoing::Disconnect)) if disconnect_queued => {
                    tracing::info!("disconnected from broker");
                    self.q.update_stats();
                    return StopOutcome::Clean;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "broker connection failed while stopping");
                    self.q.connection_lost();
                    self.eventloop.pending.clear();
                    self.eventloop.state.events.clear();
                    reports_sent = false;
                    disconnect_queued = false;
                    tokio::time::sleep(STOP_RETRY).await;
                }
            }
        }
    }
}

/// Warn on the first failure and then every tenth, not on every retry.
fn log_failure(
    broker: &str,
    e: &ConnectionError,
    was_connected: bool,
    failures: u64,
    backoff: Duration,
) {
    let why = describe_connection_error(e);
    if was_connected {
        tracing::warn!(%broker, "lost the broker connection ({why}); reports are spooled until it is back");
    } else if failures == 1 || failures.is_multiple_of(10) {
        tracing::warn!(%broker, failures, "cannot connect to the broker ({why}); retrying in {backoff:?}, reports are spooled");
    } else {
        tracing::debug!(%broker, failures, "cannot connect to the broker ({why}); retrying in {backoff:?}");
    }
}

/// One line a person can act on for the usual connection failures.
pub fn describe_connection_error(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            use rumqttc::ConnectReturnCode as C;
            match code {
                C::BadUserNamePassword => {
                    "the broker refused the username or password; check [broker] username and password_file".to_string()
                }
                C::NotAuthorized => {
                    "the broker says this client is not authorised; check its ACL and [broker] username".to_string()
                }
                C::BadClientId => {
                    "the broker refused the client id; set [broker] client_id".to_string()
                }
                other => format!("the broker refused the connection: {other:?}"),
            }
        }
        ConnectionError::Tls(tls) => {
            format!("TLS failed: {tls}; check [broker] ca_file, cert_file and key_file")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_last_will_and_identity() {
        let mut config = AgentConfig::new("dc1", "web-01");
        config.broker.username = Some("agent".into());
        let options = mqtt_options(&config, Some("secret".into())).expect("options");
        assert_eq!(options.client_id(), "tocsin-agent-dc1-web-01");
        assert_eq!(options.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert_eq!(options.keep_alive(), Duration::from_secs(30));
        assert_eq!(options.inflight(), WINDOW);
        let will = options.last_will().expect("last will");
        assert_eq!(will.topic, "tocsin/v1/dc1/web-01/status");
        assert_eq!(&will.message[..], br#"{"v":1,"state":"offline"}"#);
        assert!(will.retain);
        assert_eq!(will.qos, QoS::AtLeastOnce);
        let login = options.credentials().expect("credentials");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("agent", "secret")
        );
    }

    #[test]
    fn stopped_status_shape() {
        let s = stopped_status();
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["v"], 1);
        assert_eq!(json["state"], "stopped");
        assert!(json["ts"].as_i64().is_some_and(|ts| ts > 0));
        s.validate().expect("valid");
    }

    #[tokio::test]
    async fn a_dead_broker_never_blocks_publishing_and_reports_are_spooled() {
        // Nothing listens on this port: reports go to the spool on disk.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = AgentConfig::new("dc1", "web-01");
        config.broker.url.port = port;
        config.spool.dir = dir.path().to_path_buf();
        let publisher = Publisher::start(&config, None, stopped_status()).expect("start");
        let report = crate::collect::build_report(&config, 1, now_ms(), Vec::new(), Vec::new());
        let start = std::time::Instant::now();
        for _ in 0..50 {
            publisher
                .publish_report(&config.report_topic(), &report)
                .expect("spooled");
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while publisher.stats().queued < 50 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = publisher.stats();
        assert_eq!(
            (stats.queued, stats.dropped, stats.connected),
            (50, 0, false)
        );
        let outcome = publisher.shutdown(Duration::from_millis(300)).await;
        assert_eq!(outcome, StopOutcome::TimedOut);
        let files = std::fs::read_dir(dir.path().join(spool::QUEUE_DIR))
            .expect("queue dir")
            .count();
        assert_eq!(files, 50, "reports stay on disk for the next start");
    }
}
