//! The single writer: batches of effects committed in one transaction, then their acks released.
//!
//! It also applies the notification outbox's delivery marks ([`OutboxUpdate`]), so the
//! delivery task never writes itself, and wakes that task when new notifications committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duckdb::{Connection, Transaction, params};
use tocsin_protocol::Report;
use tokio::sync::mpsc;

use super::nodes::{Marks, StoredNodes, prune_reports, write_nodes};
use super::outbox::{OutboxUpdate, apply_updates};
use super::{RejectedRow, StoreError};
use crate::engine::Effect;
use crate::engine::model::{
    AlertRow, IncidentAlertRow, IncidentRow, MaintenanceRow, NodeRow, NotificationRow,
    ProblemIncidentRow, ProblemRow, TicketEventRow, TicketRow,
};

/// One input's worth of writing: its effects, or its rejection, and the token that acknowledges it.
#[derive(Debug)]
pub struct WriteMsg<A> {
    pub effects: Vec<Effect>,
    pub rejected: Option<RejectedRow>,
    /// Released only after the transaction holding this input committed.
    pub ack: Option<A>,
    /// Told once the transaction holding these effects committed (an operator's command
    /// answers only then, so a read right after it sees its rows). Dropped unsent when the
    /// write failed.
    pub committed: Option<tokio::sync::oneshot::Sender<()>>,
    /// Delivery marks of outbox rows, applied after the effects of the same batch.
    pub outbox: Vec<OutboxUpdate>,
}

impl<A> WriteMsg<A> {
    /// Effects with nothing to acknowledge.
    pub fn effects(effects: Vec<Effect>) -> Self {
        WriteMsg {
            effects,
            rejected: None,
            ack: None,
            committed: None,
            outbox: Vec::new(),
        }
    }

    /// Outbox marks, with `committed` told once they are stored.
    pub fn outbox(
        outbox: Vec<OutboxUpdate>,
        committed: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Self {
        WriteMsg {
            committed,
            outbox,
            ..Self::effects(Vec::new())
        }
    }
}

/// Counters of the writer, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    pub rejected: AtomicU64,
    pub errors: AtomicU64,
    pub last_batch_micros: AtomicU64,
    /// Stored reports deleted because a newer one of the same node was stored.
    pub reports_pruned: AtomicU64,
}

/// Owns the write connection; run it on its own thread.
#[derive(Debug)]
pub struct Writer {
    conn: Connection,
    batch_size: usize,
    flush_interval: Duration,
    /// Pauses between attempts at a failing batch; after the last, the writer gives up.
    pub retry_delays: Vec<Duration>,
    /// Poked after a commit that stored new notifications (the delivery task waits on it).
    pub outbox_wake: Option<Arc<tokio::sync::Notify>>,
    /// What is stored of each node's wide columns, so most report rows skip them.
    stored: StoredNodes,
    /// How often the reports older than their node's newest are deleted.
    pub prune_every: Duration,
}

/// How long the queue must stay empty before a batch is committed.
const LINGER: Duration = Duration::from_millis(3);

/// A batch that took this long is logged.
const SLOW_BATCH: Duration = Duration::from_millis(250);

/// How often `node_reports` is pruned to each node's newest report.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

fn json<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

impl Writer {
    pub fn new(conn: Connection, batch_size: usize, flush_interval: Duration) -> Self {
        Writer {
            stored: StoredNodes::new(Duration::ZERO),
            conn,
            batch_size: batch_size.max(1),
            flush_interval,
            retry_delays: vec![
                Duration::from_millis(100),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ],
            outbox_wake: None,
            prune_every: PRUNE_EVERY,
        }
    }

    /// Store a node's full report at most every `every` (and whenever one of its alerts
    /// changes state); zero stores every report.
    pub fn with_report_interval(mut self, every: Duration) -> Self {
        self.stored.set_report_every(every);
        self
    }

