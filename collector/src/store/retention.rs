//! Retention: alert transitions and finished incidents older than `[store] retain` move from
//! the live DuckDB file to Parquet files partitioned by month, which the `*_archive` views
//! (and through them `*_all` and the analytics views) keep reading.
//!
//! Layout: `<archive_dir>/<table>/month=YYYY-MM/<batch>_<n>.parquet`, one batch per run. A run
//! writes its files into `<archive_dir>/.staging-<batch>/` and syncs them to disk, then in one
//! transaction deletes the rows and records the batch in `archive_batches`; after the commit it
//! moves the files into place. A crash before the commit leaves a staging folder whose batch is
//! not recorded: the next run deletes it (the rows are still live). A crash after it leaves one
//! whose batch is recorded: its files are moved in. Either way no row is lost or counted twice.

use std::path::{Path, PathBuf};

use duckdb::Connection;

use super::StoreError;
use crate::time::Millis;

/// The archived tables: (table, the timestamp that picks the month).
pub const ARCHIVED: &[(&str, &str)] = &[
    ("alerts", "changed_at"),
    ("incidents", "opened_at"),
    ("incident_alerts", "linked_at"),
];

/// The folder of the empty file that carries each table's columns, so an archive without
/// history still reads (a Parquet glob matching nothing is an error).
const SCHEMA_PARTITION: &str = "month=0000-00";

/// What one run moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archived {
    pub alerts: u64,
    pub incidents: u64,
    pub incident_alerts: u64,
    pub files: usize,
}

impl Archived {
    pub fn rows(&self) -> u64 {
        self.alerts + self.incidents + self.incident_alerts
    }

    fn add(&mut self, other: &Archived) {
        self.alerts += other.alerts;
        self.incidents += other.incidents;
        self.incident_alerts += other.incident_alerts;
        self.files += other.files;
    }
}

/// A run that stopped at an error. What its transactions committed before it stays moved
/// (and counts as archived); the rest moves at the next run.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailed {
    /// Committed by this run before the error: rows out of the live tables, and the files
    /// of the batches whose files were all moved in (the rest of a committed batch's files
    /// are moved in by the next run's [`recover`]).
    pub moved: Archived,
    #[source]
    pub error: StoreError,
}

impl From<StoreError> for RunFailed {
    fn from(error: StoreError) -> Self {
        RunFailed {
            moved: Archived::default(),
            error,
        }
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Archive(format!("{what} {}: {e}", path.display()))
}

/// A path as a SQL string literal.
pub(super) fn literal(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "''"))
}

/// Create the archive folder (with an empty schema file per table) and point the
/// `*_archive` views at it. Call after [`super::harden`] allowed the folder.
pub fn attach_archive(conn: &Connection, dir: &Path) -> Result<(), StoreError> {
    for (table, _) in ARCHIVED {
        let schema_dir = dir.join(table).join(SCHEMA_PARTITION);
        std::fs::create_dir_all(&schema_dir)
            .map_err(|e| io_error("cannot create", &schema_dir, e))?;
        let schema_file = schema_dir.join("schema.parquet");
        // Rewritten at every start, so it carries the columns of the current schema.
        conn.execute_batch(&format!(
            "COPY (SELECT * FROM {table} LIMIT 0) TO {} (FORMAT parquet)",
            literal(&schema_file)
        ))?;
        let glob = dir.join(table).join("*").join("*.parquet");
        conn.execute_batch(&format!(
            "CREATE OR REPLACE VIEW {table}_archive AS
             SELECT * EXCLUDE (month) FROM read_parquet({}, hive_partitioning = true, union_by_name = true)",
            literal(&glob)
        ))?;
    }
    recover(conn, dir)
}

/// Finish or discard what an interrupted run left behind.
pub fn recover(conn: &Connection, dir: &Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("cannot list", dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_staging = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".staging-"));
        if !is_staging {
            continue;
        }
        let batch = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(".staging-"))
            .unwrap_or_default()
            .to_string();
        let committed: i64 = conn.query_row(
            "SELECT count(*) FROM archive_batches WHERE batch = ?",
            [&batch],
            |r| r.get(0),
        )?;
        if committed > 0 {
            publish(&path, dir)?;
        } else {
            tracing::warn!(staging = %path.display(), "discarding an archive run that did not commit; its rows are still live");
        }
        std::fs::remove_dir_all(&path).map_err(|e| io_error("cannot remove", &path, e))?;
    }
    Ok(())
}

