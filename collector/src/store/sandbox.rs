//! The read-only SQL sandbox behind `POST /api/v1/query`: one SELECT, in a read-only
//! transaction, with a row limit, on its own connection, cancellable by a time limit.
//!
//! The fences, from the inside out:
//! - The database itself runs with `enable_external_access = false` (only the database file,
//!   its temporary folder and the Parquet archive can be touched), no extension installs or
//!   autoloads, and `lock_configuration = true` (no settings can change); see
//!   [`super::harden`]. This is DuckDB's own switch, not a string check.
//! - The statement is parsed by DuckDB's parser (`json_serialize_sql`), which serializes
//!   SELECT statements only: exactly one SELECT passes, anything else (COPY, ATTACH, SET,
//!   PRAGMA, INSTALL, LOAD, INSERT, several statements...) is refused.
//! - It runs inside `BEGIN TRANSACTION READ ONLY`, so DuckDB refuses any write to the
//!   database (for example `nextval` of a sequence), and is rolled back.
//! - It runs on a connection of its own, so a long query holds no lock the writer or the
//!   API's other reads wait for; [`QueryHandle::interrupt`] cancels it.

use std::sync::Arc;
use std::time::Instant;

use duckdb::Connection;
use duckdb::types::Value;
use serde_json::{Map, Value as Json};

use super::StoreError;
use super::sql::to_json;

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not one read-only SELECT, or the sandbox refused what it tried.
    #[error("{0}")]
    Refused(String),
    /// DuckDB could not run it (unknown table, type error...).
    #[error("{0}")]
    Failed(String),
    /// Cancelled by the time limit.
    #[error("the query was cancelled")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the rows come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowFormat {
    /// Arrays in column order.
    #[default]
    Rows,
    /// Objects keyed by column name.
    Objects,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Json>,
    pub row_count: usize,
    /// More rows existed than the limit let through.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Column {
    pub name: String,
    /// DuckDB's type name, e.g. `VARCHAR`, `BIGINT`, `TIMESTAMP`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A connection for one query, with the means to cancel it from another thread.
pub struct QueryHandle {
    conn: Connection,
    interrupt: Arc<duckdb::InterruptHandle>,
}

impl std::fmt::Debug for QueryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHandle").finish_non_exhaustive()
    }
}

/// Cancels the query running on a [`QueryHandle`]; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Interrupter(Arc<duckdb::InterruptHandle>);

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupter")
    }
}

impl Interrupter {
    pub fn interrupt(&self) {
        self.0.interrupt();
    }
}

