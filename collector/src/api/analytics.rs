//! Analytics endpoints: the headline figures (`GET /api/v1/analytics/summary`) and the
//! read-only SQL sandbox (`POST /api/v1/query`) with its row limit, time limit and
//! concurrency limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiState, Resp, error, json_resp};
use crate::config::AnalyticsConfig;
use crate::store::{GroupBy, Interrupter, QueryError, RowFormat, SummaryQuery};
use crate::time::{Millis, now_millis};

/// The default window of the summary: the last 30 days.
const DEFAULT_WINDOW_MS: Millis = 30 * 86_400_000;

/// The query endpoint's limits and the queries running now.
#[derive(Debug)]
pub struct QueryGate {
    pub limits: AnalyticsConfig,
    running: Arc<Semaphore>,
    /// Requests waiting for a slot (at most `query_queue`).
    waiting: AtomicU64,
    pub stats: QueryStats,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct QueryStats {
    pub ok: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub busy: AtomicU64,
}

impl QueryGate {
    pub fn new(limits: AnalyticsConfig) -> Self {
        QueryGate {
            running: Arc::new(Semaphore::new(limits.query_concurrency)),
            waiting: AtomicU64::new(0),
            limits,
            stats: QueryStats::default(),
        }
    }

    /// A running slot: at once if one is free, else after waiting in the bounded queue for at
    /// most the time limit. None when the queue is full or the wait timed out.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.running.clone().try_acquire_owned() {
            return Some(p);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let permit = if queued < self.limits.query_queue as u64 {
            tokio::time::timeout(
                self.limits.query_timeout,
                self.running.clone().acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok)
        } else {
            None
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit
    }

