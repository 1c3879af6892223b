//! The notification outbox in SQL: due rows for the delivery task, and its marks (applied by the writer).
//!
//! Rows are inserted `pending` by [`super::write_effects`] in the transaction of the event
//! that made them. The delivery task reads the due ones through [`Reader::due_notifications`]
//! and sends each; what came of an attempt goes back as an [`OutboxUpdate`] in a
//! [`super::WriteMsg`], so the writer thread stays the only one writing.

use std::collections::BTreeMap;

use duckdb::{Transaction, params};
use serde_json::{Map, Value as Json};

use super::rows::{Col, MoveBy, Staged};
use super::sql::query_json;
use super::{Reader, StoreError};
use crate::time::Millis;

/// One notification waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotification {
    pub id: i64,
    /// Idempotency key, sent with every attempt.
    pub key: String,
    /// `webhook`, `email` or `mqtt` (None: a row from before the outbox had channels).
    pub channel: Option<String>,
    /// The target's name in the policy.
    pub target: String,
    pub event: String,
    pub ticket_id: Option<i64>,
    pub payload: Json,
    /// Attempts made so far.
    pub attempts: i64,
    pub created_at: Millis,
}

/// The due rows, and how many are pending in all (due or not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    pub rows: Vec<PendingNotification>,
    pub pending: u64,
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent: state `delivered`, `sent_at`.
    Delivered { at: Millis },
    /// Failed; stays `pending` until `next_attempt_at`.
    Retry { next_attempt_at: Millis },
    /// Given up: state `failed`, `failed_at`.
    Failed { at: Millis },
}

impl Outcome {
    pub fn state(self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "pending",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// The mark of one attempt on one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxUpdate {
    pub id: i64,
    /// Attempts made, this one included.
    pub attempts: i64,
    /// Why this attempt failed (None keeps the previous error, e.g. on delivery).
    pub last_error: Option<String>,
    pub outcome: Outcome,
}

const DUE_COLS: &str =
    "id, coalesce(idempotency_key, 'tocsin-notification-' || id::VARCHAR), channel,
    target, coalesce(event, kind), ticket_id, payload::VARCHAR, attempts, epoch_ms(created_at)";

impl Reader {
    /// Pending rows due at `now` (oldest first, at most `limit`), skipping `skip` (the ones
    /// being sent), and the count of every pending row.
    pub fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
        skip: &[i64],
    ) -> Result<Due, StoreError> {
        self.with(|c| {
            let pending: i64 = c.query_row(
                "SELECT count(*) FROM notifications WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(&format!(
                "SELECT {DUE_COLS} FROM notifications
                 WHERE state = 'pending' AND coalesce(next_attempt_at, created_at) <= epoch_ms(?::BIGINT)
                 ORDER BY id LIMIT ?"
            ))?;
            let fetch = i64::try_from(limit.saturating_add(skip.len())).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![now, fetch])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                if skip.contains(&id) {
                    continue;
                }
                let payload: Option<String> = r.get(6)?;
                let payload = payload
                    .map(|p| serde_json::from_str(&p).unwrap_or(Json::String(p)))
                    .unwrap_or(Json::Null);
                out.push(PendingNotification {
                    id,
                    key: r.get(1)?,
                    channel: r.get(2)?,
                    target: r.get(3)?,
                    event: r.get(4)?,
                    ticket_id: r.get(5)?,
                    payload,
                    attempts: r.get(7)?,
                    created_at: r.get(8)?,
                });
                if out.len() >= limit {
                    break;
                }
            }
            Ok(Due {
                rows: out,
                pending: u64::try_from(pending).unwrap_or(0),
            })
        })
    }

    /// One outbox row as JSON, payload included (None: no such row).
    pub fn notification_row(&self, id: i64) -> Result<Option<Map<String, Json>>, StoreError> {
        self.with(|c| {
            query_json(
                c,
                "SELECT id, idempotency_key, channel, target, event, ticket_id, state, attempts,
                     last_error, created_at, next_attempt_at, sent_at, failed_at,
                     payload::VARCHAR AS payload_json
                 FROM notifications WHERE id = ?",
                &[&id],
            )
        })
        .map(|rows| rows.into_iter().next())
    }
}

/// Delivery marks go through a staging table and one `UPDATE ... FROM` (see `rows.rs`): a
/// burst of tickets is a burst of deliveries, and row by row each mark cost milliseconds.
const OUTBOX_MARKS: Staged = Staged {
    table: "notifications",
    stage: "notification_marks_stage",
    columns: &[
        ("id", Col::Value),
        ("state", Col::Value),
        ("attempts", Col::Value),
        ("last_error", Col::Value),
        ("next_attempt_at", Col::Time),
        ("sent_at", Col::Time),
        ("failed_at", Col::Time),
    ],
    into: MoveBy::Sql(
        "UPDATE notifications SET state = m.state, attempts = m.attempts,
             last_error = coalesce(m.last_error, notifications.last_error),
             next_attempt_at = coalesce(epoch_ms(m.next_attempt_at), notifications.next_attempt_at),
             sent_at = coalesce(epoch_ms(m.sent_at), notifications.sent_at),
             failed_at = coalesce(epoch_ms(m.failed_at), notifications.failed_at)
         FROM temp.main.notification_marks_stage m WHERE notifications.id = m.id",
    ),
};

/// One notification's marks of a batch, folded in order: state and attempts from the last,
/// each time and the error from the last that set it (as applying them one by one would).
#[derive(Debug)]
struct Mark<'a> {
    id: i64,
    state: &'static str,
    attempts: i64,
    last_error: Option<&'a str>,
    next_attempt_at: Option<Millis>,
    sent_at: Option<Millis>,
    failed_at: Option<Millis>,
}

/// Apply the marks of delivery attempts (inside the writer's transaction); returns how
/// many notifications they changed.
pub fn apply_updates(tx: &Transaction<'_>, updates: &[OutboxUpdate]) -> Result<usize, StoreError> {
    let mut marks: BTreeMap<i64, Mark<'_>> = BTreeMap::new();
    for u in updates {
        let (next, sent, failed) = match u.outcome {
            Outcome::Delivered { at } => (None, Some(at), None),
            Outcome::Retry { next_attempt_at } => (Some(next_attempt_at), None, None),
            Outcome::Failed { at } => (None, None, Some(at)),
        };
        let m = marks.entry(u.id).or_insert(Mark {
            id: u.id,
            state: u.outcome.state(),
            attempts: u.attempts,
            last_error: None,
            next_attempt_at: None,
            sent_at: None,
            failed_at: None,
        });
        m.state = u.outcome.state();
        m.attempts = u.attempts;
        m.last_error = u.last_error.as_deref().or(m.last_error);
        m.next_attempt_at = next.or(m.next_attempt_at);
        m.sent_at = sent.or(m.sent_at);
        m.failed_at = failed.or(m.failed_at);
    }
    OUTBOX_MARKS.write(tx, marks.into_values(), |app, m| {
        app.append_row(params![
            m.id,
            m.state,
            m.attempts,
            m.last_error,
            m.next_attempt_at,
            m.sent_at,
            m.failed_at
        ])
    })
}
