//! Reads: the API's queries (as JSON) and the snapshot the engine resumes from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use duckdb::types::Value;
use serde_json::{Map, Value as Json, json};

use super::StoreError;
use super::sql::{millis_of, query_json};
use crate::engine::model::{IncidentRow, IncidentState, NodeRow, TicketRow, TicketState};
use crate::engine::{Ids, Level, Priority, Snapshot};
use crate::rules::{ActiveAlert, AlertState, Category, Severity};

/// Filters for the ticket list.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub state: Option<String>,
    pub priority: Option<String>,
    pub limit: Option<usize>,
}

/// A shared read connection; every call blocks, so call it from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct Reader {
    conn: Arc<Mutex<Connection>>,
}

const TS_NODE_COLS: &str =
    "site, node, kind, state, agent_version, inventory::VARCHAR AS inventory,
    labels::VARCHAR AS labels, parents::VARCHAR AS parents, via, last_seq, last_ts, last_report_at,
    last_report::VARCHAR AS last_report, state_changed_at, first_seen, updated_at";

const ALERT_COLS: &str =
    "id, alert_key, rule, site, node, labels::VARCHAR AS labels, state, severity, category,
    value, summary, detail, runbook, started_at, changed_at, incident_id";

const TICKET_COLS: &str = "id, number, kind, state, priority, impact, urgency, category, assignment_group, summary,
    description, reporter::VARCHAR AS reporter, environment::VARCHAR AS environment, incident_id, site, node,
    runbook, opened_at, acknowledged_at, resolved_at, closed_at, updated_at";