impl QueryHandle {
    pub(super) fn new(conn: Connection) -> Self {
        let interrupt = conn.interrupt_handle();
        QueryHandle { conn, interrupt }
    }

    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.interrupt.clone())
    }

    /// Run one read-only SELECT; at most `limit` rows come back. Blocks: call it from a
    /// blocking thread.
    pub fn run(
        &self,
        sql: &str,
        limit: usize,
        format: RowFormat,
    ) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        if sql.trim().is_empty() {
            return Err(QueryError::Refused(
                "the query is empty: send one SELECT".into(),
            ));
        }
        self.check_select(sql)?;
        let sql = trim_statement(sql);
        // Wrap it so DuckDB stops after limit + 1 rows; the newlines end any trailing comment.
        let wrapped = format!(
            "SELECT * FROM (\n{sql}\n) AS q LIMIT {}",
            limit.saturating_add(1)
        );
        // The wrapped text is checked again: it must still be exactly one SELECT.
        self.check_select(&wrapped)?;
        self.conn
            .execute_batch("BEGIN TRANSACTION READ ONLY")
            .map_err(|e| {
                QueryError::Failed(format!("cannot start a read-only transaction: {e}"))
            })?;
        let result = self.fetch(&wrapped, limit, format);
        // Nothing to keep: a read-only transaction always ends in a rollback.
        let _ = self.conn.execute_batch("ROLLBACK");
        let mut result = result?;
        result.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(result)
    }

    /// DuckDB's parser decides: exactly one SELECT statement, or a refusal saying what it was.
    fn check_select(&self, sql: &str) -> Result<(), QueryError> {
        let parsed: String = self
            .conn
            .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))
            .map_err(|e| self.classify(e))?;
        let parsed: Json = serde_json::from_str(&parsed)
            .map_err(|e| QueryError::Failed(format!("the SQL parser's answer is not JSON: {e}")))?;
        if parsed.get("error").and_then(Json::as_bool) == Some(true) {
            let kind = parsed
                .get("error_type")
                .and_then(Json::as_str)
                .unwrap_or("error");
            let message = parsed
                .get("error_message")
                .and_then(Json::as_str)
                .unwrap_or("unknown error");
            let not_select = kind.to_ascii_lowercase().replace('_', " ") == "not implemented";
            return Err(QueryError::Refused(if not_select {
                format!(
                    "only a read-only SELECT may run here, not {}: COPY, ATTACH, SET, PRAGMA, INSTALL, LOAD, CALL and writes are refused",
                    statement_word(sql)
                )
            } else {
                format!("the SQL does not parse: {}", one_line(message))
            }));
        }
        let statements = parsed.get("statements").and_then(Json::as_array);
        if let Some(name) = statements.and_then(|s| denied_function(&Json::Array(s.clone()))) {
            return Err(QueryError::Refused(format!(
                "the function {name}() may not run here: it writes, runs other SQL outside the sandbox, or reads raw files"
            )));
        }
        let count = statements.map_or(0, Vec::len);
        match count {
            1 => Ok(()),
            0 => Err(QueryError::Refused(
                "the query is empty: send one SELECT".into(),
            )),
            n => Err(QueryError::Refused(format!(
                "send exactly one SELECT statement, not {n}"
            ))),
        }
    }

    fn fetch(&self, sql: &str, limit: usize, format: RowFormat) -> Result<QueryResult, QueryError> {
        let columns = self.describe(sql)?;
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.classify(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.classify(e))?;
        let mut out = Vec::new();
        let mut truncated = false;
        let mut bytes = 0usize;
        while let Some(row) = rows.next().map_err(|e| self.classify(e))? {
            if out.len() == limit {
                truncated = true;
                break;
            }
            let mut values = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                // A column of type NULL has no value to read (`SELECT NULL AS x`).
                if c.type_name == "NULL" {
                    values.push(Json::Null);
                    continue;
                }
                // The driver panics on a few exotic types; that is the query's failure, not ours.
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    row.get::<_, Value>(i)
                }));
                let v = match read {
                    Ok(v) => v.map_err(|e| self.classify(e))?,
                    Err(_) => {
                        return Err(QueryError::Failed(format!(
                            "column {:?} of type {} cannot be returned as JSON: cast it, e.g. {}::VARCHAR",
                            c.name, c.type_name, c.name
                        )));
                    }
                };
                let json = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    to_json(&c.name, v)
                }))
                .map_err(|_| {
                    QueryError::Failed(format!(
                        "column {:?} holds a {} value that cannot be returned as JSON: cast it to VARCHAR",
                        c.name, c.type_name
                    ))
                })?;
                bytes += approx_size(&json);
                values.push(json);
            }
            if bytes > MAX_ANSWER_BYTES {
                return Err(QueryError::Refused(format!(
                    "the answer is larger than {} MiB: select fewer or shorter columns, or fewer rows",
                    MAX_ANSWER_BYTES >> 20
                )));
            }
            out.push(match format {
                RowFormat::Rows => Json::Array(values),
                RowFormat::Objects => {
                    let mut m = Map::new();
                    for (c, v) in columns.iter().zip(values) {
                        m.insert(c.name.clone(), v);
                    }
                    Json::Object(m)
                }
            });
        }
        Ok(QueryResult {
            row_count: out.len(),
            columns,
            rows: out,
            truncated,
            elapsed_ms: 0,
        })
    }

    /// The result's column names and DuckDB types, without running the query.
    fn describe(&self, sql: &str) -> Result<Vec<Column>, QueryError> {
        let mut stmt = self
            .conn
            .prepare(&format!("DESCRIBE {sql}"))
            .map_err(|e| self.classify(e))?;
        let rows = stmt
            .query_map([], |r| {
                let type_name: String = r.get(1)?;
                Ok(Column {
                    name: r.get(0)?,
                    // DESCRIBE quotes keyword types (`"NULL"`).
                    type_name: type_name.trim_matches('"').to_string(),
                })
            })
            .map_err(|e| self.classify(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.classify(e))
    }

    /// A DuckDB error as a refusal (the sandbox said no) or a failure (bad SQL).
    fn classify(&self, e: duckdb::Error) -> QueryError {
        let text = e.to_string();
        if text.contains("INTERRUPT") || text.contains("Interrupted") {
            return QueryError::Interrupted;
        }
        let refused = [
            "disabled by configuration",
            "Permission Error",
            "read-only mode",
            "external access",
            "lock_configuration",
            "locked",
        ];
        if refused.iter().any(|r| text.contains(r)) {
            return QueryError::Refused(format!("refused by the sandbox: {}", one_line(&text)));
        }
        QueryError::Failed(one_line(&text))
    }
}

