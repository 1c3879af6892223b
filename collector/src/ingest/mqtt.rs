//! MQTT intake: a persistent QoS 1 subscription whose messages are acknowledged only once stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{broadcast, mpsc};

use super::decode::{Decoded, decode};
use crate::config::BrokerConfig;
use crate::time::{Millis, now_millis};

/// One message on its way to the engine, with the token that acknowledges it.
#[derive(Debug)]
pub struct Inbound {
    pub received_at: Millis,
    pub decoded: Decoded,
    /// The QoS 1 publish to acknowledge once its effects are stored.
    pub ack: Option<Publish>,
}

/// Intake counters, shared with `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub connection_errors: AtomicU64,
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
pub async fn run(
    opts: MqttOptions,
    root: String,
    tx: mpsc::Sender<Inbound>,
    mut acks: mpsc::Receiver<Publish>,
    stats: Arc<IngestStats>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let (client, mut eventloop): (AsyncClient, EventLoop) = AsyncClient::new(opts, 1024);
    let ack_client = client.clone();
    let ack_task = tokio::spawn(async move {
        while let Some(p) = acks.recv().await {
            if let Err(e) = ack_client.ack(&p).await {
                tracing::debug!(error = %e, "ack not sent: client closed");
                break;
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
                stats.connected.store(true, Ordering::Relaxed);
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
                let decoded = decode(&root, &p.topic, &p.payload, now);
                let ack = (p.qos != QoS::AtMostOnce).then_some(p);
                // Backpressure: while the pipeline is full we stop reading, and the broker holds the rest.
                if tx
                    .send(Inbound {
                        received_at: now,
                        decoded,
                        ack,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if stats.connected.swap(false, Ordering::Relaxed) {
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
    stats.connected.store(false, Ordering::Relaxed);
    let _ = client.try_disconnect();
    // Give the disconnect a moment to leave.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
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
