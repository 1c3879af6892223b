//! MQTT publishing: last will, retained birth status on every connect, reports, clean stop.
//!
//! A [`Publisher`] owns a background task that drives the rumqttc event loop, reconnecting
//! with backoff (1 s doubling to 30 s, reset on ConnAck). Reports are handed over with a
//! non-blocking enqueue into a bounded queue, so a dead broker never blocks collection; what
//! does not fit, or is lost with a broken connection, is counted in [`Publisher::dropped`].
//! [`Publisher::shutdown`] publishes the retained `stopped` status, waits (bounded) for its
//! PubAck and disconnects cleanly so the broker does not send the last will.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS, Request,
};
use tocsin_protocol::{MAX_PAYLOAD_BYTES, NodeState, Report, Status};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::collect::now_ms;
use crate::config::AgentConfig;

/// Requests that may wait in the client queue (reports while the broker is unreachable).
pub const QUEUE_CAPACITY: usize = 100;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Pause between reconnect attempts while stopping (the whole stop is bounded by its caller).
const STOP_RETRY: Duration = Duration::from_millis(100);

/// Why a report was not handed to the MQTT client.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish queue is full ({QUEUE_CAPACITY} messages waiting for the broker)")]
    QueueFull,
    #[error("report is {0} bytes, over the protocol limit of {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge(usize),
    #[error("cannot serialise: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// `stopped` was acknowledged and the connection closed with DISCONNECT.
    Clean,
    /// No acknowledgement in time: the connection was dropped (the broker sends the last will).
    TimedOut,
}

#[derive(Debug, Default)]
struct Counters {
    /// Publish requests handed to the client that the event loop has not written yet.
    queued: AtomicUsize,
    /// Reports that never reached the broker (queue full, too large, lost on disconnect).
    dropped: AtomicU64,
}

impl Counters {
    /// Decrement `queued` (never below 0); returns the value before.
    fn dequeued(&self) -> usize {
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                Some(q.saturating_sub(1))
            })
            .unwrap_or(0)
    }
}

/// Enqueue one QoS 1 publish without waiting; false if the queue is full.
fn enqueue(
    client: &AsyncClient,
    counters: &Counters,
    topic: &str,
    retain: bool,
    payload: Vec<u8>,
) -> bool {
    counters.queued.fetch_add(1, Ordering::SeqCst);
    match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        Ok(()) => true,
        Err(_) => {
            counters.dequeued();
            false
        }
    }
}

/// The retained `stopped` status.
pub fn stopped_status() -> Status {
    Status {
        state: NodeState::Stopped,
        ts: Some(now_ms()),
        ..Status::last_will()
    }
}

/// MQTT options for an agent config: client id, keep-alive, credentials, last will.
pub fn mqtt_options(config: &AgentConfig, password: Option<String>) -> MqttOptions {
    let url = &config.broker.url;
    let mut options = MqttOptions::new(config.client_id(), url.host.clone(), url.port);
    options.set_keep_alive(config.broker.keep_alive);
    options.set_clean_session(true);
    // Topic and header overhead on top of the largest payload the protocol accepts.
    options.set_max_packet_size(MAX_PAYLOAD_BYTES + 4096, MAX_PAYLOAD_BYTES + 4096);
    if let Some(user) = &config.broker.username {
        options.set_credentials(user.clone(), password.unwrap_or_default());
    }
    let will = serde_json::to_vec(&Status::last_will()).unwrap_or_default();
    options.set_last_will(LastWill::new(
        config.status_topic(),
        will,
        QoS::AtLeastOnce,
        true,
    ));
    options
}

/// Publishes one agent's status and reports.
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    report_topic: String,
    counters: Arc<Counters>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<StopOutcome>>,
}

