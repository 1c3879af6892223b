//! MQTT delivery: the JSON payload on `<root>/v1/events/<target topic>/<event>`.
//!
//! One long-lived client (its own client id, `<collector id>-notify`, clean session) and
//! one task driving its event loop, connected at the first publish. A publish counts as
//! delivered when the broker acknowledged it: PUBACK for QoS 1, PUBREC for QoS 2 (the
//! broker has stored it from then on); QoS 0 once written to the connection. The task
//! matches acknowledgements to publishes by packet id: rumqttc assigns ids in the order
//! publishes are handed to it, and this task is the only one handing them.
//!
//! Publishes arriving while the client connects wait for it; a failed connection attempt
//! fails them at once, and a connection lost before the acknowledgement fails the ones
//! handed over, so the dispatcher retries them later (at least once).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use super::SendError;
use crate::engine::targets::MqttTarget;
use crate::store::PendingNotification;

/// Longest one publish may wait for the connection and the broker's acknowledgement.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes handed to the client and not yet acknowledged, at most.
const IN_FLIGHT: usize = 32;
/// Queue of publishes waiting for the task.
const QUEUE: usize = 64;

/// `<root>/v1/events/<topic>/<event>`; refuses an event that would not be one topic level.
pub fn event_topic(root: &str, topic: &str, event: &str) -> Result<String, SendError> {
    if event.is_empty() || event.contains(['/', '+', '#']) {
        return Err(SendError::Permanent(format!(
            "event {event:?} cannot be an MQTT topic level"
        )));
    }
    Ok(tocsin_protocol::event_topic(
        root,
        &format!("{topic}/{event}"),
    ))
}

pub(super) type Reply = oneshot::Sender<Result<(), String>>;

struct Job {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    reply: Reply,
}

/// Hands publishes to the task.
#[derive(Debug, Clone)]
pub struct MqttSender {
    jobs: mpsc::Sender<Job>,
    place: String,
}

/// The task owning the client and its event loop; ends (disconnecting) when every
/// [`MqttSender`] is dropped.
pub struct MqttTask {
    opts: MqttOptions,
    jobs: mpsc::Receiver<Job>,
}

impl MqttSender {
    /// A sender and the task to spawn for it.
    pub fn new(opts: MqttOptions) -> (MqttSender, MqttTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (host, port) = opts.broker_address();
        (
            MqttSender {
                jobs: tx,
                place: format!("mqtt {host}:{port}"),
            },
            MqttTask { opts, jobs: rx },
        )
    }

