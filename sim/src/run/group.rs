//! One MQTT connection and the simulated nodes that publish over it: births, reports on
//! their schedule, failures acted out (a crash drops the connection so the broker publishes
//! the last will), a clean stop at the end.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, QoS};
use tocsin_protocol::{NodeState, Status, report_topic, status_topic};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::Stats;
use crate::fleet::{FaultKind, SimNode};
use crate::latency::Injected;
use crate::mqtt::{Broker, now_ms};

/// What the scheduler tells a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Start failure `id` of `kind` on node `node` (a fleet index).
    Fault {
        node: usize,
        kind: FaultKind,
        id: u64,
    },
    /// The node's switch went down: it is cut off from the network (a fleet index).
    CutOff { node: usize, id: u64 },
    /// The node recovers.
    Heal { node: usize },
}

/// Everything one connection task needs.
#[derive(Debug)]
pub struct Group {
    pub client_id: String,
    pub nodes: Vec<SimNode>,
    /// The node whose agent owns this connection (it carries that node's last will); None
    /// when nodes share connections (then a crash is announced by publishing the node's
    /// offline status, the same retained message the broker would publish).
    pub agent: Option<usize>,
    pub broker: Broker,
    pub root: String,
    pub keep_alive: Duration,
    pub inflight: u16,
    pub qos: QoS,
    pub interval: Duration,
    /// When to connect.
    pub connect_at: Instant,
    /// When each node makes its first report.
    pub first_due: Vec<Instant>,
    pub stats: Arc<Stats>,
    pub injected: mpsc::Sender<Injected>,
    /// Rule name -> its `for` (ms).
    pub rule_for: Arc<BTreeMap<String, i64>>,
    /// Publish a `stopped` status for each node and disconnect cleanly at the end.
    pub clean_stop: bool,
}

/// Resolves once `rx` turns true (or its sender is gone); holds no borrow of the value.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// How a connection's life ended.
enum Ended {
    Stop,
    /// The agent crashed: its socket closed without DISCONNECT, so the broker publishes the
    /// last will at once. Reconnect once it heals.
    Dropped,
    /// The agent was cut off (its switch died): nothing more goes over the connection, not
    /// even a keep-alive ping, but nothing closes it either, so the broker notices only when
    /// the keep-alive runs out (1.5 x) and publishes the last will then, as with a real
    /// network outage. Held unpolled until the node heals.
    Frozen(Box<(AsyncClient, rumqttc::EventLoop)>),
}

impl Group {
    fn status_payload(&self, local: usize, state: NodeState) -> Vec<u8> {
        let n = &self.nodes[local];
        let status = match state {
            NodeState::Online => n.birth(now_ms()),
            _ => Status {
                ts: Some(now_ms()),
                state,
                ..Status::last_will()
            },
        };
        serde_json::to_vec(&status).unwrap_or_default()
    }

    fn local(&self, node: usize) -> Option<usize> {
        self.nodes.iter().position(|n| n.index == node)
    }