impl Reader {
    pub fn new(conn: Arc<Mutex<Connection>>) -> Self {
        Reader { conn }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, duckdb::Error>,
    ) -> Result<T, StoreError> {
        let guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Corrupt("reader lock poisoned by an earlier panic".into()))?;
        Ok(f(&guard)?)
    }

    pub fn nodes(&self) -> Result<Vec<Map<String, Json>>, StoreError> {
        self.with(|c| {
            query_json(
                c,
                &format!("SELECT {TS_NODE_COLS} FROM nodes ORDER BY site, node"),
                &[],
            )
        })
    }

    /// Current alerts (latest transition of each), optionally by state.
    pub fn alerts(&self, state: Option<&str>) -> Result<Vec<Map<String, Json>>, StoreError> {
        self.with(|c| match state {
            Some(s) => query_json(
                c,
                &format!("SELECT {ALERT_COLS} FROM v_alerts_current WHERE state = ? ORDER BY changed_at DESC"),
                &[&s],
            ),
            None => query_json(
                c,
                &format!("SELECT {ALERT_COLS} FROM v_alerts_current ORDER BY changed_at DESC LIMIT 1000"),
                &[],
            ),
        })
    }

    pub fn incidents(&self, state: Option<&str>) -> Result<Vec<Map<String, Json>>, StoreError> {
        let base = "SELECT i.*, t.number AS ticket_number,
                (SELECT count(*) FROM incident_alerts a WHERE a.incident_id = i.id) AS alert_count
            FROM incidents i LEFT JOIN tickets t ON t.id = i.ticket_id";
        self.with(|c| match state {
            Some(s) => query_json(
                c,
                &format!("{base} WHERE i.state = ? ORDER BY i.id DESC"),
                &[&s],
            ),
            None => query_json(c, &format!("{base} ORDER BY i.id DESC LIMIT 1000"), &[]),
        })
    }

    /// One incident with its alerts split into root cause and symptoms.
    pub fn incident(&self, id: i64) -> Result<Option<Json>, StoreError> {
        self.with(|c| {
            let mut rows = query_json(
                c,
                "SELECT i.*, t.number AS ticket_number FROM incidents i
                 LEFT JOIN tickets t ON t.id = i.ticket_id WHERE i.id = ?",
                &[&id],
            )?;
            let Some(mut inc) = rows.pop() else {
                return Ok(None);
            };
            let alerts = query_json(
                c,
                &format!(
                    "SELECT l.role, l.linked_at, {} FROM incident_alerts l
                     JOIN v_alerts_current a ON a.alert_key = l.alert_key
                     WHERE l.incident_id = ? ORDER BY l.linked_at, a.id",
                    ALERT_COLS
                        .split(',')
                        .map(|c| format!("a.{}", c.trim()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&id],
            )?;
            let (root, symptoms): (Vec<_>, Vec<_>) = alerts
                .into_iter()
                .partition(|a| a.get("role").and_then(Json::as_str) == Some("root"));
            inc.insert(
                "root_alert_detail".into(),
                root.into_iter()
                    .next()
                    .map(Json::Object)
                    .unwrap_or(Json::Null),
            );
            inc.insert(
                "symptoms".into(),
                Json::Array(symptoms.into_iter().map(Json::Object).collect()),
            );
            Ok(Some(Json::Object(inc)))
        })
    }

    pub fn tickets(&self, f: &TicketFilter) -> Result<Vec<Map<String, Json>>, StoreError> {
        let limit = f.limit.unwrap_or(1000).min(10_000) as i64;
        self.with(|c| {
            query_json(
                c,
                &format!(
                    "SELECT {TICKET_COLS} FROM tickets
                     WHERE (?::VARCHAR IS NULL OR state = ?) AND (?::VARCHAR IS NULL OR priority = ?)
                     ORDER BY id DESC LIMIT ?"
                ),
                &[&f.state, &f.state, &f.priority, &f.priority, &limit],
            )
        })
    }

    /// One ticket by number (`INC-000001`) or id, with its full event log.
    pub fn ticket(&self, key: &str) -> Result<Option<Json>, StoreError> {
        let id: Option<i64> = key.parse().ok();
        self.with(|c| {
            let mut rows = query_json(
                c,
                &format!("SELECT {TICKET_COLS} FROM tickets WHERE number = ? OR id = ?"),
                &[&key, &id],
            )?;
            let Some(mut t) = rows.pop() else {
                return Ok(None);
            };
            let tid = t.get("id").and_then(Json::as_i64).unwrap_or(-1);
            let events = query_json(
                c,
                "SELECT id, created_at, kind, actor, message, data::VARCHAR AS data FROM ticket_events
                 WHERE ticket_id = ? ORDER BY id",
                &[&tid],
            )?;
            t.insert("events".into(), Json::Array(events.into_iter().map(Json::Object).collect()));
            Ok(Some(Json::Object(t)))
        })
    }

    pub fn rejected(&self, limit: usize) -> Result<Vec<Map<String, Json>>, StoreError> {
        let limit = limit.min(10_000) as i64;
        self.with(|c| {
            query_json(
                c,
                "SELECT id, received_at, topic, site, node, reason, error, payload_size, payload
                 FROM rejected_payloads ORDER BY id DESC LIMIT ?",
                &[&limit],
            )
        })
    }

    /// Row counts for `/metrics` and readiness.
    pub fn counts(&self) -> Result<Json, StoreError> {
        self.with(|c| {
            let mut m = Map::new();
            for (name, sql) in [
                ("nodes", "SELECT count(*) FROM nodes"),
                (
                    "alerts_firing",
                    "SELECT count(*) FROM v_alerts_current WHERE state = 'firing'",
                ),
                (
                    "incidents_open",
                    "SELECT count(*) FROM incidents WHERE state = 'open'",
                ),
                (
                    "tickets_open",
                    "SELECT count(*) FROM tickets WHERE state NOT IN ('resolved', 'closed')",
                ),
                (
                    "rejected_payloads",
                    "SELECT count(*) FROM rejected_payloads",
                ),
            ] {
                let n: i64 = c.query_row(sql, [], |r| r.get(0))?;
                m.insert(name.into(), json!(n));
            }
            Ok(Json::Object(m))
        })
    }
}

fn text(row: &duckdb::Row<'_>, i: usize) -> Result<String, duckdb::Error> {
    row.get(i)
}

fn parse_enum<T>(what: &str, s: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    f(s).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {s:?}")))
}

fn ms(row: &duckdb::Row<'_>, i: usize) -> Result<Option<i64>, duckdb::Error> {
    let v: Value = row.get(i)?;
    Ok(millis_of(v))
}

fn json_col<T: serde::de::DeserializeOwned + Default>(s: Option<String>) -> T {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// Everything the engine needs to continue after a restart.
pub fn snapshot(conn: &Connection) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();

    let mut stmt = conn.prepare(
        "SELECT site, node, kind, state, agent_version, inventory::VARCHAR, labels::VARCHAR, parents::VARCHAR, via,
                last_seq, last_ts, last_report_at, last_report::VARCHAR, state_changed_at, first_seen, updated_at
         FROM nodes",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: String = text(r, 2)?;
        snap.nodes.push(NodeRow {
            site: text(r, 0)?,
            node: text(r, 1)?,
            kind: if kind == "network" {
                tocsin_protocol::NodeKind::Network
            } else {
                tocsin_protocol::NodeKind::Host
            },
            state: text(r, 3)?,
            agent_version: r.get(4)?,
            inventory: r
                .get::<_, Option<String>>(5)?
                .and_then(|s| serde_json::from_str(&s).ok()),
            labels: json_col(r.get(6)?),
            parents: json_col(r.get(7)?),
            via: r.get(8)?,
            last_seq: r.get(9)?,
            last_ts: ms(r, 10)?,
            last_report_at: ms(r, 11)?,
            last_report: r
                .get::<_, Option<String>>(12)?
                .and_then(|s| serde_json::from_str(&s).ok()),
            state_changed_at: ms(r, 13)?.unwrap_or(0),
            first_seen: ms(r, 14)?.unwrap_or(0),
            updated_at: ms(r, 15)?.unwrap_or(0),
        });
    }

    let mut stmt = conn.prepare(
        "SELECT alert_key, rule, site, node, labels::VARCHAR, state, started_at, incident_id
         FROM v_alerts_current WHERE state IN ('pending', 'firing')",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let state: String = text(r, 5)?;
        let labels: BTreeMap<String, String> = json_col(r.get(4)?);
        snap.alerts.push((
            ActiveAlert {
                key: text(r, 0)?,
                rule: text(r, 1)?,
                site: text(r, 2)?,
                node: text(r, 3)?,
                labels,
                state: parse_enum("alert state", &state, AlertState::parse)?,
                started_at: ms(r, 6)?.unwrap_or(0),
            },
            r.get(7)?,
        ));
    }

    let mut stmt = conn.prepare(
        "SELECT id, state, title, severity, category, priority, site, node, root_alert, root_cause, ticket_id,
                opened_at, resolved_at, closed_at, updated_at
         FROM incidents WHERE state <> 'closed' ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        snap.incidents.push(IncidentRow {
            id: r.get(0)?,
            state: parse_enum("incident state", &text(r, 1)?, IncidentState::parse)?,
            title: text(r, 2)?,
            severity: parse_enum("severity", &text(r, 3)?, Severity::parse)?,
            category: parse_enum("category", &text(r, 4)?, Category::parse)?,
            priority: parse_enum("priority", &text(r, 5)?, Priority::parse)?,
            site: text(r, 6)?,
            node: text(r, 7)?,
            root_alert: text(r, 8)?,
            root_cause: text(r, 9)?,
            ticket_id: r.get(10)?,
            opened_at: ms(r, 11)?.unwrap_or(0),
            resolved_at: ms(r, 12)?,
            closed_at: ms(r, 13)?,
            updated_at: ms(r, 14)?.unwrap_or(0),
        });
    }

    let mut stmt = conn.prepare(
        "SELECT id, number, kind, state, priority, impact, urgency, category, assignment_group, summary,
                description, reporter::VARCHAR, environment::VARCHAR, incident_id, site, node, runbook,
                opened_at, acknowledged_at, resolved_at, closed_at, updated_at
         FROM tickets WHERE state <> 'closed' ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        snap.tickets.push(TicketRow {
            id: r.get(0)?,
            number: text(r, 1)?,
            kind: text(r, 2)?,
            state: parse_enum("ticket state", &text(r, 3)?, TicketState::parse)?,
            priority: parse_enum("priority", &text(r, 4)?, Priority::parse)?,
            impact: parse_enum("impact", &text(r, 5)?, Level::parse)?,
            urgency: parse_enum("urgency", &text(r, 6)?, Level::parse)?,
            category: parse_enum("category", &text(r, 7)?, Category::parse)?,
            assignment_group: text(r, 8)?,
            summary: text(r, 9)?,
            description: text(r, 10)?,
            reporter: json_col::<Json>(r.get(11)?),
            environment: json_col::<Json>(r.get(12)?),
            incident_id: r.get(13)?,
            site: r.get(14)?,
            node: r.get(15)?,
            runbook: r.get(16)?,
            opened_at: ms(r, 17)?.unwrap_or(0),
            acknowledged_at: ms(r, 18)?,
            resolved_at: ms(r, 19)?,
            closed_at: ms(r, 20)?,
            updated_at: ms(r, 21)?.unwrap_or(0),
        });
    }

    let next = |sql: &str| -> Result<i64, StoreError> {
        Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))?)
    };
    snap.next_ids = Ids {
        alert: next("SELECT coalesce(max(id), 0) + 1 FROM alerts")?,
        incident: next("SELECT coalesce(max(id), 0) + 1 FROM incidents")?,
        ticket: next("SELECT coalesce(max(id), 0) + 1 FROM tickets")?,
        ticket_event: next("SELECT coalesce(max(id), 0) + 1 FROM ticket_events")?,
        incident_number: next(
            "SELECT coalesce(max(TRY_CAST(substr(number, 5) AS BIGINT)), 0) + 1 FROM tickets WHERE number LIKE 'INC-%'",
        )?,
    };
    Ok(snap)
}
