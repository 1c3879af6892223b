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
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| IngestError::Password {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
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

/// Logs a refused payload at most once per node per minute; the rest are only counted.
#[derive(Debug, Default)]
pub struct RejectLog {
    last: BTreeMap<String, Millis>,
}

impl RejectLog {
    pub const EVERY_MS: Millis = 60_000;

    /// Should a rejection from `who` at `now` be logged?
    pub fn should_log(&mut self, who: &str, now: Millis) -> bool {
        match self.last.get(who) {
            Some(&t) if now - t < Self::EVERY_MS => false,
            _ => {
                if self.last.len() > 10_000 {
                    self.last.retain(|_, t| now - *t < Self::EVERY_MS);
                }
                self.last.insert(who.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_log_is_rate_limited_per_node() {
        let mut log = RejectLog::default();
        assert!(log.should_log("dc1/a", 0));
        assert!(!log.should_log("dc1/a", 30_000));
        assert!(log.should_log("dc1/b", 30_000));
        assert!(log.should_log("dc1/a", 60_000));
    }

    #[test]
    fn options_from_config() {
        let mut cfg = BrokerConfig::default();
        cfg.url = "mqtt://127.0.0.1:1999".into();
        let opts = options(&cfg).expect("options");
        assert_eq!(opts.broker_address(), ("127.0.0.1".to_string(), 1999));
        assert!(!opts.clean_session());
        cfg.username = Some("collector".into());
        cfg.password_file = Some("/nonexistent/pw".into());
        let err = options(&cfg).expect_err("missing password file");
        assert!(err.to_string().starts_with("/nonexistent/pw: "));
    }
}