    /// Publish `n`'s payload on `topic` with the target's QoS and retain flag.
    pub async fn publish(
        &self,
        topic: String,
        target: &MqttTarget,
        n: &PendingNotification,
    ) -> Result<(), SendError> {
        let qos = match target.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            q => {
                return Err(SendError::Permanent(format!("qos {q} is not 0, 1 or 2")));
            }
        };
        let payload = serde_json::to_vec(&n.payload)
            .map_err(|e| SendError::Permanent(format!("payload: {e}")))?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic: topic.clone(),
            payload,
            qos,
            retain: target.retain,
            reply,
        };
        let place = &self.place;
        let result = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            self.jobs
                .send(job)
                .await
                .map_err(|_| "the MQTT publisher stopped".to_string())?;
            answer
                .await
                .map_err(|_| "the MQTT publisher stopped".to_string())?
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::Retry(format!("{place} {topic}: {e}"))),
            Err(_) => Err(SendError::Retry(format!(
                "{place} {topic}: not acknowledged within {}s (broker unreachable?)",
                PUBLISH_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Publishes handed to the client and waiting for their acknowledgement.
#[derive(Default)]
pub(super) struct Acks {
    /// Handed over, packet id not known yet (in the order they were handed).
    handed: VecDeque<(QoS, Reply)>,
    /// Sent, by packet id.
    sent: HashMap<u16, Reply>,
    /// Sent while its packet id was still taken; goes out when that one is acknowledged.
    collided: Option<(u16, Reply)>,
}

impl Acks {
    /// A publish was handed to the client (its packet id comes with its `Outgoing` event).
    pub(super) fn handed(&mut self, qos: QoS, reply: Reply) {
        self.handed.push_back((qos, reply));
    }

    pub(super) fn len(&self) -> usize {
        self.handed.len() + self.sent.len() + usize::from(self.collided.is_some())
    }

    /// An outgoing publish with packet id `pkid` was written to the connection.
    pub(super) fn written(&mut self, pkid: u16) {
        // The collided publish goes out once its packet id was acknowledged.
        if self.collided.as_ref().is_some_and(|(id, _)| *id == pkid)
            && !self.sent.contains_key(&pkid)
            && let Some((_, reply)) = self.collided.take()
        {
            self.sent.insert(pkid, reply);
            return;
        }
        let Some((qos, reply)) = self.handed.pop_front() else {
            return;
        };
        if qos == QoS::AtMostOnce {
            let _ = reply.send(Ok(()));
        } else {
            self.sent.insert(pkid, reply);
        }
    }

    /// The next publish could not go out yet: its packet id `pkid` is still unacknowledged.
    pub(super) fn await_ack(&mut self, pkid: u16) {
        if let Some((_, reply)) = self.handed.pop_front() {
            self.collided = Some((pkid, reply));
        }
    }

    pub(super) fn acknowledged(&mut self, pkid: u16) {
        if let Some(reply) = self.sent.remove(&pkid) {
            let _ = reply.send(Ok(()));
        }
    }

    /// The connection is gone: nothing handed over will be acknowledged.
    pub(super) fn fail_all(&mut self, why: &str) {
        let replies = self
            .handed
            .drain(..)
            .map(|(_, r)| r)
            .chain(self.sent.drain().map(|(_, r)| r))
            .chain(self.collided.take().map(|(_, r)| r));
        for r in replies {
            let _ = r.send(Err(why.to_string()));
        }
    }
}

/// One turn of the event loop, after `delay`; owns the loop so the turn is never cut short
/// (a dropped `poll` could lose a connection attempt or an event).
async fn step(
    mut eventloop: EventLoop,
    delay: Duration,
) -> (EventLoop, Result<Event, ConnectionError>) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let event = eventloop.poll().await;
    (eventloop, event)
}

impl MqttTask {
    /// Drive the connection until every sender is dropped, then disconnect.
    pub async fn run(mut self) {
        // Wait for the first publish before connecting: no targets, no connection.
        let Some(first) = self.jobs.recv().await else {
            return;
        };
        let mut opts = self.opts;
        // A fresh session: a publish not acknowledged before a reconnect is failed and
        // retried by the dispatcher instead of being replayed by the client as well.
        opts.set_clean_session(true);
        opts.set_manual_acks(false);
        let (client, eventloop) = AsyncClient::new(opts, QUEUE);
        let mut turn = Box::pin(step(eventloop, Duration::ZERO));
        let mut acks = Acks::default();
        let mut waiting: VecDeque<Job> = VecDeque::from([first]);
        let mut connected = false;
        let mut backoff = Duration::from_millis(500);
        loop {
            // Publishes are handed to the client only while connected, and only from here:
            // the order of `Outgoing::Publish` events is the order of `acks.handed`.
            if connected {
                while acks.len() < IN_FLIGHT {
                    let Some(job) = waiting.pop_front() else {
                        break;
                    };
                    if job.reply.is_closed() {
                        continue; // its attempt timed out already
                    }
                    match client.try_publish(job.topic, job.qos, job.retain, job.payload) {
                        Ok(()) => acks.handed(job.qos, job.reply),
                        Err(e) => {
                            let _ = job.reply.send(Err(format!("cannot publish: {e}")));
                        }
                    }
                }
            }
            // Attempts that timed out waiting for the connection are dropped here.
            waiting.retain(|j| !j.reply.is_closed());
            let next = tokio::select! {
                job = self.jobs.recv() => match job {
                    Some(job) => {
                        waiting.push_back(job);
                        None
                    }
                    // Every sender is gone, so nobody waits for an answer any more.
                    None => break,
                },
                (eventloop, event) = &mut turn => {
                    let mut delay = Duration::ZERO;
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connected = true;
                            backoff = Duration::from_millis(500);
                            tracing::info!("notifications: connected to the MQTT broker");
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => acks.written(pkid),
                        Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => acks.await_ack(pkid),
                        Ok(Event::Incoming(Packet::PubAck(a))) => acks.acknowledged(a.pkid),
                        Ok(Event::Incoming(Packet::PubRec(r))) => acks.acknowledged(r.pkid),
                        Ok(_) => {}
                        Err(e) => {
                            // The client dropped what it had not sent; with a clean session
                            // nothing is replayed after the reconnect.
                            acks.fail_all(&format!(
                                "connection to the broker lost before it acknowledged: {e}"
                            ));
                            // Waiting publishes learn at once that the broker cannot be reached.
                            for job in waiting.drain(..) {
                                let _ = job.reply.send(Err(format!("cannot reach the broker: {e}")));
                            }
                            if connected {
                                tracing::warn!(error = %e, "notifications: MQTT connection lost; reconnecting");
                            } else {
                                tracing::debug!(error = %e, "notifications: cannot connect to the MQTT broker");
                            }
                            connected = false;
                            delay = backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                    Some((eventloop, delay))
                }
            };
            if let Some((eventloop, delay)) = next {
                turn = Box::pin(step(eventloop, delay));
            }
        }
        if connected {
            let _ = client.try_disconnect();
            // Let the event loop write the DISCONNECT.
            let _ = tokio::time::timeout(Duration::from_millis(500), async move {
                let (mut eventloop, mut event) = turn.await;
                while !matches!(event, Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {
                    event = eventloop.poll().await;
                }
            })
            .await;
        }
    }
}