    /// Spread the stored reports of the nodes over the report interval (see
    /// [`StoredNodes::set_spread`]); `Store::into_writer` does.
    pub fn with_report_spread(mut self, spread: bool) -> Self {
        self.stored.set_spread(spread);
        self
    }

    /// Poke `wake` whenever a commit stored new notifications.
    pub fn with_outbox_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.outbox_wake = Some(wake);
        self
    }

    /// Drain `rx` until it closes: gather messages while they keep coming (up to
    /// `batch_size`, at most `flush_interval`), commit them in one transaction, then pass
    /// their ack tokens to `acks`. Blocks the calling thread.
    ///
    /// A batch that cannot be committed is retried with backoff; if it still fails the writer
    /// stops with the error and its tokens are dropped unacknowledged, so the broker
    /// redelivers those messages to the next run. Nothing is acknowledged that is not stored.
    pub fn run<A: Send + 'static>(
        mut self,
        mut rx: mpsc::Receiver<WriteMsg<A>>,
        acks: mpsc::Sender<A>,
        stats: Arc<WriterStats>,
    ) -> Result<(), StoreError> {
        let mut last_prune = Instant::now();
        loop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let deadline = Instant::now() + self.flush_interval;
            let mut batch = vec![first];
            let mut closed = false;
            let mut idle_since: Option<Instant> = None;
            while batch.len() < self.batch_size {
                match rx.try_recv() {
                    Ok(m) => {
                        batch.push(m);
                        idle_since = None;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Commit once the queue stayed empty for a moment (or the batch is old).
                        let idle = *idle_since.get_or_insert_with(Instant::now);
                        if Instant::now() >= deadline || idle.elapsed() >= LINGER {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let started = Instant::now();
            let mut effects = Vec::new();
            let mut rejected = Vec::new();
            let mut tokens = Vec::new();
            let mut committed = Vec::new();
            let mut outbox = Vec::new();
            for m in batch {
                effects.extend(m.effects);
                rejected.extend(m.rejected);
                tokens.extend(m.ack);
                committed.extend(m.committed);
                outbox.extend(m.outbox);
            }
            let mut attempt = 0;
            let rows = loop {
                match self.commit(&effects, &rejected, &outbox) {
                    Ok(rows) => break rows,
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        let Some(delay) = self.retry_delays.get(attempt).copied() else {
                            tracing::error!(error = %e, effects = effects.len(),
                                "cannot store a batch; stopping without acknowledging it (the broker will redeliver)");
                            return Err(e);
                        };
                        tracing::warn!(error = %e, attempt = attempt + 1, "batch write failed; retrying");
                        attempt += 1;
                        std::thread::sleep(delay);
                    }
                }
            };
            stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .rejected
                .fetch_add(rejected.len() as u64, Ordering::Relaxed);
            let took = started.elapsed();
            stats
                .last_batch_micros
                .store(took.as_micros() as u64, Ordering::Relaxed);
            if took >= SLOW_BATCH {
                // Most often DuckDB checkpointing inside the commit: everything queued behind
                // this batch (tickets included) waited as long.
                tracing::info!(
                    took_ms = took.as_millis() as u64,
                    effects = effects.len(),
                    rows,
                    "slow write batch"
                );
            }
            for c in committed {
                let _ = c.send(());
            }
            if let Some(wake) = &self.outbox_wake
                && effects.iter().any(|e| matches!(e, Effect::Notification(_)))
            {
                wake.notify_one();
            }
            for t in tokens {
                if acks.blocking_send(t).is_err() {
                    break;
                }
            }
            if closed {
                break;
            }
            if last_prune.elapsed() >= self.prune_every {
                last_prune = Instant::now();
                // Best effort: a failure leaves a few more rows until the next attempt.
                match prune_reports(&mut self.conn) {
                    Ok(n) => {
                        stats.reports_pruned.fetch_add(n as u64, Ordering::Relaxed);
                        tracing::info!(
                            reports = n,
                            took_ms = last_prune.elapsed().as_millis() as u64,
                            "pruned stored reports to the newest per node"
                        );
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cannot prune node_reports; trying again in a minute");
                    }
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("CHECKPOINT") {
            tracing::warn!(error = %e, "checkpoint at shutdown failed");
        }
        Ok(())
    }

    pub(super) fn commit(
        &mut self,
        effects: &[Effect],
        rejected: &[RejectedRow],
        outbox: &[OutboxUpdate],
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let (rows, marks) = write_batch(&tx, effects, Some(&self.stored))?;
        let rows = rows + write_rejected(&tx, rejected)? + apply_updates(&tx, outbox)?;
        tx.commit()?;
        // Only what is committed counts as stored: a failed batch is retried in full.
        self.stored.record(marks);
        Ok(rows)
    }
}

/// Write effects in one transaction, every node row in full. Upserts are coalesced so each
/// key is written once.
pub fn write_effects(tx: &Transaction<'_>, effects: &[Effect]) -> Result<usize, StoreError> {
    write_batch(tx, effects, None).map(|(rows, _)| rows)
}

/// Write effects in one transaction; with `stored`, node rows whose wide columns are already
/// stored are written light (see [`StoredNodes`]), and the batch's new marks are returned.
fn write_batch(
    tx: &Transaction<'_>,
    effects: &[Effect],
    stored: Option<&StoredNodes>,
) -> Result<(usize, Marks), StoreError> {
    // The node's last row, with the newest report any of its rows in the batch carried.
    let mut nodes: BTreeMap<(&str, &str), (&NodeRow, Option<&Report>)> = BTreeMap::new();
    let mut alerted: HashSet<(&str, &str)> = HashSet::new();
    let mut incidents: BTreeMap<i64, &IncidentRow> = BTreeMap::new();
    let mut tickets: BTreeMap<i64, &TicketRow> = BTreeMap::new();
    let mut links: BTreeMap<(i64, &str), &IncidentAlertRow> = BTreeMap::new();
    let mut alerts: Vec<&AlertRow> = Vec::new();
    let mut events: Vec<&TicketEventRow> = Vec::new();
    let mut problems: BTreeMap<i64, &ProblemRow> = BTreeMap::new();
    let mut problem_links: BTreeMap<(i64, i64), &ProblemIncidentRow> = BTreeMap::new();
    let mut maintenance: BTreeMap<i64, &MaintenanceRow> = BTreeMap::new();
    let mut notifications: Vec<&NotificationRow> = Vec::new();
    for e in effects {
        match e {
            Effect::Node(n) => {
                let report = n.last_report.as_deref();
                let e = nodes
                    .entry((n.site.as_str(), n.node.as_str()))
                    .or_insert((n, report));
                *e = (n, report.or(e.1));
            }
            Effect::Incident(i) => {
                incidents.insert(i.id, i);
            }
            Effect::Ticket(t) => {
                tickets.insert(t.id, t);
            }
            Effect::IncidentAlert(l) => {
                links.insert((l.incident_id, l.alert_key.as_str()), l);
            }
            Effect::Alert(a) => {
                alerted.insert((a.transition.site.as_str(), a.transition.node.as_str()));
                alerts.push(a);
            }
            Effect::TicketEvent(ev) => events.push(ev),
            Effect::Problem(p) => {
                problems.insert(p.id, p);
            }
            Effect::ProblemIncident(l) => {
                problem_links.insert((l.problem_id, l.incident_id), l);
            }
            Effect::Maintenance(m) => {
                maintenance.insert(m.id, m);
            }
            Effect::Notification(n) => notifications.push(n),
        }
    }
    let mut rows = 0;
    let (node_rows, marks) = write_nodes(tx, &nodes, &alerted, stored)?;
    rows += node_rows;
    if !alerts.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO alerts (id, alert_key, rule, site, node, labels, state, severity, category, value,
                 summary, detail, runbook, started_at, changed_at, incident_id, source, suppressed_by, flapping,
                 description)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), ?, ?, ?, ?, ?)",
        )?;
        for a in &alerts {
            let t = &a.transition;
            stmt.execute(params![
                a.id,
                t.key,
                t.rule,
                t.site,
                t.node,
                json(&t.labels),
                t.state.as_str(),
                t.severity.as_str(),
                t.category.as_str(),
                t.value,
                t.summary,
                t.detail,
                t.runbook,
                t.started_at,
                t.at,
                a.incident_id,
                t.source.as_str(),
                a.suppressed_by,
                a.flapping,
                t.description,
            ])?;
            rows += 1;
        }
    }
    if !incidents.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO incidents (id, state, title, severity, category, priority, site, node,
                 root_alert, root_cause, ticket_id, opened_at, resolved_at, closed_at, updated_at,
                 impact, urgency, signature, group_key, nodes_affected, symptoms, flapping, merged_into, problem_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, epoch_ms(?::BIGINT), epoch_ms(?::BIGINT),
                 epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for i in incidents.values() {
            stmt.execute(params![
                i.id,
                i.state.as_str(),
                i.title,
                i.severity.as_str(),
                i.category.as_str(),
                i.priority.as_str(),
                i.site,
                i.node,
                i.root_alert,
                i.root_cause,
                i.ticket_id,
                i.opened_at,
                i.resolved_at,
                i.closed_at,
                i.updated_at,
                i.impact.as_str(),
                i.urgency.as_str(),
                i.signature,
                i.group_key,
                i.nodes_affected,
                i.symptoms,
                i.flapping,
                i.merged_into,
                i.problem_id,
            ])?;
            rows += 1;
        }
    }
    if !links.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO incident_alerts (incident_id, alert_key, role, linked_at, node)
             VALUES (?, ?, ?, epoch_ms(?::BIGINT), ?)
             ON CONFLICT (incident_id, alert_key) DO UPDATE SET role = excluded.role, node = excluded.node",
        )?;
        for l in links.values() {
            stmt.execute(params![
                l.incident_id,
                l.alert_key,
                l.role,
                l.linked_at,
                l.node
            ])?;
            rows += 1;
        }
    }
    if !tickets.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO tickets (id, number, kind, state, priority, impact, urgency, category,
                 assignment_group, summary, description, reporter, environment, incident_id, site, node, runbook,
                 opened_at, acknowledged_at, resolved_at, closed_at, updated_at, problem_id, workaround,
                 assignee, affected, similar_cases, detected_at, resolution, cause_code, sla, response_target_ms,
                 resolution_target_ms, response_due_at, resolution_due_at, response_breached_at,
                 resolution_breached_at, resolution_elapsed_ms, escalation_level, escalated_at, reopened, close_held)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, epoch_ms(?::BIGINT), epoch_ms(?::BIGINT),
                 epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), ?, ?,
                 ?, ?, ?, epoch_ms(?::BIGINT), ?, ?, ?, ?, ?, epoch_ms(?::BIGINT), epoch_ms(?::BIGINT),
                 epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), ?, ?, epoch_ms(?::BIGINT), ?, ?)",
        )?;
        for t in tickets.values() {
            stmt.execute(params![
                t.id,
                t.number,
                t.kind,
                t.state.as_str(),
                t.priority.as_str(),
                t.impact.as_str(),
                t.urgency.as_str(),
                t.category.as_str(),
                t.assignment_group,
                t.summary,
                t.description,
                json(&t.reporter),
                json(&t.environment),
                t.incident_id,
                t.site,
                t.node,
                t.runbook,
                t.opened_at,
                t.acknowledged_at,
                t.resolved_at,
                t.closed_at,
                t.updated_at,
                t.problem_id,
                t.workaround,
                t.assignee,
                json(&t.affected),
                json(&t.similar),
                t.detected_at,
                t.resolution,
                t.cause_code,
                json(&t.sla),
                t.sla.response_target_ms,
                t.sla.resolution_target_ms,
                t.sla.response_due_at,
                t.sla.resolution_due_at,
                t.sla.response_breached_at,
                t.sla.resolution_breached_at,
                t.sla.resolution_elapsed_ms,
                t.escalation_level,
                t.escalated_at,
                t.reopened,
                t.close_held,
            ])?;
            rows += 1;
        }
    }
    if !notifications.is_empty() {
        // Written pending, in the transaction of the event that made them: the delivery task
        // picks them up once committed, and a crash before the commit sends nothing.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO notifications (id, target, kind, payload, state, attempts, created_at,
                 idempotency_key, channel, event, ticket_id, next_attempt_at)
             VALUES (?, ?, ?, ?, 'pending', 0, epoch_ms(?::BIGINT), ?, ?, ?, ?, epoch_ms(?::BIGINT))",
        )?;
        for n in &notifications {
            stmt.execute(params![
                n.id,
                n.target,
                n.event,
                json(&n.payload),
                n.created_at,
                n.key,
                n.channel,
                n.event,
                n.ticket_id,
                n.created_at,
            ])?;
            rows += 1;
        }
    }
    if !events.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO ticket_events (id, ticket_id, created_at, kind, actor, message, data)
             VALUES (?, ?, epoch_ms(?::BIGINT), ?, ?, ?, ?)",
        )?;
        for ev in &events {
            stmt.execute(params![
                ev.id,
                ev.ticket_id,
                ev.at,
                ev.kind,
                ev.actor,
                ev.message,
                json(&ev.data)
            ])?;
            rows += 1;
        }
    }
    if !problems.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO problems (id, number, state, signature, rule, site, node, group_key, title,
                 category, kb, workaround, incident_count, opened_at, last_incident_at, known_error_at,
                 resolved_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, epoch_ms(?::BIGINT), epoch_ms(?::BIGINT),
                 epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), epoch_ms(?::BIGINT))",
        )?;
        for p in problems.values() {
            stmt.execute(params![
                p.id,
                p.number,
                p.state.as_str(),
                p.signature,
                p.rule,
                p.site,
                p.node,
                p.group_key,
                p.title,
                p.category.as_str(),
                p.kb,
                p.workaround,
                p.incident_count,
                p.opened_at,
                p.last_incident_at,
                p.known_error_at,
                p.resolved_at,
                p.updated_at,
            ])?;
            rows += 1;
        }
    }
    if !problem_links.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO problem_incidents (problem_id, incident_id, linked_at)
             VALUES (?, ?, epoch_ms(?::BIGINT))",
        )?;
        for l in problem_links.values() {
            stmt.execute(params![l.problem_id, l.incident_id, l.linked_at])?;
            rows += 1;
        }
    }
    if !maintenance.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO maintenance (id, name, \"match\", starts_at, ends_at, every_ms, reason,
                 created_by, created_at, cancelled_at)
             VALUES (?, ?, ?, epoch_ms(?::BIGINT), epoch_ms(?::BIGINT), ?, ?, ?, epoch_ms(?::BIGINT),
                 epoch_ms(?::BIGINT))",
        )?;
        for m in maintenance.values() {
            stmt.execute(params![
                m.id,
                m.name,
                json(&m.match_),
                m.starts_at,
                m.ends_at,
                m.every_ms,
                m.reason,
                m.created_by,
                m.created_at,
                m.cancelled_at,
            ])?;
            rows += 1;
        }
    }
    Ok((rows, marks))
}

fn write_rejected(tx: &Transaction<'_>, rejected: &[RejectedRow]) -> Result<usize, StoreError> {
    if rejected.is_empty() {
        return Ok(0);
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO rejected_payloads (received_at, topic, site, node, reason, error, payload_size, payload)
         VALUES (epoch_ms(?::BIGINT), ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for r in rejected {
        stmt.execute(params![
            r.received_at,
            r.topic,
            r.site,
            r.node,
            r.reason,
            r.error,
            r.payload_size as i64,
            r.payload
        ])?;
    }
    Ok(rejected.len())
}