    fn publish_status(&self, client: &AsyncClient, local: usize, state: NodeState) {
        let n = &self.nodes[local];
        let topic = status_topic(&self.root, &n.site, &n.name);
        let payload = self.status_payload(local, state);
        match client.try_publish(topic, QoS::AtLeastOnce, true, payload) {
            Ok(()) => {
                tracing::debug!(client = %self.client_id, node = %n.name, ?state, "status published");
                self.stats.statuses.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The connection ended without DISCONNECT (an agent's crash, cut off behind its switch,
    /// or a missed keep-alive): an agent's will is published, and the publishes not yet
    /// acknowledged may or may not have reached the broker (those written to the socket did,
    /// and the collector counts them).
    fn lost_connection(&self, published: u64, acked: u64) {
        tracing::debug!(client = %self.client_id, published, acked, "connection lost");
        if self.agent.is_some() {
            self.stats.unclean.fetch_add(1, Ordering::Relaxed);
        }
        if self.qos == QoS::AtLeastOnce {
            self.stats
                .in_doubt
                .fetch_add(published.saturating_sub(acked), Ordering::Relaxed);
        }
    }

    async fn record(&self, local: usize, id: u64, kind: FaultKind) {
        let n = &self.nodes[local];
        let rule = kind.rule();
        let inj = Injected {
            id,
            kind: kind.as_str().to_string(),
            site: n.site.clone(),
            node: n.name.clone(),
            rule: rule.to_string(),
            for_ms: self.rule_for.get(rule).copied().unwrap_or_default(),
            at_ms: now_ms(),
        };
        self.stats.injected.fetch_add(1, Ordering::Relaxed);
        let _ = self.injected.send(inj).await;
    }

    fn options(&self) -> rumqttc::MqttOptions {
        let mut o = self
            .broker
            .options(&self.client_id, self.keep_alive, self.inflight);
        if let Some(a) = self.agent {
            let n = &self.nodes[a];
            let will = serde_json::to_vec(&Status::last_will()).unwrap_or_default();
            o.set_last_will(LastWill::new(
                status_topic(&self.root, &n.site, &n.name),
                will,
                QoS::AtLeastOnce,
                true,
            ));
        }
        o.set_request_channel_capacity(self.nodes.len() * 4 + 16);
        o
    }
}

/// Run one connection until `stop` turns true, then stop as configured; `cmds` brings failures.
pub async fn run(mut g: Group, mut cmds: mpsc::Receiver<Cmd>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = sleep_until(g.connect_at) => {}
        _ = stopped(&mut stop) => return,
    }
    let topics: Vec<String> = g
        .nodes
        .iter()
        .map(|n| report_topic(&g.root, &n.site, &n.name))
        .collect();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = g
        .first_due
        .iter()
        .enumerate()
        .map(|(i, t)| Reverse((*t, i)))
        .collect();
    let interval_s = g.interval.as_secs().max(1) as u32;
    loop {
        match connection(&mut g, &mut cmds, &mut stop, &topics, &mut due, interval_s).await {
            Ended::Stop => return,
            ended @ (Ended::Dropped | Ended::Frozen(_)) => {
                // Dead or unreachable agent: nothing until it heals (or the run ends).
                // A cut-off connection stays open, unpolled, until the node heals.
                let _held = match ended {
                    Ended::Frozen(connection) => Some(connection),
                    _ => None,
                };
                let Some(agent) = g.agent else { return };
                loop {
                    tokio::select! {
                        _ = stopped(&mut stop) => return,
                        cmd = cmds.recv() => match cmd {
                            Some(Cmd::Heal { node }) => {
                                if let Some(l) = g.local(node) {
                                    g.nodes[l].heal();
                                }
                                if !g.nodes[agent].silent() {
                                    break;
                                }
                            }
                            Some(Cmd::Fault { node, kind, id }) => {
                                if let Some(l) = g.local(node) {
                                    g.nodes[l].inject(kind, id);
                                }
                            }
                            Some(Cmd::CutOff { .. }) => {}
                            None => return,
                        },
                    }
                }
            }
        }
    }
}

/// One connection's life: connect, births, reports, commands.
async fn connection(
    g: &mut Group,
    cmds: &mut mpsc::Receiver<Cmd>,
    stop_rx: &mut watch::Receiver<bool>,
    topics: &[String],
    due: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    interval_s: u32,
) -> Ended {
    let (client, mut el) = AsyncClient::new(g.options(), g.nodes.len() * 4 + 16);
    let mut published = 0u64;
    let mut acked = 0u64;
    // Between a CONNACK and the connection's loss: a loss then makes the broker publish the
    // will, which the collector counts like any message.
    let mut connected = false;
    loop {
        let next = due
            .peek()
            .map(|Reverse((t, _))| *t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = stopped(stop_rx) => {
                stop(g, &client, &mut el, published, acked).await;
                return Ended::Stop;
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else {
                    return Ended::Stop;
                };
                match cmd {
                    Cmd::Fault { node, kind, id } => {
                        let Some(l) = g.local(node) else { continue };
                        g.nodes[l].inject(kind, id);
                        if kind == FaultKind::AgentCrash {
                            g.record(l, id, kind).await;
                            if g.agent == Some(l) {
                                // Drop the connection without DISCONNECT: the broker publishes the will.
                                g.lost_connection(published, acked);
                                return Ended::Dropped;
                            }
                            g.publish_status(&client, l, NodeState::Offline);
                            published += 1;
                        }
                    }
                    Cmd::CutOff { node, id } => {
                        let Some(l) = g.local(node) else { continue };
                        g.nodes[l].inject(FaultKind::SwitchDown, id);
                        if g.agent == Some(l) {
                            g.lost_connection(published, acked);
                            return Ended::Frozen(Box::new((client, el)));
                        }
                        g.publish_status(&client, l, NodeState::Offline);
                        published += 1;
                    }
                    Cmd::Heal { node } => {
                        let Some(l) = g.local(node) else { continue };
                        let was_silent = g.nodes[l].silent();
                        g.nodes[l].heal();
                        if was_silent {
                            g.publish_status(&client, l, NodeState::Online);
                            published += 1;
                        }
                    }
                }
            }
            ev = el.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    g.stats.connects.fetch_add(1, Ordering::Relaxed);
                    for l in 0..g.nodes.len() {
                        if !g.nodes[l].silent() {
                            g.publish_status(&client, l, NodeState::Online);
                            published += 1;
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    g.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    g.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    // A connection lost without DISCONNECT (a missed keep-alive on a loaded
                    // machine, say): the broker publishes this agent's will.
                    if std::mem::take(&mut connected) {
                        g.lost_connection(published, acked);
                    }
                    tracing::debug!(client = %g.client_id, error = %e, "connection error; retrying");
                    // Reconnects on the next poll; a stop is seen then.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = sleep_until(next) => {
                let now = Instant::now();
                while let Some(Reverse((t, l))) = due.peek().copied() {
                    if t > now {
                        break;
                    }
                    due.pop();
                    // Keep the node's slot; after a pause (a crash) skip the missed rounds.
                    let mut again = t + g.interval;
                    while again <= now {
                        again += g.interval;
                    }
                    due.push(Reverse((again, l)));
                    if g.nodes[l].silent() {
                        continue;
                    }
                    let generated = g.nodes[l].report(now_ms(), interval_s);
                    let payload = serde_json::to_vec(&generated.report).unwrap_or_default();
                    match client.try_publish(topics[l].clone(), g.qos, false, payload) {
                        Ok(()) => {
                            published += 1;
                            g.stats.reports.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            g.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let (Some(id), Some(f)) = (generated.reveals, g.nodes[l].fault()) {
                        g.record(l, id, f.kind).await;
                    }
                }
            }
        }
    }
}

/// The end of the run: `stopped` statuses (a clean stop), every publish acknowledged, DISCONNECT.
async fn stop(
    g: &mut Group,
    client: &AsyncClient,
    el: &mut rumqttc::EventLoop,
    mut published: u64,
    mut acked: u64,
) {
    if g.clean_stop {
        for l in 0..g.nodes.len() {
            if !g.nodes[l].silent() {
                g.publish_status(client, l, NodeState::Stopped);
                published += 1;
            }
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let qos0 = g.qos == QoS::AtMostOnce;
        while !qos0 && acked < published {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    g.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let _ = client.try_disconnect();
        loop {
            match el.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    // Without DISCONNECT the broker publishes the agent's will (the watcher counts it).
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(client = %g.client_id, error = %e, acked, published, "stopped without DISCONNECT")
        }
        Err(_) => {
            tracing::warn!(client = %g.client_id, acked, published, "no DISCONNECT within 20 s")
        }
    }
}
