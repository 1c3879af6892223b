//! `tocsin-sim flood`: publish a fixed number of fleet reports as fast as the broker takes
//! them, to fill a consumer's queue or measure the broker's intake.
//!
//! Payloads are generated before the clock starts; each node's reports go over one
//! connection in `seq` order, so a consumer sees no duplicates.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use serde::Serialize;
use tocsin_protocol::report_topic;
use tokio::sync::watch;

use crate::fleet::{Fleet, FleetSpec};
use crate::mqtt::{Broker, now_ms};

#[derive(Debug, Clone)]
pub struct FloodConfig {
    pub broker: Broker,
    pub root: String,
    pub fleet: FleetSpec,
    pub messages: u64,
    pub connections: usize,
    pub qos: QoS,
    pub inflight: u16,
    pub client_prefix: String,
    /// The nodes' reports start after this `seq` (a second flood of the same fleet past
    /// the first one's, so a consumer does not take it for duplicates).
    pub after_seq: u64,
    /// Every node starts its uptime again, as after a reboot (with `after_seq`: a second
    /// flood in which each node reports a restart, so a consumer meets a burst of
    /// incidents). Otherwise a later flood carries the nodes' uptime on.
    pub restart_agents: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FloodSummary {
    pub messages: u64,
    /// Acknowledged by the broker (QoS 1), or written to the socket (QoS 0).
    pub confirmed: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    #[error("connection {0} could not connect within 30 s: {1}")]
    Connect(usize, String),
}

/// Publish `messages` reports over `connections` connections; returns once all are confirmed.
pub async fn flood(cfg: FloodConfig) -> Result<FloodSummary, FloodError> {
    let mut fleet = Fleet::build(&cfg.fleet);
    for x in &mut fleet.nodes {
        x.seq = cfg.after_seq;
        if !cfg.restart_agents {
            // As if the node had sent those reports: it carries on, not rebooted.
            x.uptime_s += cfg.after_seq as f64 * f64::from(cfg.fleet.interval_s);
        }
    }
    let n = fleet.nodes.len().max(1);
    let k = cfg.connections.clamp(1, n);
    let topics: Vec<String> = fleet
        .nodes
        .iter()
        .map(|x| report_topic(&cfg.root, &x.site, &x.name))
        .collect();
    let mut per_conn: Vec<Vec<(usize, Bytes)>> = vec![Vec::new(); k];
    let mut bytes = 0u64;
    let ts0 = now_ms();
    let interval_s = cfg.fleet.interval_s;
    for m in 0..cfg.messages {
        let i = (m % n as u64) as usize;
        let round = (m / n as u64) as i64;
        let g = fleet.nodes[i].report(ts0 + round * 10, interval_s);
        let payload = Bytes::from(serde_json::to_vec(&g.report).unwrap_or_default());
        bytes += payload.len() as u64;
        per_conn[i % k].push((i, payload));
    }
    tracing::info!(
        messages = cfg.messages,
        bytes,
        connections = k,
        "payloads ready"
    );

    let (go_tx, go_rx) = watch::channel(false);
    let mut connected = Vec::new();
    let mut tasks = Vec::new();
    for (c, list) in per_conn.into_iter().enumerate() {
        let mut opts = cfg.broker.options(
            &format!("{}-{c}", cfg.client_prefix),
            Duration::from_secs(60),
            cfg.inflight,
        );
        opts.set_request_channel_capacity(1024);
        let (client, mut el) = AsyncClient::new(opts, 1024);
        let (conn_tx, conn_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        connected.push(conn_rx);
        let topics = topics.clone();
        let mut go = go_rx.clone();
        let qos = cfg.qos;
        tasks.push(tokio::spawn(async move {
            let total = list.len() as u64;
            let feeder_client = client.clone();
            let feeder = tokio::spawn(async move {
                if go.wait_for(|g| *g).await.is_err() {
                    return;
                }
                for (i, payload) in list {
                    if feeder_client
                        .publish_bytes(topics[i].clone(), qos, false, payload)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let mut conn_tx = Some(conn_tx);
            let mut confirmed = 0u64;
            while confirmed < total {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(t) = conn_tx.take() {
                            let _ = t.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) if qos != QoS::AtMostOnce => {
                        confirmed += 1;
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                        confirmed += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(t) = conn_tx.take() {
                            let _ = t.send(Err(e.to_string()));
                            return (confirmed, Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            let done = Instant::now();
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(ev) = el.poll().await {
                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
            let _ = feeder.await;
            (confirmed, done)
        }));
    }
    for (c, rx) in connected.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(FloodError::Connect(c, e)),
            _ => return Err(FloodError::Connect(c, "no CONNACK".into())),
        }
    }
    let started = Instant::now();
    let _ = go_tx.send(true);
    let mut confirmed = 0;
    let mut finished = started;
    for t in tasks {
        if let Ok((c, done)) = t.await {
            confirmed += c;
            finished = finished.max(done);
        }
    }
    let seconds = finished.duration_since(started).as_secs_f64();
    Ok(FloodSummary {
        messages: cfg.messages,
        confirmed,
        bytes,
        seconds,
        per_s: if seconds > 0.0 {
            confirmed as f64 / seconds
        } else {
            0.0
        },
    })
}
