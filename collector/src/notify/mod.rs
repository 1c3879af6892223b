//! Delivery of the durable notification outbox: pending rows out to webhooks, e-mail and MQTT.
//!
//! The engine writes every notification as a `pending` row in the transaction of the event
//! that made it. This task reads the due rows (`next_attempt_at <= now`, oldest first) at
//! start, every 500 ms and whenever the writer says it committed new ones, and sends each
//! with bounded concurrency (`[notify] concurrency` sends at once). A row being sent is in
//! the in-flight set until the mark of its attempt is committed, so it is never sent twice
//! at once; waiting for that commit does not hold a send's place, so a burst of events (a
//! switch down: a symptom event per host behind it) is not sent one writer batch at a
//! time. The marks go through the store writer ([`OutboxUpdate`] in a [`WriteMsg`]):
//! `delivered`, or another attempt after an exponential backoff, or `failed` after a
//! permanent error or the last attempt.
//!
//! Delivery is at least once: a crash between a send and its mark sends the row again after
//! the restart, with the same idempotency key, so receivers can drop the repeat.

pub mod email;
pub mod mqtt;
pub mod webhook;

#[cfg(test)]
mod channel_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::config::{NotifyConfig, SmtpConfig};
use crate::engine::targets::NotifyPolicy;
use crate::metrics::NotifyStats;
use crate::store::{OutboxUpdate, Outcome, PendingNotification, Reader, WriteMsg};
use crate::time::{Millis, millis, now_millis};

/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_millis(500);
/// Rows in flight (sending, or sent and waiting for their mark's commit) per concurrent send.
const IN_FLIGHT_PER_SEND: usize = 16;
/// How long sends in flight may finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why delivery could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("[smtp]: {0}")]
    Smtp(String),
    #[error("TLS setup for webhooks failed: {0}")]
    Tls(String),
    #[error("{path}: cannot read the SMTP password: {source}")]
    SmtpPassword {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Trying again will not help (refused by the receiver, target gone, bad address).
    Permanent(String),
    /// Worth another attempt later (unreachable, timeout, server error).
    Retry(String),
}

impl SendError {
    pub fn message(&self) -> &str {
        match self {
            SendError::Permanent(m) | SendError::Retry(m) => m,
        }
    }
}

/// The pause after the `failures`-th failed attempt: `initial`, doubled each time, at most `max`.
pub fn backoff(config: &NotifyConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    config
        .backoff_initial
        .checked_mul(1u32 << doublings)
        .unwrap_or(config.backoff_max)
        .min(config.backoff_max)
}

/// The mark of an attempt on `row` that ended with `result` at `now`.
pub fn decide(
    config: &NotifyConfig,
    row: &PendingNotification,
    result: &Result<(), SendError>,
    now: Millis,
) -> OutboxUpdate {
    let attempts = row.attempts.saturating_add(1);
    let (outcome, last_error) = match result {
        Ok(()) => (Outcome::Delivered { at: now }, None),
        Err(SendError::Permanent(e)) => (Outcome::Failed { at: now }, Some(e.clone())),
        Err(SendError::Retry(e)) if attempts >= i64::from(config.max_attempts) => (
            Outcome::Failed { at: now },
            Some(format!("{e} (gave up after {attempts} attempts)")),
        ),
        Err(SendError::Retry(e)) => {
            let failures = u32::try_from(attempts).unwrap_or(u32::MAX);
            (
                Outcome::Retry {
                    next_attempt_at: now.saturating_add(millis(backoff(config, failures))),
                },
                Some(e.clone()),
            )
        }
    };
    OutboxUpdate {
        id: row.id,
        attempts,
        last_error,
        outcome,
    }
}

/// What the delivery task needs.
pub struct NotifyDeps<A> {
    pub config: NotifyConfig,
    /// `[smtp]`; None: e-mail notifications fail with a reason.
    pub smtp: Option<SmtpConfig>,
    /// The policy's targets as of now (replaced on reload).
    pub targets: watch::Receiver<Arc<NotifyPolicy>>,
    /// MQTT topic root (`tocsin`).
    pub topic_root: String,
    /// Options for the publishing connection (its own client id); None: MQTT targets fail.
    pub mqtt: Option<rumqttc::MqttOptions>,
    pub reader: Reader,
    /// The store writer, which applies the marks.
    pub write: mpsc::Sender<WriteMsg<A>>,
    /// Poked by the writer after it committed new notifications.
    pub wake: Arc<Notify>,
    pub stats: Arc<NotifyStats>,
}

impl<A> std::fmt::Debug for NotifyDeps<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyDeps")
            .field("config", &self.config)
            .field("topic_root", &self.topic_root)
            .finish_non_exhaustive()
    }
}

