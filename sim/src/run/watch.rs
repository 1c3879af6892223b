//! The watcher: a subscriber to the collector's `ticket.opened` events, noting when each
//! arrived, and to every node status, counting the last wills the broker published.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeFilter};
use tocsin_protocol::{NodeState, Status};
use tokio::sync::{oneshot, watch};

use super::Stats;
use super::group::stopped;
use crate::latency::{TicketSeen, parse_ticket_event};
use crate::mqtt::{Broker, now_ms};

/// Tickets kept at most (one per injected failure is what matters).
const MAX_SEEN: usize = 1_000_000;

/// What the watcher subscribes to.
#[derive(Debug, Clone)]
pub struct Filters {
    /// `<root>/v1/+/+/status`: every node status, for the last wills.
    pub statuses: String,
    /// The collector's `ticket.opened` events, when watched.
    pub tickets: Option<String>,
}

/// A last will as an agent sets it: offline, and no time (a status the simulator publishes
/// itself always carries one).
pub fn is_last_will(payload: &[u8]) -> bool {
    serde_json::from_slice::<Status>(payload)
        .is_ok_and(|s| s.state == NodeState::Offline && s.ts.is_none())
}

/// Subscribe to `filters`, tell `ready` once subscribed, then until `stop` collect ticket
/// events into `seen` and count last wills in `stats.wills` (and lost connections in
/// `stats.watch_reconnects`: wills published meanwhile are not seen).
pub async fn run(
    broker: Broker,
    filters: Filters,
    client_id: String,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
    seen: Arc<Mutex<Vec<TicketSeen>>>,
    stats: Arc<Stats>,
) {
    let opts = broker.options(&client_id, Duration::from_secs(30), 100);
    let (client, mut el) = AsyncClient::new(opts, 16);
    let mut subscriptions = vec![SubscribeFilter::new(
        filters.statuses.clone(),
        QoS::AtLeastOnce,
    )];
    if let Some(t) = &filters.tickets {
        subscriptions.push(SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
    }
    let mut ready = Some(ready);
    let mut connected = false;
    loop {
        let ev = tokio::select! {
            _ = stopped(&mut stop) => break,
            ev = el.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                if let Err(e) = client.try_subscribe_many(subscriptions.clone()) {
                    tracing::warn!(error = %e, "cannot subscribe to statuses and ticket events");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let arrived = now_ms();
                if p.topic.ends_with("/status") {
                    if is_last_will(&p.payload) {
                        stats.wills.fetch_add(1, Ordering::Relaxed);
                    }
                } else if let Some(t) = parse_ticket_event(&p.payload, arrived)
                    && let Ok(mut s) = seen.lock()
                    && s.len() < MAX_SEEN
                {
                    s.push(t);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if std::mem::take(&mut connected) {
                    stats.watch_reconnects.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "watcher: connection error; retrying");
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_will_is_offline_without_a_time() {
        let will = serde_json::to_vec(&Status::last_will()).expect("json");
        assert!(is_last_will(&will));
        let announced = Status {
            ts: Some(1_000),
            ..Status::last_will()
        };
        assert!(!is_last_will(
            &serde_json::to_vec(&announced).expect("json")
        ));
        let stopped = Status {
            state: NodeState::Stopped,
            ..Status::last_will()
        };
        assert!(!is_last_will(&serde_json::to_vec(&stopped).expect("json")));
        assert!(!is_last_will(b"not json"));
    }
}
