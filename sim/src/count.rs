//! `tocsin-sim count`: a subscriber that does nothing but count, to measure what the broker
//! itself can deliver to one QoS 1 session (the ceiling tocsin's intake is compared with).

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::Serialize;

use crate::mqtt::Broker;

#[derive(Debug, Clone)]
pub struct CountConfig {
    pub broker: Broker,
    pub filter: String,
    pub qos: QoS,
    pub client_id: String,
    /// Keep the session (clean_session = false), so the broker queues messages while away.
    pub persistent: bool,
    /// Only register the persistent subscription, then leave.
    pub register_only: bool,
    /// Stop after this many messages.
    pub expect: Option<u64>,
    /// Stop once nothing arrived for this long (after the first message).
    pub idle: Duration,
    /// Give up when no message arrived within this long.
    pub first_within: Duration,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountSummary {
    pub messages: u64,
    pub bytes: u64,
    /// From the first message to the last.
    pub seconds: f64,
    pub per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("no message within {0:?} on {1}")]
    NothingArrived(Duration, String),
    #[error("the broker refused or dropped the connection: {0}")]
    Connection(String),
}

/// Count until `expect` messages arrived, or the stream went idle.
pub async fn count(cfg: CountConfig) -> Result<CountSummary, CountError> {
    let mut opts = cfg
        .broker
        .options(&cfg.client_id, Duration::from_secs(60), 100);
    opts.set_clean_session(!cfg.persistent);
    let (client, mut el) = AsyncClient::new(opts, 64);
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut errors = 0u32;
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    loop {
        let wait = match first {
            None => cfg.first_within.saturating_sub(started.elapsed()),
            Some(_) => cfg.idle.saturating_sub(last.elapsed()),
        };
        let ev = match tokio::time::timeout(wait, el.poll()).await {
            Ok(ev) => ev,
            Err(_) if first.is_none() && !cfg.register_only => {
                return Err(CountError::NothingArrived(cfg.first_within, cfg.filter));
            }
            Err(_) => break,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Err(e) = client.try_subscribe(cfg.filter.clone(), cfg.qos) {
                    return Err(CountError::Connection(e.to_string()));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if cfg.register_only => {
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Ok(ev) = el.poll().await {
                        if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                            break;
                        }
                    }
                })
                .await;
                return Ok(CountSummary {
                    messages: 0,
                    bytes: 0,
                    seconds: 0.0,
                    per_s: 0.0,
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                messages += 1;
                bytes += p.payload.len() as u64;
                if now >= next_progress {
                    next_progress = now + Duration::from_secs(5);
                    let secs = first.map_or(0.0, |f| now.duration_since(f).as_secs_f64());
                    tracing::info!(
                        messages,
                        per_s = (messages as f64 / secs.max(1e-9)) as u64,
                        "counting"
                    );
                }
                if cfg.expect.is_some_and(|e| messages >= e) {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                errors += 1;
                if errors > 10 {
                    return Err(CountError::Connection(e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = client.try_disconnect();
    let seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(CountSummary {
        messages,
        bytes,
        seconds,
        per_s: if seconds > 0.0 {
            messages as f64 / seconds
        } else {
            0.0
        },
    })
}