/// The channels' senders, shared by the sends in flight.
struct Senders {
    webhook: webhook::WebhookSender,
    email: Option<email::EmailSender>,
    mqtt: Option<mqtt::MqttSender>,
    topic_root: String,
}

/// The delivery task, ready to run.
pub struct Dispatcher<A> {
    deps: NotifyDeps<A>,
    senders: Arc<Senders>,
    mqtt_task: Option<mqtt::MqttTask>,
}

impl<A> std::fmt::Debug for Dispatcher<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

impl<A: Send + 'static> Dispatcher<A> {
    /// Set up the channels (reads the SMTP password file); nothing connects yet.
    pub fn new(deps: NotifyDeps<A>) -> Result<Self, NotifyError> {
        let email = deps
            .smtp
            .as_ref()
            .map(email::EmailSender::new)
            .transpose()?;
        let (mqtt, mqtt_task) = match deps.mqtt.clone() {
            Some(opts) => {
                let (sender, task) = mqtt::MqttSender::new(opts);
                (Some(sender), Some(task))
            }
            None => (None, None),
        };
        let senders = Arc::new(Senders {
            webhook: webhook::WebhookSender::new()?,
            email,
            mqtt,
            topic_root: deps.topic_root.clone(),
        });
        Ok(Dispatcher {
            deps,
            senders,
            mqtt_task,
        })
    }

    /// Deliver until `shutdown` fires (or the writer is gone); then take no new rows, give the
    /// sends in flight a few seconds to finish and have their marks stored, and stop.
    pub async fn run(self, mut shutdown: broadcast::Receiver<()>) {
        let Dispatcher {
            deps,
            senders,
            mqtt_task,
        } = self;
        let mqtt_handle = mqtt_task.map(|t| tokio::spawn(t.run()));
        let concurrency = deps.config.concurrency.max(1);
        // `concurrency` sends at once; each row then waits for its mark's commit (about a
        // writer batch, 100-200 ms under load) without holding a send's place. With the
        // place held until the commit, 40 symptom events of a switch going down kept the
        // tickets opened right after them waiting 1.1 s at 50,000 nodes (BENCHMARKS.md).
        let sends = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let max_in_flight = concurrency.saturating_mul(IN_FLIGHT_PER_SEND);
        let mut tasks: JoinSet<Result<(), WriterGone>> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, i64> = HashMap::new();
        // Rows whose send panicked: not tried again until a restart.
        let mut held: HashSet<i64> = HashSet::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut read_error_logged_at: Option<tokio::time::Instant> = None;
        let mut writer_gone = false;
        loop {
            // Every wake-up (start, a finished send, the writer's poke, the poll) is a look.
            if tasks.len() < max_in_flight {
                let skip: Vec<i64> = in_flight.values().chain(&held).copied().collect();
                let free = max_in_flight - tasks.len();
                let reader = deps.reader.clone();
                let now = now_millis();
                let due =
                    tokio::task::spawn_blocking(move || reader.due_notifications(now, free, &skip))
                        .await;
                match due {
                    Ok(Ok(due)) => {
                        deps.stats
                            .pending
                            .store(due.pending, std::sync::atomic::Ordering::Relaxed);
                        let policy = deps.targets.borrow().clone();
                        for row in due.rows {
                            let id = row.id;
                            let handle = tasks.spawn(attempt(
                                row,
                                sends.clone(),
                                policy.clone(),
                                senders.clone(),
                                deps.config.clone(),
                                deps.write.clone(),
                                deps.stats.clone(),
                            ));
                            in_flight.insert(handle.id(), id);
                        }
                    }
                    Ok(Err(e)) => {
                        if read_error_logged_at
                            .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                        {
                            read_error_logged_at = Some(tokio::time::Instant::now());
                            tracing::error!(error = %e,
                                "cannot read the notification outbox; delivery waits and tries again (logged once a minute)");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "outbox read task failed"),
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    match joined {
                        Ok((task, Ok(()))) => {
                            in_flight.remove(&task);
                        }
                        Ok((task, Err(WriterGone))) => {
                            in_flight.remove(&task);
                            writer_gone = true;
                            break;
                        }
                        Err(e) => {
                            if let Some(id) = in_flight.remove(&e.id()) {
                                tracing::error!(notification = id, error = %e,
                                    "sending a notification panicked; it stays pending and is tried again after a restart");
                                held.insert(id);
                            }
                        }
                    }
                }
                _ = deps.wake.notified() => {}
                _ = tick.tick() => {}
            }
        }
        if writer_gone {
            tracing::error!(
                "the store writer is gone; notification delivery stops (undelivered rows stay pending for the next start)"
            );
        }
        // Stopping: no new rows; the sends in flight get a few seconds to finish.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!(
                in_flight = tasks.len(),
                "notifications still sending at shutdown were cut off; they stay pending and are sent again at the next start"
            );
            tasks.shutdown().await;
        }
        drop(senders);
        if let Some(mut h) = mqtt_handle
            && tokio::time::timeout(Duration::from_secs(2), &mut h)
                .await
                .is_err()
        {
            h.abort();
        }
    }
}

