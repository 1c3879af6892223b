//! DuckDB store: schema migrations, the batching writer, reads for the API, the engine snapshot
//! and the notification outbox.
//!
//! DuckDB calls block, so they never run on the async runtime: the writer owns a
//! connection on its own thread, and reads go through [`Reader`] on `spawn_blocking`.

mod analytics;
mod migrations;
mod nodes;
mod outbox;
mod read;
mod read_desk;
pub mod retention;
mod rows;
mod sandbox;
mod sql;
mod trim;
mod writer;

#[cfg(test)]
mod analytics_tests;
#[cfg(test)]
mod open_tests;
#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod rows_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use duckdb::Connection;

pub use analytics::{Figures, GroupBy, Summary, SummaryQuery};
pub use migrations::MIGRATIONS;
pub use outbox::{Due, OutboxUpdate, Outcome, PendingNotification};
pub use read::{MaintenanceFilter, Reader, SnapshotScope, TicketFilter};
pub use rows::write_effects;
pub use sandbox::{Interrupter, QueryError, QueryHandle, QueryResult, RowFormat};
pub(crate) use trim::resident_bytes;
pub use trim::{MallocBytes, malloc_bytes};
pub use writer::{DuckdbMemory, WriteMsg, Writer, WriterStats};

use crate::time::Millis;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot open the database: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("migration {version} failed: {message}")]
    Migration { version: i32, message: String },
    #[error(
        "the database is at schema version {found}, newer than this build knows ({known}); upgrade tocsin"
    )]
    TooNew { found: i32, known: i32 },
    #[error("stored data is not what this build expects: {0}")]
    Corrupt(String),
    #[error("archive: {0}")]
    Archive(String),
}

/// A payload refused at intake, kept with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    pub received_at: Millis,
    pub topic: String,
    pub site: Option<String>,
    pub node: Option<String>,
    pub reason: String,
    pub error: String,
    pub payload_size: usize,
    /// At most the first 4 KiB, lossily decoded.
    pub payload: String,
}

/// Most bytes of a refused payload that are kept.
pub const REJECTED_KEEP_BYTES: usize = 4096;

/// Lock the database down for the whole process, with DuckDB's own switches: no file access
/// beyond the database, its temporary folder and `archive`; no extension installs or
/// autoloads; and no further setting changes. The query sandbox relies on this.
fn harden(conn: &Connection, archive: Option<&Path>) -> Result<(), StoreError> {
    let mut sql = String::from(
        "SET autoinstall_known_extensions = false;
         SET autoload_known_extensions = false;
         SET allow_community_extensions = false;",
    );
    if let Some(dir) = archive {
        let mut dir = dir.to_string_lossy().into_owned();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        sql.push_str(&format!(
            "SET allowed_directories = [{}];",
            retention::literal(Path::new(&dir))
        ));
    }
    sql.push_str("SET enable_external_access = false; SET lock_configuration = true;");
    conn.execute_batch(&sql).map_err(|e| StoreError::Open {
        path: PathBuf::from("(database)"),
        message: format!("cannot lock the database's settings down: {e}"),
    })
}

/// Bound DuckDB's buffer pool (before the settings are locked).
fn set_memory_limit(conn: &Connection, limit: &str) -> Result<(), String> {
    conn.execute_batch(&format!(
        "SET memory_limit = '{}'",
        limit.replace('\'', "''")
    ))
        .map_err(|e| {
            format!("[store] memory_limit = {limit:?} is not a size DuckDB takes ({e}); use e.g. \"256MB\" or \"1GiB\"")
        })
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating if needed) and migrate the database file, without a Parquet archive.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_archive(path, None)
    }

    /// Open and migrate the database of `[store]`: its file, its Parquet archive and its
    /// memory limit.
    pub fn open_configured(config: &crate::config::StoreConfig) -> Result<Store, StoreError> {
        Self::open_inner(
            &config.path,
            Some(&config.archive_dir()),
            Some(&config.memory_limit),
        )
    }

    /// Open and migrate the database file; with `archive`, the `*_archive` views read the
    /// Parquet history there and retention may write to it (the only folder besides the
    /// database's own files that DuckDB may touch).
    pub fn open_with_archive(path: &Path, archive: Option<&Path>) -> Result<Store, StoreError> {
        Self::open_inner(path, archive, None)
    }

    fn open_inner(
        path: &Path,
        archive: Option<&Path>,
        memory_limit: Option<&str>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let archive = match archive {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.to_path_buf(),
                    message: format!("cannot create the archive folder {}: {e}", dir.display()),
                })?;
                Some(dir.canonicalize().map_err(|e| StoreError::Open {
                    path: path.to_path_buf(),
                    message: format!("cannot resolve the archive folder {}: {e}", dir.display()),
                })?)
            }
            None => None,
        };
        if let Some(limit) = memory_limit {
            set_memory_limit(&conn, limit).map_err(|message| StoreError::Open {
                path: path.to_path_buf(),
                message,
            })?;
        }
        Self::with_connection(conn, archive.as_deref())
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::with_connection(Connection::open_in_memory()?, None)
    }

    fn with_connection(mut conn: Connection, archive: Option<&Path>) -> Result<Store, StoreError> {
        // Checkpoints drop the row groups whose rows are all deleted, and merge no partly
        // deleted ones: merging rewrote every kept report after each prune (`nodes.rs`).
        conn.execute_batch("SET max_vacuum_tasks = 0")?;
        migrations::migrate(&mut conn)?;
        harden(&conn, archive)?;
        if let Some(dir) = archive {
            retention::attach_archive(&conn, dir)?;
        }
        Ok(Store { conn })
    }

    /// A connection of its own for one sandboxed query (`POST /api/v1/query`).
    pub fn query_handle(&self) -> Result<QueryHandle, StoreError> {
        Ok(QueryHandle::new(self.conn.try_clone()?))
    }

    /// Another connection to this database (retention runs on one of its own).
    pub fn clone_connection(&self) -> Result<Connection, StoreError> {
        Ok(self.conn.try_clone()?)
    }

    /// A reader sharing this database, for the API.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Ok(Reader::new(Arc::new(Mutex::new(self.conn.try_clone()?))))
    }

    /// The state the engine resumes from, as of `scope.now`.
    pub fn snapshot(&self, scope: SnapshotScope) -> Result<crate::engine::Snapshot, StoreError> {
        read::snapshot(&self.conn, scope)
    }

    /// Hand the connection to a writer thread.
    pub fn into_writer(self, config: &crate::config::StoreConfig) -> Writer {
        Writer::new(self.conn, config.batch_size, config.flush_interval)
            .with_report_interval(config.report_interval)
            .with_report_spread(true)
    }

    /// Direct access, for tests and one-off tools.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}