    /// Prometheus lines for the query counters.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP tocsin_queries_total Read-only SQL queries by outcome.\n");
        out.push_str("# TYPE tocsin_queries_total counter\n");
        for (outcome, n) in [
            ("ok", &self.stats.ok),
            ("refused", &self.stats.refused),
            ("failed", &self.stats.failed),
            ("timed_out", &self.stats.timed_out),
            ("busy", &self.stats.busy),
        ] {
            out.push_str(&format!(
                "tocsin_queries_total{{outcome=\"{outcome}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
    }
}

/// Interrupts a query from `after` on, again every 100 ms until it has returned: DuckDB clears
/// a pending interrupt when the next statement starts, so one signal can be lost.
async fn cancel_until_done(interrupter: Interrupter, done: Arc<AtomicBool>, after: Duration) {
    tokio::time::sleep(after).await;
    while !done.load(Ordering::Acquire) {
        interrupter.interrupt();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cancels the query at once when the request is dropped before it finished (the client hung
/// up); the answer would go nowhere.
struct CancelOnDrop {
    interrupter: Interrupter,
    done: Arc<AtomicBool>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.done.load(Ordering::Acquire) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(cancel_until_done(
                self.interrupter.clone(),
                self.done.clone(),
                Duration::ZERO,
            ));
        }
    }
}

/// A time given as RFC 3339 or as a date (midnight UTC).
fn parse_time(name: &str, v: &str) -> Result<Millis, String> {
    let ts = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_string()
    };
    ts.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            format!("{name}={v:?} is not a time: use RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)")
        })
}

/// The summary request from the query string.
pub fn summary_query(q: &HashMap<String, String>, now: Millis) -> Result<SummaryQuery, String> {
    let to = q
        .get("to")
        .map(|v| parse_time("to", v))
        .transpose()?
        .unwrap_or(now);
    let from = q
        .get("from")
        .map(|v| parse_time("from", v))
        .transpose()?
        .unwrap_or(to - DEFAULT_WINDOW_MS);
    if from >= to {
        return Err("from must be before to".into());
    }
    let group_by = match q.get("group_by").or_else(|| q.get("by")) {
        None => GroupBy::Priority,
        Some(v) => GroupBy::parse(v)
            .ok_or_else(|| format!("group_by={v:?} is not one of {}", GroupBy::NAMES.join(", ")))?,
    };
    Ok(SummaryQuery { from, to, group_by })
}

pub async fn summary(state: &ApiState, q: &HashMap<String, String>) -> Resp {
    let query = match summary_query(q, now_millis()) {
        Ok(s) => s,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let reader = state.reader.clone();
    match tokio::task::spawn_blocking(move || reader.summary(query)).await {
        Ok(Ok(s)) => json_resp(StatusCode::OK, &json!(s)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "analytics summary failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    format: Option<String>,
}

/// `POST /api/v1/query`: one read-only SELECT.
pub async fn query(state: &ApiState, body: &[u8]) -> Resp {
    let gate = state.queries.clone();
    let stats = &gate.stats;
    let req: QueryRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON like {{\"sql\": \"SELECT ...\", \"limit\": 100}}: {e}"
                ),
            );
        }
    };
    let limits = &gate.limits;
    let limit = req.limit.unwrap_or(limits.query_default_rows);
    if limit == 0 || limit > limits.query_max_rows {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..={}", limits.query_max_rows),
        );
    }
    let format = match req.format.as_deref() {
        None | Some("rows") => RowFormat::Rows,
        Some("objects") => RowFormat::Objects,
        Some(other) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                format!("format={other:?} is not one of rows, objects"),
            );
        }
    };
    let Some(permit) = gate.slot().await else {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} queries are running and {} waiting already; try again when one has finished",
                limits.query_concurrency, limits.query_queue
            ),
        );
    };
    let handle = match state.reader.query_handle() {
        Ok(h) => h,
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let sql = req.sql;
    let timeout = limits.query_timeout;
    // The slot and the cancelling belong to the query, not to this request: a client that
    // hangs up drops this future, but the query still ends at the time limit and only then
    // frees its slot.
    let done = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop {
        interrupter: handle.interrupter(),
        done: done.clone(),
    };
    tokio::spawn(cancel_until_done(
        handle.interrupter(),
        done.clone(),
        timeout,
    ));
    let task = tokio::task::spawn_blocking(move || {
        let _slot = permit;
        let result = handle.run(&sql, limit, format);
        done.store(true, Ordering::Release);
        result
    });
    let outcome = task.await;
    drop(guard);
    match outcome {
        Ok(Ok(result)) => {
            stats.ok.fetch_add(1, Ordering::Relaxed);
            json_resp(StatusCode::OK, &json!(result))
        }
        Ok(Err(QueryError::Interrupted)) => {
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
            error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the query ran longer than {} and was cancelled: narrow it (WHERE, LIMIT) or raise [analytics] query_timeout",
                    humantime::format_duration(timeout)
                ),
            )
        }
        Ok(Err(QueryError::Refused(m))) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::UNPROCESSABLE_ENTITY, format!("refused: {m}"))
        }
        Ok(Err(QueryError::Failed(m))) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the query failed: {m}"),
            )
        }
        Ok(Err(QueryError::Store(e))) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn summary_window_defaults_to_the_last_30_days_by_priority() {
        let s = summary_query(&q(&[]), 100 * 86_400_000).expect("valid");
        assert_eq!(s.to, 100 * 86_400_000);
        assert_eq!(s.from, 70 * 86_400_000);
        assert_eq!(s.group_by, GroupBy::Priority);
    }

    #[test]
    fn summary_takes_dates_and_rfc3339_and_refuses_the_rest() {
        let s = summary_query(
            &q(&[
                ("from", "2026-11-01"),
                ("to", "2026-11-02T12:00:00Z"),
                ("group_by", "day"),
            ]),
            0,
        )
        .expect("valid");
        assert_eq!(s.from, 1_793_491_200_000);
        assert_eq!(s.to, 1_793_491_200_000 + 36 * 3_600_000);
        assert_eq!(s.group_by, GroupBy::Day);
        assert!(summary_query(&q(&[("from", "yesterday")]), 0).is_err());
        assert!(
            summary_query(&q(&[("group_by", "team")]), 0)
                .expect_err("bad group")
                .contains("priority, category, site, group, day, none")
        );
        assert!(summary_query(&q(&[("from", "2026-11-02"), ("to", "2026-11-01")]), 0).is_err());
    }
}