/// The store writer stopped: marks can no longer be stored.
#[derive(Debug)]
struct WriterGone;

/// Send one row and have the mark of the attempt committed.
async fn attempt<A>(
    row: PendingNotification,
    sends: Arc<tokio::sync::Semaphore>,
    policy: Arc<NotifyPolicy>,
    senders: Arc<Senders>,
    config: NotifyConfig,
    write: mpsc::Sender<WriteMsg<A>>,
    stats: Arc<NotifyStats>,
) -> Result<(), WriterGone> {
    // The semaphore is never closed; rows wait for a place about in the order they were read.
    let place = sends.acquire_owned().await.ok();
    let result = send(&row, &policy, &senders).await;
    drop(place);
    let update = decide(&config, &row, &result, now_millis());
    let channel = row.channel.as_deref().unwrap_or("none");
    let target = format!("{channel}:{}", row.target);
    match (&update.outcome, &result) {
        (Outcome::Delivered { .. }, _) => {
            stats.delivered.add(channel);
            tracing::info!(notification = row.id, %target, event = %row.event, ticket_id = row.ticket_id,
                attempts = update.attempts, "notification delivered");
        }
        (Outcome::Retry { next_attempt_at }, Err(e)) => {
            stats.retried.add(channel);
            let retry_in_ms = next_attempt_at.saturating_sub(now_millis()).max(0);
            tracing::warn!(notification = row.id, %target, event = %row.event, attempts = update.attempts,
                retry_in_ms, error = %e.message(), "notification not delivered yet; trying again");
        }
        (Outcome::Failed { .. }, Err(e)) => {
            stats.failed.add(channel);
            tracing::error!(notification = row.id, %target, event = %row.event, ticket_id = row.ticket_id,
                attempts = update.attempts, error = %e.message(),
                "notification given up: fix the target ([notify.{channel}.{}] in policy.toml, or [smtp] in collector.toml) or its receiver; the row stays in the notifications table with state 'failed'",
                row.target);
        }
        _ => {}
    }
    let (done, committed) = oneshot::channel();
    if write
        .send(WriteMsg::outbox(vec![update], Some(done)))
        .await
        .is_err()
    {
        return Err(WriterGone);
    }
    committed.await.map_err(|_| WriterGone)
}

/// One attempt on one row, through the channel it names.
async fn send(
    row: &PendingNotification,
    policy: &NotifyPolicy,
    senders: &Senders,
) -> Result<(), SendError> {
    let gone = |channel: &str| {
        SendError::Permanent(format!(
            "target {channel}:{} is not in the policy (no [notify.{channel}.{}] in policy.toml)",
            row.target, row.target
        ))
    };
    match row.channel.as_deref() {
        Some("webhook") => {
            let target = policy
                .webhook
                .get(&row.target)
                .ok_or_else(|| gone("webhook"))?;
            senders.webhook.send(&row.target, target, row).await
        }
        Some("email") => {
            let target = policy.email.get(&row.target).ok_or_else(|| gone("email"))?;
            let Some(sender) = &senders.email else {
                return Err(SendError::Permanent(
                    "no [smtp] in collector.toml: e-mail notifications cannot be sent (add [smtp] host and from)"
                        .into(),
                ));
            };
            sender.send(target, row).await
        }
        Some("mqtt") => {
            let target = policy.mqtt.get(&row.target).ok_or_else(|| gone("mqtt"))?;
            let Some(sender) = &senders.mqtt else {
                return Err(SendError::Permanent(
                    "no MQTT broker connection for notifications".into(),
                ));
            };
            let topic = mqtt::event_topic(&senders.topic_root, &target.topic, &row.event)?;
            sender.publish(topic, target, row).await
        }
        Some(other) => Err(SendError::Permanent(format!(
            "unknown channel {other:?} (webhook, email or mqtt)"
        ))),
        None => Err(SendError::Permanent(
            "the row names no channel (written before the outbox had channels)".into(),
        )),
    }
}

/// An error with its sources, on one line (`client error: connection refused`).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace('\n', " ")
}
