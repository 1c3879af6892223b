//! MQTT intake: a persistent QoS 1 subscription whose messages are acknowledged only once stored.
//!
//! The event loop is polled all the time, whatever the pipeline is doing: keep-alive pings
//! and acks travel on it, so an intake that stopped reading while the pipeline was busy
//! missed its PINGRESP, lost the connection, had the broker redeliver its whole in-flight
//! window, and with the redelivered copies' acks queued behind a stalled event loop the
//! writer, pipeline and intake ended up waiting on each other (the 50,000-node stall in
//! BENCHMARKS.md). How far the collector reads ahead is bounded by the protocol instead:
//! the broker sends at most its in-flight window (`max_inflight_messages`, and never more
//! than the 65,535 packet ids) of unacknowledged QoS 1 messages, and nothing is
//! acknowledged before it is stored.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{broadcast, mpsc};

use super::decode::{Decoded, decode};
use crate::config::BrokerConfig;
use crate::time::{Millis, now_millis};

/// One message on its way to the engine, as received, with the token that acknowledges it.
///
/// Intake only moves bytes: the decode stage (`stage.rs`) decodes. Decoding here held up
/// the event loop (a debug build on a loaded machine missed a 5 s keep-alive behind a 50 MB
/// backlog, the broker writing its PINGRESP after the backlog), and a decoded 30-metric
/// report takes about five times the memory of its payload in the intake queue.
#[derive(Debug)]
pub struct Inbound {
    pub received_at: Millis,
    pub topic: String,
    pub payload: Bytes,
    /// The QoS 1 publish to acknowledge once its effects are stored.
    pub ack: Option<AckToken>,
}

impl Inbound {
    /// What the message is, for topics under `root`.
    pub fn decode(&self, root: &str) -> Decoded {
        decode(root, &self.topic, &self.payload, self.received_at)
    }
}

/// What acknowledges one QoS 1 message: its publish and the connection it came on.
///
/// An ack is sent only on the connection the message arrived on. After a reconnect the
/// broker redelivers every unacknowledged message of the session, and that copy is acked
/// in its turn; acking the old copy as well would free a packet id the broker may already
/// have given to a new message, acknowledging that one before it is stored.
#[derive(Debug)]
pub struct AckToken {
    publish: Publish,
    connection: u64,
}

/// Unacknowledged QoS 1 messages one connection can have: packet ids are 16-bit.
pub const MAX_UNACKED: usize = 65_535;

/// The client's request channel (acks, subscriptions). Acks beyond it wait in the ack
/// task, never in the writer (see [`run`]).
pub const REQUEST_QUEUE: usize = 1024;

/// How long a clean stop waits for the writer to hand back the acks of what it stored.
const STOP_ACK_WAIT: Duration = Duration::from_secs(5);

/// Intake counters, shared with `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub connection_errors: AtomicU64,
    /// Connections made so far; numbers the one in use (see [`AckToken`]).
    pub connection: AtomicU64,
    /// Acks not sent because their message came on an earlier connection (it is redelivered).
    pub acks_stale: AtomicU64,
    /// QoS 0 messages dropped because the pipeline's queue was full (QoS 1 ones wait instead).
    pub dropped_qos0: AtomicU64,
    /// Times a QoS 1 message waited for room in the pipeline's queue: the broker sent more
    /// than the queue holds (its in-flight window is larger than the queue).
    pub queue_full_waits: AtomicU64,
    pub rejected: Mutex<BTreeMap<String, u64>>,
    /// Refusals counted but not stored (over the per-node budget).
    pub rejected_unstored: AtomicU64,
}

impl IngestStats {
    pub fn count_rejected(&self, reason: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason.to_string()).or_default() += 1;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("broker: {0}")]
    Config(String),
    #[error("{path}: cannot read the broker password: {source}")]
    Password {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Largest MQTT packet accepted; larger than the payload limit so oversized reports are
/// refused and kept by the decoder instead of dropping the connection.
const MAX_PACKET: usize = 1024 * 1024;

/// Client options for the collector's subscription.
pub fn options(cfg: &BrokerConfig) -> Result<MqttOptions, IngestError> {
    let (host, port) = cfg.endpoint().map_err(IngestError::Config)?;
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    opts.set_keep_alive(cfg.keep_alive.max(Duration::from_secs(5)));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_file {
            Some(path) => {
                crate::config::read_password_file(path).map_err(|source| IngestError::Password {
                    path: path.clone(),
                    source,
                })?
            }
            None => String::new(),
        };
        opts.set_credentials(user.clone(), password);
    }
    Ok(opts)
}

