//! The collector's own health as Prometheus text: intake, engine, store and notification counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::Counters;
use crate::ingest::mqtt::IngestStats;
use crate::store::WriterStats;

/// Engine figures copied out after every input.
#[derive(Debug, Default, Clone)]
pub struct EngineGauges {
    pub counters: Counters,
    pub live_alerts: usize,
    pub open_incidents: usize,
}

/// Rule reloads and operator commands (the control path).
#[derive(Debug, Default)]
pub struct ControlStats {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Rules in force.
    pub rules_loaded: AtomicU64,
    pub commands: AtomicU64,
    pub commands_refused: AtomicU64,
}

/// Delivery channels of notifications, in the order of [`PerChannel`]'s slots.
pub const CHANNELS: [&str; 3] = ["webhook", "email", "mqtt"];

/// One counter per delivery channel, plus `other` for a row naming no known channel.
#[derive(Debug, Default)]
pub struct PerChannel([AtomicU64; 4]);

impl PerChannel {
    pub fn add(&self, channel: &str) {
        let slot = CHANNELS
            .iter()
            .position(|c| *c == channel)
            .unwrap_or(CHANNELS.len());
        self.0[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, channel: &str) -> u64 {
        let slot = CHANNELS
            .iter()
            .position(|c| *c == channel)
            .unwrap_or(CHANNELS.len());
        self.0[slot].load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (i, c) in CHANNELS.iter().chain(&["other"]).enumerate() {
            let _ = writeln!(
                out,
                "{name}{{channel=\"{c}\"}} {}",
                self.0[i].load(Ordering::Relaxed)
            );
        }
    }
}

/// The notification outbox's delivery (webhooks, e-mail, MQTT).
#[derive(Debug, Default)]
pub struct NotifyStats {
    pub delivered: PerChannel,
    /// Failed attempts that will be tried again.
    pub retried: PerChannel,
    /// Notifications given up (permanent error or out of attempts).
    pub failed: PerChannel,
    /// Rows waiting in the outbox (pending, due or not), as of the last look.
    pub pending: AtomicU64,
}

/// Everything `/metrics` shows.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ingest: Arc<IngestStats>,
    pub writer: Arc<WriterStats>,
    pub engine: Mutex<EngineGauges>,
    pub control: ControlStats,
    pub notify: Arc<NotifyStats>,
    pub retention: RetentionStats,
}

/// Retention runs: rows moved from the live file to the Parquet archive.
#[derive(Debug, Default)]
pub struct RetentionStats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub rows_archived: AtomicU64,
    pub files_written: AtomicU64,
}

impl RetentionStats {
    /// Count what a run moved: all of it when it succeeded, what its committed transactions
    /// moved when it failed.
    pub fn archived(&self, moved: &crate::store::retention::Archived) {
        self.rows_archived
            .fetch_add(moved.rows(), Ordering::Relaxed);
        self.files_written
            .fetch_add(moved.files as u64, Ordering::Relaxed);
    }
}

/// A gauge with one series per `tag` label.
fn tag_gauge<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (tag, value) in series {
        let _ = writeln!(out, "{name}{{tag=\"{tag}\"}} {value}");
    }
}

