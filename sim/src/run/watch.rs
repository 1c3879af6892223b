//! The ticket watcher: a subscriber to the collector's `ticket.opened` events that notes when each arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{oneshot, watch};

use super::group::stopped;
use crate::latency::{TicketSeen, parse_ticket_event};
use crate::mqtt::{Broker, now_ms};

/// Tickets kept at most (one per injected failure is what matters).
const MAX_SEEN: usize = 1_000_000;

/// Subscribe to `filter`, tell `ready` once subscribed, collect ticket events until `stop`.
pub async fn run(
    broker: Broker,
    filter: String,
    client_id: String,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
    seen: Arc<Mutex<Vec<TicketSeen>>>,
) {
    let opts = broker.options(&client_id, Duration::from_secs(30), 100);
    let (client, mut el) = AsyncClient::new(opts, 16);
    let mut ready = Some(ready);
    loop {
        let ev = tokio::select! {
            _ = stopped(&mut stop) => break,
            ev = el.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    tracing::warn!(error = %e, "cannot subscribe to ticket events");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let arrived = now_ms();
                if let Some(t) = parse_ticket_event(&p.payload, arrived)
                    && let Ok(mut s) = seen.lock()
                    && s.len() < MAX_SEEN
                {
                    s.push(t);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "ticket watcher: connection error; retrying");
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}