/// Subscribe and forward every message to `tx` until `shutdown` fires. Acks arriving on
/// `acks` (from the writer, after commit) are passed to the broker.
///
/// `tx` should hold the broker's whole in-flight window (see [`MAX_UNACKED`]): the event
/// loop keeps being polled while the pipeline works through it, so pings and acks flow.
/// Should the broker send more than the queue holds (Mosquitto does, resuming a session
/// with a backlog: 76,000 unacknowledged messages were seen with `max_inflight_messages
/// 1000`), a QoS 1 message waits for room and a QoS 0 message is dropped and counted.
/// That wait cannot deadlock, because nothing downstream waits on intake: acks the
/// client cannot take yet wait in the ack task (not in the writer), so the pipeline keeps
/// draining and room comes. With the writer handing acks to a bounded client channel,
/// which only this loop's polling drains, a broker flood stalled the collector for good
/// (`bench/e2e ceiling` at 300,000 queued reports, BENCHMARKS.md).
pub async fn run(
    opts: MqttOptions,
    root: String,
    tx: mpsc::Sender<Inbound>,
    mut acks: mpsc::Receiver<AckToken>,
    stats: Arc<IngestStats>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let (client, mut eventloop): (AsyncClient, EventLoop) = AsyncClient::new(opts, REQUEST_QUEUE);
    let ack_client = client.clone();
    let ack_stats = stats.clone();
    // Acks the client cannot take yet wait here, never in the writer: only intake's polling
    // drains the client's channel, and intake may be waiting for the pipeline, which must
    // not wait for the writer, which must not wait for acks (see `run`'s doc). At most one
    // small entry per unacknowledged message.
    let mut ack_task = tokio::spawn(async move {
        let mut pending: VecDeque<AckToken> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match acks.recv().await {
                    Some(t) => pending.push_back(t),
                    None => break,
                }
            }
            let mut closed = false;
            loop {
                match acks.try_recv() {
                    Ok(t) => pending.push_back(t),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            while let Some(t) = pending.front() {
                // A message of a connection that is gone is redelivered on the next one.
                if !ack_stats.connected.load(Ordering::Acquire)
                    || t.connection != ack_stats.connection.load(Ordering::Acquire)
                {
                    ack_stats.acks_stale.fetch_add(1, Ordering::Relaxed);
                    pending.pop_front();
                    continue;
                }
                if ack_client.try_ack(&t.publish).is_err() {
                    break; // the client's channel is full: intake's next poll makes room
                }
                pending.pop_front();
            }
            if pending.is_empty() {
                if closed {
                    break;
                }
                continue;
            }
            tokio::select! {
                t = acks.recv(), if !closed => {
                    if let Some(t) = t {
                        pending.push_back(t);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    });
    let subs = tocsin_protocol::subscriptions(&root);
    let mut backoff = Duration::from_millis(500);
    loop {
        let event = tokio::select! {
            _ = shutdown.recv() => break,
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(500);
                stats.connection.fetch_add(1, Ordering::AcqRel);
                stats.connected.store(true, Ordering::Release);
                stats.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                for filter in &subs {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, filter, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = now_millis();
                stats.messages.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes
                    .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                // The ack needs only the packet id and QoS: the token does not keep the
                // payload alive until the commit (2 KB a message over a whole window).
                let ack = (p.qos != QoS::AtMostOnce).then(|| {
                    let mut publish = Publish::from_bytes(String::new(), p.qos, Bytes::new());
                    publish.pkid = p.pkid;
                    AckToken {
                        publish,
                        connection: stats.connection.load(Ordering::Acquire),
                    }
                });
                let msg = Inbound {
                    received_at: now,
                    topic: p.topic,
                    payload: p.payload,
                    ack,
                };
                match tx.try_send(msg) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(msg)) if msg.ack.is_none() => {
                        drop(msg);
                        stats.dropped_qos0.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(msg)) => {
                        // Beyond the protocol's bound: push back; the broker holds the rest.
                        stats.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                        let sent = tokio::select! {
                            _ = shutdown.recv() => break,
                            sent = tx.send(msg) => sent,
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            Ok(_) => {}
            Err(e) => {
                if stats.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "lost the MQTT broker; reconnecting");
                } else {
                    tracing::debug!(error = %e, "MQTT broker still unreachable");
                }
                stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = shutdown.recv() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    // A clean stop: the pipeline takes nothing more (what it still had queued stays
    // unacknowledged), the writer commits what it was given and hands back those acks, and
    // they leave on this connection before it closes, so the next run gets no duplicates.
    // Messages arriving meanwhile are not taken: unacknowledged, they go to the next run.
    drop(tx);
    let acks_sent = tokio::time::timeout(STOP_ACK_WAIT, async {
        loop {
            tokio::select! {
                _ = &mut ack_task => break true,
                ev = eventloop.poll() => if ev.is_err() { break false },
            }
        }
    })
    .await;
    if !matches!(acks_sent, Ok(true)) {
        tracing::warn!(
            "stopping before every stored message was acknowledged; the broker redelivers the rest to the next run"
        );
    }
    stats.connected.store(false, Ordering::Relaxed);
    let _ = client.try_disconnect();
    // Give the acks and the disconnect a moment to leave.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    ack_task.abort();
}

/// Allows at most `limit` events per sender per window; used to log refusals once a minute
/// and to keep at most a few refused payloads per node and minute (the rest are counted).
#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    window_ms: Millis,
    /// Sender -> (window start, events in it).
    seen: BTreeMap<String, (Millis, u32)>,
}

impl RateLimit {
    /// Senders remembered at most; older windows are forgotten first.
    const MAX_SENDERS: usize = 10_000;

    pub fn new(limit: u32, window_ms: Millis) -> Self {
        RateLimit {
            limit,
            window_ms,
            seen: BTreeMap::new(),
        }
    }

    /// Once per sender per minute: for log lines.
    pub fn log_once_a_minute() -> Self {
        RateLimit::new(1, 60_000)
    }

    /// Is one more event from `who` at `now` allowed?
    pub fn allow(&mut self, who: &str, now: Millis) -> bool {
        if self.seen.len() >= Self::MAX_SENDERS && !self.seen.contains_key(who) {
            let window = self.window_ms;
            self.seen.retain(|_, (start, _)| now - *start < window);
            if self.seen.len() >= Self::MAX_SENDERS {
                return false;
            }
        }
        let entry = self.seen.entry(who.to_string()).or_insert((now, 0));
        if now - entry.0 >= self.window_ms {
            *entry = (now, 0);
        }
        if entry.1 < self.limit {
            entry.1 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_is_per_sender_and_window() {
        let mut log = RateLimit::log_once_a_minute();
        assert!(log.allow("dc1/a", 0));
        assert!(!log.allow("dc1/a", 30_000));
        assert!(log.allow("dc1/b", 30_000));
        assert!(log.allow("dc1/a", 60_000));
        let mut store = RateLimit::new(3, 60_000);
        let allowed = (0..10).filter(|i| store.allow("dc1/a", i * 1_000)).count();
        assert_eq!(allowed, 3);
        assert!(store.allow("dc1/a", 61_000));
    }

    #[test]
    fn options_from_config() {
        let mut cfg = BrokerConfig {
            url: "mqtt://127.0.0.1:1999".into(),
            ..BrokerConfig::default()
        };
        let opts = options(&cfg).expect("options");
        assert_eq!(opts.broker_address(), ("127.0.0.1".to_string(), 1999));
        assert!(!opts.clean_session());
        cfg.username = Some("collector".into());
        cfg.password_file = Some("/nonexistent/pw".into());
        let err = options(&cfg).expect_err("missing password file");
        assert!(err.to_string().starts_with("/nonexistent/pw: "));
    }
}