fn line(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Metrics {
    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let i = &self.ingest;
        line(
            &mut o,
            "tocsin_mqtt_connected",
            "gauge",
            "1 while connected to the MQTT broker.",
            u8::from(i.connected.load(Ordering::Relaxed)),
        );
        line(
            &mut o,
            "tocsin_mqtt_connects_total",
            "counter",
            "Successful broker connections.",
            i.connects.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_mqtt_connection_errors_total",
            "counter",
            "Broker connection errors.",
            i.connection_errors.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_ingest_acks_stale_total",
            "counter",
            "Acks not sent because their message came on an earlier broker connection (the broker redelivers it).",
            i.acks_stale.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_ingest_dropped_qos0_total",
            "counter",
            "QoS 0 messages dropped because the pipeline's queue was full.",
            i.dropped_qos0.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_ingest_queue_full_waits_total",
            "counter",
            "QoS 1 messages that waited for room in the pipeline's queue (the broker's in-flight window is larger than the queue).",
            i.queue_full_waits.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_ingest_messages_total",
            "counter",
            "MQTT messages received.",
            i.messages.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_ingest_bytes_total",
            "counter",
            "MQTT payload bytes received.",
            i.bytes.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP tocsin_ingest_rejected_total Payloads refused at intake, by reason.\n# TYPE tocsin_ingest_rejected_total counter"
        );
        if let Ok(m) = i.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(o, "tocsin_ingest_rejected_total{{reason=\"{reason}\"}} {n}");
            }
        }
        line(
            &mut o,
            "tocsin_ingest_rejected_unstored_total",
            "counter",
            "Refused payloads counted but not stored (over 20 per node and minute).",
            i.rejected_unstored.load(Ordering::Relaxed),
        );
        if let Ok(e) = self.engine.lock() {
            let c = &e.counters;
            line(
                &mut o,
                "tocsin_reports_total",
                "counter",
                "Reports accepted by the engine.",
                c.reports,
            );
            line(
                &mut o,
                "tocsin_reports_duplicate_total",
                "counter",
                "Redelivered reports dropped (same node and seq).",
                c.duplicates,
            );
            line(
                &mut o,
                "tocsin_statuses_total",
                "counter",
                "Node status messages handled.",
                c.statuses,
            );
            line(
                &mut o,
                "tocsin_alert_transitions_total",
                "counter",
                "Alert transitions (pending, firing, resolved).",
                c.alert_transitions,
            );
            line(
                &mut o,
                "tocsin_incidents_opened_total",
                "counter",
                "Incidents opened.",
                c.incidents_opened,
            );
            line(
                &mut o,
                "tocsin_incidents_resolved_total",
                "counter",
                "Incidents resolved.",
                c.incidents_resolved,
            );
            line(
                &mut o,
                "tocsin_incidents_reopened_total",
                "counter",
                "Incidents reopened by a recurrence.",
                c.incidents_reopened,
            );
            line(
                &mut o,
                "tocsin_incidents_closed_total",
                "counter",
                "Incidents closed after verification.",
                c.incidents_closed,
            );
            line(
                &mut o,
                "tocsin_tickets_opened_total",
                "counter",
                "Tickets opened.",
                c.tickets_opened,
            );
            line(
                &mut o,
                "tocsin_alerts_live",
                "gauge",
                "Alerts pending or firing.",
                e.live_alerts,
            );
            line(
                &mut o,
                "tocsin_incidents_unclosed",
                "gauge",
                "Incidents open or in verification.",
                e.open_incidents,
            );
        }
        let c = &self.control;
        let _ = writeln!(
            o,
            "# HELP tocsin_rules_reloads_total Rule reloads (SIGHUP or API), by result.\n# TYPE tocsin_rules_reloads_total counter\n\
             tocsin_rules_reloads_total{{result=\"ok\"}} {}\ntocsin_rules_reloads_total{{result=\"failed\"}} {}",
            c.reloads_ok.load(Ordering::Relaxed),
            c.reloads_failed.load(Ordering::Relaxed)
        );
        line(
            &mut o,
            "tocsin_rules_loaded",
            "gauge",
            "Rules in force.",
            c.rules_loaded.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_commands_total",
            "counter",
            "Operator commands received through the API (maintenance, problem updates).",
            c.commands.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_commands_refused_total",
            "counter",
            "Operator commands the engine refused (not found, invalid).",
            c.commands_refused.load(Ordering::Relaxed),
        );
        let w = &self.writer;
        line(
            &mut o,
            "tocsin_store_batches_total",
            "counter",
            "Write transactions committed.",
            w.batches.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_store_rows_total",
            "counter",
            "Rows written.",
            w.rows.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_store_rejected_payloads_total",
            "counter",
            "Refused payloads stored with their reason.",
            w.rejected.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_store_errors_total",
            "counter",
            "Failed writes.",
            w.errors.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_store_last_batch_seconds",
            "gauge",
            "Duration of the last write transaction.",
            w.last_batch_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        line(
            &mut o,
            "tocsin_store_reports_pruned_total",
            "counter",
            "Stored node reports deleted because a newer one of the node was stored.",
            w.reports_pruned.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_store_memory_released_bytes_total",
            "counter",
            "Resident memory DuckDB had freed that the writer gave back to the system.",
            w.memory_released.load(Ordering::Relaxed),
        );
        line(
            &mut o,
            "tocsin_store_duckdb_memory_bytes",
            "gauge",
            "Memory DuckDB accounts for (duckdb_memory(): table blocks, indexes, transactions), refreshed every 10 s; its buffer pool is bounded by [store] memory_limit.",
            w.duckdb_memory.load(Ordering::Relaxed),
        );
        {
            let tags = w
                .duckdb_memory_tags
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !tags.is_empty() {
                tag_gauge(
                    &mut o,
                    "tocsin_store_duckdb_memory_tag_bytes",
                    "The same by DuckDB's memory tag (base_table: table blocks cached or being written, art_index: primary keys, metadata...), refreshed every 10 s.",
                    tags.iter().map(|t| (t.tag.as_str(), t.memory)),
                );
                tag_gauge(
                    &mut o,
                    "tocsin_store_duckdb_temporary_bytes",
                    "What DuckDB spilled to its temporary files beyond [store] memory_limit, by memory tag, refreshed every 10 s.",
                    tags.iter().map(|t| (t.tag.as_str(), t.temporary)),
                );
            }
        }
        let (in_use, free) = (
            w.malloc_in_use.load(Ordering::Relaxed),
            w.malloc_free.load(Ordering::Relaxed),
        );
        if in_use > 0 {
            let _ = writeln!(
                o,
                "# HELP tocsin_process_malloc_bytes glibc malloc's bytes (DuckDB allocates there, the Rust side from mimalloc): in use, and free in its arenas (trimmed pages stay counted as free); refreshed once a minute.\n# TYPE tocsin_process_malloc_bytes gauge\n\
                 tocsin_process_malloc_bytes{{state=\"in_use\"}} {in_use}\ntocsin_process_malloc_bytes{{state=\"free\"}} {free}"
            );
            line(
                &mut o,
                "tocsin_process_malloc_arenas",
                "gauge",
                "glibc malloc's arenas (heaps): up to 8 per core unless MALLOC_ARENA_MAX or GLIBC_TUNABLES caps them.",
                w.malloc_arenas.load(Ordering::Relaxed),
            );
        }
        if let Some(rss) = crate::store::resident_bytes() {
            line(
                &mut o,
                "tocsin_process_resident_bytes",
                "gauge",
                "Resident memory of the collector process (VmRSS).",
                rss,
            );
        }
        let n = &self.notify;
        n.delivered.render(
            &mut o,
            "tocsin_notifications_delivered_total",
            "Notifications delivered, by channel.",
        );
        n.retried.render(
            &mut o,
            "tocsin_notifications_retried_total",
            "Failed notification attempts that will be retried, by channel.",
        );
        n.failed.render(
            &mut o,
            "tocsin_notifications_failed_total",
            "Notifications given up (permanent error or out of attempts), by channel.",
        );
        line(
            &mut o,
            "tocsin_notifications_pending",
            "gauge",
            "Notifications waiting in the outbox.",
            n.pending.load(Ordering::Relaxed),
        );
        let r = &self.retention;
        for (name, help, v) in [
            (
                "tocsin_retention_runs_total",
                "Retention runs that finished.",
                &r.runs,
            ),
            (
                "tocsin_retention_failures_total",
                "Retention runs that failed (retried at the next interval).",
                &r.failures,
            ),
            (
                "tocsin_retention_rows_archived_total",
                "Rows moved from the live database to the Parquet archive.",
                &r.rows_archived,
            ),
            (
                "tocsin_retention_files_written_total",
                "Parquet files written to the archive.",
                &r.files_written,
            ),
        ] {
            line(&mut o, name, "counter", help, v.load(Ordering::Relaxed));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.ingest.count_rejected("malformed");
        m.ingest.count_rejected("malformed");
        let text = m.render();
        assert!(text.contains("tocsin_ingest_rejected_total{reason=\"malformed\"} 2"));
        assert!(text.contains("# TYPE tocsin_reports_total counter"));
        m.control.reloads_failed.fetch_add(1, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("tocsin_rules_reloads_total{result=\"ok\"} 0"));
        assert!(text.contains("tocsin_rules_reloads_total{result=\"failed\"} 1"));
        m.notify.failed.add("email");
        m.notify.failed.add("sms");
        m.notify.delivered.add("webhook");
        m.notify.pending.store(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("tocsin_notifications_failed_total{channel=\"email\"} 1"));
        assert!(text.contains("tocsin_notifications_failed_total{channel=\"other\"} 1"));
        assert!(text.contains("tocsin_notifications_failed_total{channel=\"mqtt\"} 0"));
        assert!(text.contains("tocsin_notifications_delivered_total{channel=\"webhook\"} 1"));
        assert!(text.contains("tocsin_notifications_pending 3"));
        m.writer.duckdb_memory.store(5 << 20, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("tocsin_store_duckdb_memory_bytes 5242880"));
        assert!(!text.contains("tocsin_store_duckdb_memory_tag_bytes"));
        *m.writer.duckdb_memory_tags.lock().expect("tags") = vec![
            crate::store::DuckdbMemory {
                tag: "base_table".into(),
                memory: 4 << 20,
                temporary: 0,
            },
            crate::store::DuckdbMemory {
                tag: "art_index".into(),
                memory: 1 << 20,
                temporary: 512,
            },
        ];
        let text = m.render();
        assert!(
            text.contains("tocsin_store_duckdb_memory_tag_bytes{tag=\"base_table\"} 4194304\n")
        );
        assert!(text.contains("tocsin_store_duckdb_memory_tag_bytes{tag=\"art_index\"} 1048576\n"));
        assert!(text.contains("tocsin_store_duckdb_temporary_bytes{tag=\"art_index\"} 512\n"));
        assert!(
            !text.contains("tocsin_process_malloc_bytes"),
            "shown once read"
        );
        m.writer.malloc_in_use.store(7 << 20, Ordering::Relaxed);
        m.writer.malloc_free.store(3 << 20, Ordering::Relaxed);
        m.writer.malloc_arenas.store(2, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("tocsin_process_malloc_arenas 2\n"));
        assert!(text.contains("tocsin_process_malloc_bytes{state=\"in_use\"} 7340032"));
        assert!(text.contains("tocsin_process_malloc_bytes{state=\"free\"} 3145728"));
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("tocsin_process_resident_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("resident bytes shown");
        assert!(rss > 1 << 20, "{rss}");
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = l.rsplitn(2, ' ');
            let value = parts.next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {l}");
        }
    }
}