/// Move a committed staging folder's files into the archive; returns how many.
fn publish(staging: &Path, dir: &Path) -> Result<usize, StoreError> {
    let mut moved = 0;
    for (table, _) in ARCHIVED {
        let from_table = staging.join(table);
        let Ok(months) = std::fs::read_dir(&from_table) else {
            continue;
        };
        for month in months.flatten() {
            let to_month = dir.join(table).join(month.file_name());
            std::fs::create_dir_all(&to_month)
                .map_err(|e| io_error("cannot create", &to_month, e))?;
            let files = std::fs::read_dir(month.path())
                .map_err(|e| io_error("cannot list", &month.path(), e))?;
            for file in files.flatten() {
                let target = to_month.join(file.file_name());
                std::fs::rename(file.path(), &target)
                    .map_err(|e| io_error("cannot move into", &target, e))?;
                moved += 1;
            }
            sync_dir(&to_month)?;
        }
    }
    Ok(moved)
}

/// fsync a folder, so the names in it (a file moved in) survive a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync", dir, e))
}

/// fsync every file and folder below `root`.
fn sync_tree(root: &Path) -> Result<(), StoreError> {
    let entries = std::fs::read_dir(root).map_err(|e| io_error("cannot list", root, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error("cannot sync", &path, e))?;
        }
    }
    sync_dir(root)
}

/// The incidents a run archives: finished (closed or merged) before the cutoff, and not the
/// incident of an alert that still fires (its chain is needed to resume).
const INCIDENTS: &str = "SELECT id FROM incidents
    WHERE state IN ('closed', 'merged')
      AND coalesce(closed_at, updated_at) < make_timestamp(?::BIGINT * 1000)
      AND id NOT IN (SELECT incident_id FROM v_alerts_current
                     WHERE state IN ('pending', 'firing') AND incident_id IS NOT NULL)";

/// The alert transitions a run archives: older than the cutoff, not the current state of a
/// live alert, and not part of an incident that is still open or resolved.
const ALERTS: &str = "SELECT id FROM alerts
    WHERE changed_at < make_timestamp(?::BIGINT * 1000)
      AND id NOT IN (SELECT id FROM v_alerts_current WHERE state IN ('pending', 'firing'))
      AND (incident_id IS NULL
           OR incident_id NOT IN (SELECT id FROM incidents WHERE state IN ('open', 'resolved')))";

/// Most incidents and alert transitions one transaction moves. A first run over a long
/// history (retention turned on after a year, or back after an outage) moved everything in
/// one transaction, which DuckDB must hold within `[store] memory_limit`: moving 1.7
/// million incidents and 3.5 million alert transitions in one failed at the default 128 MB
/// ("could not allocate block"), and 0.9 and 1.7 million at 96 MB, so such a history could
/// never be archived (every run failed the same way). In chunks of this size the 1.7 and
/// 3.5 million moved at 128 MB in 18 transactions (BENCHMARKS.md, "Retention in bounded
/// transactions").
pub const CHUNK: Chunk = Chunk {
    incidents: 100_000,
    alerts: 200_000,
};

/// How much one transaction of a run moves at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub incidents: u64,
    pub alerts: u64,
}

/// Move what is older than `cutoff` to Parquet under `dir`, in transactions of at most
/// [`CHUNK`]. `batch` names the files (unique per run, e.g. the run's start time); a run's
/// further transactions are batches `<batch>-1`, `<batch>-2`, ... Each commits on its own:
/// if one fails, what the earlier ones moved stays moved, and the next run goes on.
pub fn run(
    conn: &Connection,
    dir: &Path,
    cutoff: Millis,
    batch: &str,
) -> Result<Archived, RunFailed> {
    run_in_chunks(conn, dir, cutoff, batch, CHUNK)
}

/// [`run`] with chunks of a given size.
pub fn run_in_chunks(
    conn: &Connection,
    dir: &Path,
    cutoff: Millis,
    batch: &str,
    chunk: Chunk,
) -> Result<Archived, RunFailed> {
    recover(conn, dir)?;
    let mut total = Archived::default();
    for n in 0u64.. {
        let name = match n {
            0 => batch.to_string(),
            n => format!("{batch}-{n}"),
        };
        let moved = match run_one(conn, dir, cutoff, &name, chunk) {
            Ok(moved) => moved,
            Err(mut failed) => {
                total.add(&failed.moved);
                if total.rows() > 0 {
                    tracing::warn!(
                        alerts = total.alerts,
                        incidents = total.incidents,
                        incident_alerts = total.incident_alerts,
                        files = total.files,
                        "retention failed after moving part of the history; the rest moves at the next run"
                    );
                }
                failed.moved = total;
                return Err(failed);
            }
        };
        total.add(&moved);
        if moved.incidents < chunk.incidents && moved.alerts < chunk.alerts {
            break;
        }
        // What the deletes loaded into memory (the primary keys' indexes, tens of MB at
        // millions of rows) is written out and let go before the next transaction, rather
        // than when DuckDB's own checkpoint comes: without it, the next chunk's selection
        // failed for memory at 128 MB now and then. Best effort: with another connection's
        // transaction under way DuckDB may refuse, and its own checkpoint follows anyway.
        if let Err(e) = conn.execute_batch("CHECKPOINT") {
            tracing::debug!(error = %e, "no checkpoint between retention transactions");
        }
    }
    Ok(total)
}