impl Publisher {
    /// Start the connection task. Returns at once; connecting happens in the background.
    /// `birth` is published retained on every ConnAck, with a fresh `ts`.
    pub fn start(config: &AgentConfig, password: Option<String>, birth: Status) -> Self {
        let (client, eventloop) = AsyncClient::new(mqtt_options(config, password), QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(drive(
            eventloop,
            client.clone(),
            Arc::clone(&counters),
            config.status_topic(),
            config.broker.url.to_string(),
            birth,
            stop_rx,
        ));
        Publisher {
            client,
            report_topic: config.report_topic(),
            counters,
            stop_tx: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Hand a report to the client without waiting. An error means it was dropped (counted).
    pub fn publish_report(&self, report: &Report) -> Result<(), PublishError> {
        let result = serde_json::to_vec(report)
            .map_err(PublishError::from)
            .and_then(|payload| {
                if payload.len() > MAX_PAYLOAD_BYTES {
                    return Err(PublishError::TooLarge(payload.len()));
                }
                if enqueue(
                    &self.client,
                    &self.counters,
                    &self.report_topic,
                    false,
                    payload,
                ) {
                    Ok(())
                } else {
                    Err(PublishError::QueueFull)
                }
            });
        if result.is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Reports dropped so far (queue full, too large, or lost with a broken connection).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Publish the retained `stopped` status, wait up to `timeout` for its PubAck, then
    /// disconnect cleanly. Past the timeout the connection is dropped instead, and the broker
    /// publishes the last will (`offline`): never a stale `online`.
    pub async fn shutdown(mut self, timeout: Duration) -> StopOutcome {
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return StopOutcome::TimedOut;
        };
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "MQTT task failed");
                StopOutcome::TimedOut
            }
            Err(_) => {
                task.abort();
                let _ = task.await;
                tracing::warn!(
                    "broker did not acknowledge the stopped status within {timeout:?}; dropping the connection (the broker will announce offline)"
                );
                StopOutcome::TimedOut
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Drive the event loop until asked to stop, then run the stop sequence.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    counters: Arc<Counters>,
    status_topic: String,
    broker: String,
    mut birth: Status,
    mut stop_rx: oneshot::Receiver<()>,
) -> StopOutcome {
    let mut backoff = BACKOFF_START;
    let mut failures: u64 = 0;
    loop {
        let connected = eventloop.network.is_some();
        let inflight_before = usize::from(eventloop.state.inflight());
        let event = tokio::select! {
            biased;
            _ = &mut stop_rx => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(%broker, "connected to broker");
                backoff = BACKOFF_START;
                failures = 0;
                // The birth goes out first, ahead of reports queued while disconnected: it
                // is put at the front of the event loop's own queue (empty after a ConnAck
                // of a clean session), which also never refuses it for being full.
                birth.ts = Some(now_ms());
                match serde_json::to_vec(&birth) {
                    Ok(payload) => {
                        let mut publish = Publish::new(&status_topic, QoS::AtLeastOnce, payload);
                        publish.retain = true;
                        counters.queued.fetch_add(1, Ordering::SeqCst);
                        eventloop.pending.push_front(Request::Publish(publish));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serialise the birth status"),
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.dequeued();
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    // A broken connection: the event loop moved everything queued and in
                    // flight into its session, which a clean session discards on reconnect.
                    // (A failed connect attempt leaves the queue alone.)
                    let lost = counters.queued.swap(0, Ordering::SeqCst) + inflight_before;
                    eventloop.state.events.clear();
                    if lost > 0 {
                        counters.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                        tracing::warn!(lost, "messages lost with the broker connection");
                    }
                }
                failures += 1;
                // Warn on the first failure and then every tenth, not every retry.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(%broker, error = %e, "broker connection failed; retrying in {backoff:?}");
                } else {
                    tracing::debug!(%broker, error = %e, failures, "broker connection failed; retrying in {backoff:?}");
                }
                tokio::select! {
                    biased;
                    _ = &mut stop_rx => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
    }
    stop(eventloop, client, counters, status_topic).await
}

/// Publish `stopped`, wait for its PubAck, send DISCONNECT. Unbounded here: the caller aborts.
async fn stop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    counters: Arc<Counters>,
    status_topic: String,
) -> StopOutcome {
    let payload = serde_json::to_vec(&stopped_status()).unwrap_or_default();
    let mut stop_queued = false;
    let mut stop_pkid: Option<u16> = None;
    let mut disconnect_queued = false;
    loop {
        if !stop_queued && eventloop.network.is_some() {
            // Nothing else is enqueued from now on, so `stopped` is the last publish in line.
            stop_queued = enqueue(&client, &counters, &status_topic, true, payload.clone());
        }
        let connected = eventloop.network.is_some();
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let before = counters.dequeued();
                if stop_queued && before <= 1 && stop_pkid.is_none() {
                    stop_pkid = Some(pkid);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) if Some(ack.pkid) == stop_pkid => {
                tracing::debug!("stopped status acknowledged");
                disconnect_queued = client.try_disconnect().is_ok();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if disconnect_queued => {
                tracing::info!("disconnected from broker");
                return StopOutcome::Clean;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "broker connection failed while stopping");
                if connected {
                    counters.queued.store(0, Ordering::SeqCst);
                    eventloop.state.events.clear();
                    stop_queued = false;
                    stop_pkid = None;
                    disconnect_queued = false;
                }
                tokio::time::sleep(STOP_RETRY).await;
            }
        }
        if stop_pkid.is_some() && !disconnect_queued && eventloop.state.inflight() == 0 {
            // Acknowledged while the disconnect could not be queued: try again.
            disconnect_queued = client.try_disconnect().is_ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_last_will_and_identity() {
        let mut config = AgentConfig::new("dc1", "web-01");
        config.broker.username = Some("agent".into());
        let options = mqtt_options(&config, Some("secret".into()));
        assert_eq!(options.client_id(), "tocsin-agent-dc1-web-01");
        assert_eq!(options.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert_eq!(options.keep_alive(), Duration::from_secs(30));
        let will = options.last_will().expect("last will");
        assert_eq!(will.topic, "tocsin/v1/dc1/web-01/status");
        assert_eq!(&will.message[..], br#"{"v":1,"state":"offline"}"#);
        assert!(will.retain);
        assert_eq!(will.qos, QoS::AtLeastOnce);
        let login = options.credentials().expect("credentials");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("agent", "secret")
        );
    }

    #[test]
    fn stopped_status_shape() {
        let s = stopped_status();
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["v"], 1);
        assert_eq!(json["state"], "stopped");
        assert!(json["ts"].as_i64().is_some_and(|ts| ts > 0));
        s.validate().expect("valid");
    }

    #[tokio::test]
    async fn a_dead_broker_never_blocks_publishing() {
        // Nothing listens on this port: reports queue up to the capacity, then are dropped.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut config = AgentConfig::new("dc1", "web-01");
        config.broker.url.port = port;
        let publisher = Publisher::start(&config, None, stopped_status());
        let report = crate::collect::build_report(&config, 1, now_ms(), Vec::new(), Vec::new());
        let start = std::time::Instant::now();
        let mut refused = 0;
        for _ in 0..(QUEUE_CAPACITY + 20) {
            if publisher.publish_report(&report).is_err() {
                refused += 1;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(refused >= 20, "refused {refused}");
        assert_eq!(publisher.dropped(), refused as u64);
        let outcome = publisher.shutdown(Duration::from_millis(300)).await;
        assert_eq!(outcome, StopOutcome::TimedOut);
    }
}
