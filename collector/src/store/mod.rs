//! DuckDB store: schema migrations, the batching writer, reads for the API, the engine snapshot
//! and the notification outbox.
//!
//! DuckDB calls block, so they never run on the async runtime: the writer owns a
//! connection on its own thread, and reads go through [`Reader`] on `spawn_blocking`.

mod migrations;
mod outbox;
mod read;
mod read_desk;
mod sql;
mod writer;

#[cfg(test)]
mod analytics_tests;
#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use duckdb::Connection;

pub use migrations::MIGRATIONS;
pub use outbox::{Due, OutboxUpdate, Outcome, PendingNotification};
pub use read::{MaintenanceFilter, Reader, SnapshotScope, TicketFilter};
pub use writer::{WriteMsg, Writer, WriterStats, write_effects};

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

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating if needed) and migrate the database file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        Self::with_connection(conn)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut conn: Connection) -> Result<Store, StoreError> {
        migrations::migrate(&mut conn)?;
        Ok(Store { conn })
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
    }

    /// Direct access, for tests and one-off tools.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}