/// One transaction: up to `chunk` of what is older than `cutoff`, as batch `batch`. An
/// error after the commit (moving the files in) carries what the commit moved.
fn run_one(
    conn: &Connection,
    dir: &Path,
    cutoff: Millis,
    batch: &str,
    chunk: Chunk,
) -> Result<Archived, RunFailed> {
    let staging = dir.join(format!(".staging-{batch}"));
    conn.execute_batch("BEGIN TRANSACTION")
        .map_err(StoreError::from)?;
    let result = stage(conn, &staging, cutoff, batch, chunk);
    match result {
        Ok(mut archived) if archived.rows() > 0 => {
            if let Err(e) = conn.execute_batch("COMMIT") {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(StoreError::from(e).into());
            }
            // Committed: the rows are out of the live tables whatever happens to the files
            // now (a staging folder left behind is published by the next run's `recover`).
            let placed = publish(&staging, dir).and_then(|files| {
                archived.files = files;
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| io_error("cannot remove", &staging, e))
            });
            match placed {
                Ok(()) => Ok(archived),
                Err(error) => Err(RunFailed {
                    moved: archived,
                    error,
                }),
            }
        }
        Ok(archived) => {
            let _ = conn.execute_batch("ROLLBACK");
            let _ = std::fs::remove_dir_all(&staging);
            Ok(archived)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let _ = std::fs::remove_dir_all(&staging);
            Err(e.into())
        }
    }
}

/// Inside the transaction: pick the rows, write them to the staging folder, delete them.
fn stage(
    conn: &Connection,
    staging: &Path,
    cutoff: Millis,
    batch: &str,
    chunk: Chunk,
) -> Result<Archived, StoreError> {
    // The oldest first (ids grow with time).
    let limit = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE retention_incidents AS {INCIDENTS} ORDER BY id LIMIT ?"
        ),
        duckdb::params![cutoff, limit(chunk.incidents)],
    )?;
    conn.execute(
        &format!("CREATE OR REPLACE TEMP TABLE retention_alerts AS {ALERTS} ORDER BY id LIMIT ?"),
        duckdb::params![cutoff, limit(chunk.alerts)],
    )?;
    let count = |sql: &str| -> Result<u64, StoreError> {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let archived = Archived {
        alerts: count("SELECT count(*) FROM retention_alerts")?,
        incidents: count("SELECT count(*) FROM retention_incidents")?,
        incident_alerts: count(
            "SELECT count(*) FROM incident_alerts WHERE incident_id IN (SELECT id FROM retention_incidents)",
        )?,
        files: 0,
    };
    if archived.rows() == 0 {
        return Ok(archived);
    }
    std::fs::create_dir_all(staging).map_err(|e| io_error("cannot create", staging, e))?;
    let selections: [(&str, &str, u64); 3] = [
        (
            "alerts",
            "id IN (SELECT id FROM retention_alerts)",
            archived.alerts,
        ),
        (
            "incidents",
            "id IN (SELECT id FROM retention_incidents)",
            archived.incidents,
        ),
        (
            "incident_alerts",
            "incident_id IN (SELECT id FROM retention_incidents)",
            archived.incident_alerts,
        ),
    ];
    for ((table, month_col), (_, filter, n)) in ARCHIVED.iter().zip(selections.iter()) {
        if *n == 0 {
            continue;
        }
        let target: PathBuf = staging.join(table);
        conn.execute_batch(&format!(
            "COPY (SELECT *, strftime({month_col}, '%Y-%m') AS month FROM {table} WHERE {filter})
             TO {} (FORMAT parquet, PARTITION_BY (month), FILENAME_PATTERN '{batch}_{{i}}')",
            literal(&target)
        ))?;
    }
    // The files are on disk before the rows go.
    sync_tree(staging)?;
    for (table, filter, _) in selections.iter().rev() {
        conn.execute_batch(&format!("DELETE FROM {table} WHERE {filter}"))?;
    }
    conn.execute(
        "INSERT INTO archive_batches (batch, committed_at, alerts, incidents, incident_alerts)
         VALUES (?, now()::TIMESTAMP, ?, ?, ?)",
        duckdb::params![
            batch,
            archived.alerts as i64,
            archived.incidents as i64,
            archived.incident_alerts as i64
        ],
    )?;
    conn.execute_batch("DROP TABLE retention_incidents; DROP TABLE retention_alerts;")?;
    Ok(archived)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