/// Largest answer, as JSON, a query may return.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// About how many bytes a value takes as JSON (for the answer's size limit).
fn approx_size(v: &Json) -> usize {
    match v {
        Json::Null | Json::Bool(_) => 5,
        Json::Number(_) => 12,
        Json::String(s) => s.len() + 2,
        Json::Array(a) => 2 + a.iter().map(approx_size).sum::<usize>(),
        Json::Object(m) => {
            2 + m
                .iter()
                .map(|(k, v)| k.len() + 4 + approx_size(v))
                .sum::<usize>()
        }
    }
}

/// Functions a SELECT may call that step outside the read-only sandbox: they run SQL on a
/// connection of their own (beyond the read-only transaction and the time limit), change the
/// database or its sequences, checkpoint it, switch logging or profiling, take raw pointers, or
/// read the raw bytes of the database's own files.
const DENIED_FUNCTIONS: &[&str] = &[
    "json_execute_serialized_sql",
    "query",
    "query_table",
    "setval",
    "nextval",
    "checkpoint",
    "force_checkpoint",
    "truncate_duckdb_logs",
    "enable_logging",
    "disable_logging",
    "enable_profiling",
    "disable_profiling",
    "destroy_external_resource",
    "arrow_scan",
    "arrow_scan_dumb",
    "read_blob",
    "read_text",
    "read_duckdb",
    "getenv",
];

/// The first denied function the parse tree calls, if any (names as DuckDB's parser wrote them,
/// compared case-insensitively; a schema prefix does not hide them).
fn denied_function(tree: &Json) -> Option<String> {
    match tree {
        Json::Object(m) => {
            if let Some(Json::String(name)) = m.get("function_name") {
                let name = name.to_ascii_lowercase();
                if DENIED_FUNCTIONS.contains(&name.as_str()) {
                    return Some(name);
                }
            }
            m.values().find_map(denied_function)
        }
        Json::Array(items) => items.iter().find_map(denied_function),
        _ => None,
    }
}

/// The statement without its terminating semicolons, so it can be wrapped in a subquery. Only
/// called on text the parser accepted as exactly one SELECT, so every `;` outside literals and
/// comments is a terminator.
fn trim_statement(sql: &str) -> String {
    #[derive(PartialEq)]
    enum In {
        Code,
        Single,
        Double,
        Dollar,
        Line,
        Block,
    }
    let mut out = String::with_capacity(sql.len());
    let mut state = In::Code;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match state {
            In::Code => match (c, next) {
                (';', _) => continue,
                ('\'', _) => state = In::Single,
                ('"', _) => state = In::Double,
                ('$', Some('$')) => {
                    out.push(c);
                    chars.next();
                    state = In::Dollar;
                    out.push('$');
                    continue;
                }
                ('-', Some('-')) => state = In::Line,
                ('/', Some('*')) => state = In::Block,
                _ => {}
            },
            In::Single if c == '\'' => state = In::Code,
            In::Double if c == '"' => state = In::Code,
            In::Dollar if c == '$' && next == Some('$') => {
                out.push(c);
                chars.next();
                state = In::Code;
                out.push('$');
                continue;
            }
            In::Line if c == '\n' => state = In::Code,
            In::Block if c == '*' && next == Some('/') => {
                out.push(c);
                chars.next();
                state = In::Code;
                out.push('/');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// The first word of the statement, upper-cased, for messages.
fn statement_word(sql: &str) -> String {
    sql.split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .take(16)
        .collect::<String>()
        .to_uppercase()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl super::Reader {
    /// A connection of its own for one sandboxed query, sharing this database.
    pub fn query_handle(&self) -> Result<QueryHandle, StoreError> {
        self.with(|c| Ok(QueryHandle::new(c.try_clone()?)))
    }
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
