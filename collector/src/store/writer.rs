//! The single writer: batches of effects committed in one transaction, then their acks released.
//!
//! It also applies the notification outbox's delivery marks ([`OutboxUpdate`]), so the
//! delivery task never writes itself, and wakes that task when new notifications committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::Connection;
use tokio::sync::mpsc;

use super::nodes::{StoredNodes, prune_reports};
use super::outbox::{OutboxUpdate, apply_updates};
use super::rows::{write_batch, write_rejected};
use super::trim::{malloc_bytes, release_free_memory};
use super::{RejectedRow, StoreError};
use crate::engine::Effect;

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
    /// Resident bytes given back by trimming glibc's arenas after each prune.
    pub memory_released: AtomicU64,
    /// glibc's `malloc` (DuckDB's allocations): bytes in use and bytes free in its arenas,
    /// refreshed after each prune's trim, once a minute (0 off glibc).
    pub malloc_in_use: AtomicU64,
    pub malloc_free: AtomicU64,
    /// glibc's arenas (heaps), refreshed with the above.
    pub malloc_arenas: AtomicU64,
    /// What DuckDB accounts for (`duckdb_memory()`: its buffer pool's blocks and other
    /// tracked allocations), refreshed every [`MEMORY_EVERY`].
    pub duckdb_memory: AtomicU64,
    /// The same by DuckDB's tag (table blocks, indexes, metadata...), with what each spilled
    /// to DuckDB's temporary files; only the tags holding something.
    pub duckdb_memory_tags: Mutex<Vec<DuckdbMemory>>,
}

/// What DuckDB accounts for under one of its memory tags (`duckdb_memory()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuckdbMemory {
    /// DuckDB's tag, lower case (`base_table`, `art_index`, `metadata`...).
    pub tag: String,
    /// Bytes in memory.
    pub memory: u64,
    /// Bytes spilled to DuckDB's temporary files.
    pub temporary: u64,
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

/// Prepared statements the writer's connection keeps.
const STATEMENT_CACHE: usize = 64;

/// How often `node_reports` is pruned to each node's newest report.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often the writer reads DuckDB's memory accounting for `/metrics`.
pub const MEMORY_EVERY: Duration = Duration::from_secs(10);

impl Writer {
    pub fn new(conn: Connection, batch_size: usize, flush_interval: Duration) -> Self {
        // Every table's staged write is three or four statements (`rows.rs`, `nodes.rs`):
        // about 40 in all, more than the default cache of 16 holds, and a batch with tickets
        // would otherwise parse again the ones its predecessor evicted.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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
        self.read_memory(&stats);
        Self::read_malloc(&stats);
        let mut last_memory = Instant::now();
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
            if last_memory.elapsed() >= MEMORY_EVERY {
                last_memory = Instant::now();
                self.read_memory(&stats);
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
                // DuckDB's freed memory (the prune's, the checkpoints') back to the system.
                if let Some(t) = release_free_memory() {
                    stats
                        .memory_released
                        .fetch_add(t.released(), Ordering::Relaxed);
                    tracing::debug!(
                        rss_before_mb = t.rss_before >> 20,
                        rss_after_mb = t.rss_after >> 20,
                        took_ms = t.took.as_millis() as u64,
                        "gave freed memory back to the system"
                    );
                }
                Self::read_malloc(&stats);
            }
        }
        if let Err(e) = self.conn.execute_batch("CHECKPOINT") {
            tracing::warn!(error = %e, "checkpoint at shutdown failed");
        }
        Ok(())
    }

    /// Refresh `stats.duckdb_memory` from DuckDB's own accounting (a few hundred µs).
    fn read_memory(&self, stats: &WriterStats) {
        match duckdb_memory_by_tag(&self.conn) {
            Ok(tags) => {
                let bytes = tags.iter().map(|t| t.memory).sum();
                stats.duckdb_memory.store(bytes, Ordering::Relaxed);
                // A poisoned lock only means a reader panicked mid-render: the data is whole.
                *stats
                    .duckdb_memory_tags
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = tags;
            }
            Err(e) => tracing::debug!(error = %e, "cannot read duckdb_memory()"),
        }
    }

    /// Refresh glibc's in-use and free bytes and its arena count. Both readings walk every
    /// free chunk of every arena under its lock, stalling DuckDB's allocations meanwhile,
    /// so the writer takes them once a minute, with the trim, not every [`MEMORY_EVERY`].
    fn read_malloc(stats: &WriterStats) {
        if let Some(m) = malloc_bytes() {
            stats.malloc_in_use.store(m.in_use, Ordering::Relaxed);
            stats.malloc_free.store(m.free, Ordering::Relaxed);
            stats
                .malloc_arenas
                .store(u64::from(m.arenas), Ordering::Relaxed);
        }
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

/// The bytes DuckDB accounts for: the sum of `duckdb_memory()` over its tags (table blocks,
/// indexes, transactions, staging); bounded by `[store] memory_limit` as far as it is
/// DuckDB's buffer pool.
#[cfg(test)]
pub fn duckdb_memory_bytes(conn: &Connection) -> Result<u64, duckdb::Error> {
    Ok(duckdb_memory_by_tag(conn)?.iter().map(|t| t.memory).sum())
}

/// `duckdb_memory()` by tag, the tags that hold memory or temporary bytes only, largest first.
pub fn duckdb_memory_by_tag(conn: &Connection) -> Result<Vec<DuckdbMemory>, duckdb::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT lower(tag), memory_usage_bytes::UBIGINT, temporary_storage_bytes::UBIGINT
         FROM duckdb_memory()
         WHERE memory_usage_bytes > 0 OR temporary_storage_bytes > 0
         ORDER BY memory_usage_bytes DESC, tag",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DuckdbMemory {
            tag: r.get(0)?,
            memory: r.get(1)?,
            temporary: r.get(2)?,
        })
    })?;
    rows.collect()
}
