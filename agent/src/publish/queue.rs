//! The MQTT task's pure state: what to publish next (births, spooled reports, stops) and which packet ids are in flight.
//!
//! No network I/O: publishes are collected in `outbox` and handed to the event loop by the
//! driver in `mod.rs`; the only I/O is the spool's files.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{Publish, QoS, Request};
use tocsin_protocol::Status;

use super::spool::{Spool, SpoolStats};
use super::{Command, Shared, WINDOW, stopped_status};
use crate::collect::now_ms;

/// A birth waiting to go out ahead of the spool (by topic: its current status is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Urgent(pub(super) String);

/// What a packet id in flight stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    Spooled(u64),
    Birth,
    Stopped,
}

/// What the MQTT task publishes, and the packet ids in flight. No I/O besides the spool;
/// publishes are collected in `outbox` and moved into the event loop by the driver.
pub(super) struct Queue {
    pub(super) spool: Spool,
    pub(super) births: Vec<(String, Status)>,
    /// Births to publish ahead of the spool as soon as the window has room.
    pub(super) urgent: VecDeque<Urgent>,
    pub(super) inflight: HashMap<u16, Item>,
    pub(super) outbox: Vec<Request>,
    pub(super) last_pkid: u16,
    /// Next spool id to send (everything below is in flight or acknowledged).
    pub(super) cursor: u64,
    pub(super) connected: bool,
    pub(super) shared: Arc<Shared>,
    pub(super) broker: String,
}

/// How long a connection must have lasted for the reconnect backoff to start over: a broker
/// that drops the agent right after accepting it (duplicate client id, ACL) is not hammered.
pub(super) const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Spooled reports sent at a clean stop ahead of the `stopped` statuses (the rest wait in
/// the spool for the next start), so a stop stays quick on a slow link.
pub(super) const REPORTS_AT_STOP: usize = 8;

impl Queue {
    pub(super) fn new(
        spool: Spool,
        births: Vec<(String, Status)>,
        shared: Arc<Shared>,
        broker: String,
    ) -> Self {
        Queue {
            spool,
            births,
            urgent: VecDeque::new(),
            inflight: HashMap::new(),
            outbox: Vec::new(),
            last_pkid: 0,
            cursor: 0,
            connected: false,
            shared,
            broker,
        }
    }

    pub(super) fn update_stats(&self) {
        let SpoolStats {
            queued,
            bytes,
            errors,
            dropped,
        } = self.spool.stats();
        self.shared.queued.store(queued, Ordering::Relaxed);
        self.shared.queued_bytes.store(bytes, Ordering::Relaxed);
        self.shared.spool_errors.store(errors, Ordering::Relaxed);
        self.shared.spool_dropped.store(dropped, Ordering::Relaxed);
        self.shared
            .connected
            .store(self.connected, Ordering::Relaxed);
    }

    /// A free packet id (1..=WINDOW).
    ///
    /// # Panics
    /// When all WINDOW ids are in flight: a broken invariant, every caller checks the window.
    pub(super) fn next_pkid(&mut self) -> u16 {
        for _ in 0..WINDOW {
            self.last_pkid = self.last_pkid % WINDOW + 1;
            if !self.inflight.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
        unreachable!("no free packet id with {} in flight", self.inflight.len())
    }

    /// Queue a QoS 1 publish with our own packet id.
    pub(super) fn send(&mut self, topic: &str, payload: Vec<u8>, retain: bool, item: Item) {
        let pkid = self.next_pkid();
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.retain = retain;
        publish.pkid = pkid;
        self.inflight.insert(pkid, item);
        self.outbox.push(Request::Publish(publish));
    }

    pub(super) fn has_room(&self, limit: usize) -> bool {
        self.connected && self.inflight.len() < limit.min(usize::from(WINDOW))
    }

    /// Move births, then spooled messages, into the outbox while the window has room.
    pub(super) fn fill(&mut self) {
        self.fill_births();
        self.fill_spool(usize::from(WINDOW), usize::MAX);
    }

    pub(super) fn fill_births(&mut self) {
        while self.has_room(usize::from(WINDOW)) {
            let Some(Urgent(topic)) = self.urgent.pop_front() else {
                break;
            };
            let Some((_, status)) = self.births.iter_mut().find(|(t, _)| *t == topic) else {
                continue;
            };
            status.ts = Some(now_ms());
            match serde_json::to_vec(status) {
                Ok(payload) => self.send(&topic, payload, true, Item::Birth),
                Err(e) => tracing::error!(error = %e, topic, "cannot serialise a birth status"),
            }
        }
    }

    /// Send at most `max` spooled messages while fewer than `limit` are in flight.
    pub(super) fn fill_spool(&mut self, limit: usize, max: usize) {
        let mut sent = 0;
        while sent < max && self.has_room(limit) {
            let Some(message) = self.spool.next_from(self.cursor) else {
                break;
            };
            self.cursor = message.id + 1;
            self.send(
                &message.topic,
                message.payload,
                message.retain,
                Item::Spooled(message.id),
            );
            sent += 1;
        }
    }

    pub(super) fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Report { topic, payload } => {
                self.spool.push(&topic, false, &payload);
            }
            Command::Birth { topic, status } => {
                match self.births.iter_mut().find(|(t, _)| *t == topic) {
                    Some(birth) => birth.1 = *status,
                    None => self.births.push((topic.clone(), *status)),
                }
                let urgent = Urgent(topic);
                if self.connected && !self.urgent.contains(&urgent) {
                    self.urgent.push_back(urgent);
                }
            }
            Command::ForgetBirth { topic } => {
                self.births.retain(|(t, _)| *t != topic);
                self.urgent.retain(|u| u.0 != topic);
                // Through the spool: after the device's last reports, kept until the broker
                // acknowledged it, across outages and restarts.
                let payload = serde_json::to_vec(&stopped_status()).unwrap_or_default();
                self.spool.push(&topic, true, &payload);
            }
        }
    }

    /// Everything in flight is lost with the connection; it is still in the spool.
    pub(super) fn connection_lost(&mut self) {
        self.connected = false;
        self.inflight.clear();
        self.outbox.clear();
        self.urgent.clear();
        self.cursor = 0;
    }

    pub(super) fn on_connack(&mut self) {
        self.connected = true;
        self.inflight.clear();
        self.outbox.clear();
        self.cursor = 0;
        // Births first, ahead of the backlog; more than the window go out as acks come.
        self.urgent = self.births.iter().map(|(t, _)| Urgent(t.clone())).collect();
    }

    pub(super) fn on_puback(&mut self, pkid: u16) {
        match self.inflight.remove(&pkid) {
            Some(Item::Spooled(id)) => {
                if self.spool.ack(id) {
                    self.shared.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Item::Birth | Item::Stopped) => {}
            None => tracing::debug!(pkid, "PUBACK for a packet id not in flight"),
        }
    }

    /// True while nothing of ours is in flight: only then may the event loop's `poll()` be
    /// cancelled (it could be mid-write otherwise).
    pub(super) fn idle(&self) -> bool {
        self.connected && self.inflight.is_empty() && self.outbox.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(dir: &std::path::Path) -> Queue {
        Queue::new(
            Spool::open(dir, 1 << 20),
            Vec::new(),
            Arc::new(Shared::default()),
            String::new(),
        )
    }

    fn outbox(q: &Queue) -> Vec<(String, bool, Vec<u8>)> {
        q.outbox
            .iter()
            .filter_map(|r| match r {
                Request::Publish(p) => Some((p.topic.clone(), p.retain, p.payload.to_vec())),
                _ => None,
            })
            .collect()
    }

    fn topics(q: &Queue) -> Vec<String> {
        outbox(q).into_iter().map(|(t, _, _)| t).collect()
    }

    #[test]
    fn births_go_first_even_beyond_the_window_and_removed_devices_say_stopped_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = queue(dir.path());
        q.spool.push("r/agent", false, b"report");
        for i in 0..40 {
            q.handle(Command::Birth {
                topic: format!("s/dev-{i}"),
                status: Box::new(stopped_status()),
            });
        }
        // Not connected yet: nothing is sent, births wait for the ConnAck.
        q.fill();
        assert!(q.outbox.is_empty());
        q.on_connack();
        q.fill();
        let sent = topics(&q);
        assert_eq!(sent.len(), usize::from(WINDOW));
        assert!(sent.iter().all(|t| t.starts_with("s/dev-")), "{sent:?}");
        // Acks make room: the remaining births, then the report.
        let pkids: Vec<u16> = q.inflight.keys().copied().collect();
        for pkid in pkids {
            q.on_puback(pkid);
        }
        q.outbox.clear();
        q.fill();
        let sent = topics(&q);
        assert_eq!(sent.len(), 9, "{sent:?}");
        assert_eq!(sent.last().map(String::as_str), Some("r/agent"));
        // A device removed by a reload: its last report, then its retained `stopped`, in
        // spool order; its birth is not announced again.
        q.handle(Command::Report {
            topic: "r/dev-3".into(),
            payload: b"last words".to_vec(),
        });
        q.handle(Command::ForgetBirth {
            topic: "s/dev-3".into(),
        });
        assert!(!q.births.iter().any(|(t, _)| t == "s/dev-3"));
        q.outbox.clear();
        q.fill();
        let sent = outbox(&q);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!((sent[0].0.as_str(), sent[0].1), ("r/dev-3", false));
        assert_eq!((sent[1].0.as_str(), sent[1].1), ("s/dev-3", true));
        assert!(String::from_utf8_lossy(&sent[1].2).contains("\"stopped\""));
        // Lost before the acks: after the reconnect, births again, then the same order.
        q.connection_lost();
        q.on_connack();
        let mut all = Vec::new();
        loop {
            q.fill();
            if q.outbox.is_empty() {
                break;
            }
            all.extend(topics(&q));
            q.outbox.clear();
            let pkids: Vec<u16> = q.inflight.keys().copied().collect();
            for pkid in pkids {
                q.on_puback(pkid);
            }
        }
        let at = |t: &str| all.iter().position(|x| x == t).expect(t);
        assert_eq!(all.iter().filter(|t| *t == "s/dev-3").count(), 1, "{all:?}");
        assert!(at("r/dev-3") < at("s/dev-3"), "{all:?}");
        assert!(at("s/dev-0") < at("r/agent"), "births first: {all:?}");
        assert!(q.spool.is_empty());
    }

    #[test]
    fn packet_ids_stay_in_the_window_and_skip_those_in_flight() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = queue(dir.path());
        q.connected = true;
        for i in 0..100u64 {
            q.spool.push("t", false, format!("{i}").as_bytes());
        }
        q.fill();
        assert_eq!(q.inflight.len(), usize::from(WINDOW));
        assert!(q.inflight.keys().all(|&p| (1..=WINDOW).contains(&p)));
        // Acks out of order free ids; the spool loses exactly the acknowledged reports.
        q.on_puback(5);
        q.on_puback(2);
        q.on_puback(2); // a duplicate ack changes nothing
        assert_eq!(q.spool.len(), 98);
        assert_eq!(q.shared.acked.load(Ordering::Relaxed), 2);
        q.fill();
        assert_eq!(q.inflight.len(), usize::from(WINDOW));
        let mut ids: Vec<u64> = q
            .inflight
            .values()
            .filter_map(|i| match i {
                Item::Spooled(id) => Some(*id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), usize::from(WINDOW));
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&34));
        // A lost connection sends everything unacknowledged again, oldest first.
        q.connection_lost();
        assert!(q.inflight.is_empty() && q.outbox.is_empty());
        q.on_connack();
        q.fill();
        assert_eq!(outbox(&q).first().map(|m| m.2.clone()), Some(b"0".to_vec()));
    }
}
