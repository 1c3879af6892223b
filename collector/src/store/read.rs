//! Reads: the API's queries (as JSON) and the snapshot the engine resumes from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use duckdb::types::Value;
use duckdb::{Connection, params};
use serde_json::{Map, Value as Json, json};

use super::StoreError;
use super::read_desk::{EVENT_ROW_COLS, TICKET_ROW_COLS, event_row, ticket_row};
use super::sql::{millis_of, query_json};
use crate::engine::model::{
    IncidentRow, IncidentState, MaintenanceRow, NodeRow, Presence, ProblemRow, ProblemState,
};
use crate::engine::{Ids, Level, Priority, RecentIncident, SimilarCase, Snapshot};
use crate::rules::{ActiveAlert, AlertState, Category, Severity};
use crate::time::Millis;

/// Filters for the ticket list.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub state: Option<String>,
    pub priority: Option<String>,
    /// Assignment group.
    pub group: Option<String>,
    pub assignee: Option<String>,
    /// `incident` or `request`.
    pub kind: Option<String>,
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
    value, summary, description, detail, runbook, started_at, changed_at, incident_id, source, suppressed_by,
    flapping";

const TICKET_COLS: &str = "id, number, kind, state, priority, impact, urgency, category, assignment_group, summary,
    description, reporter::VARCHAR AS reporter, environment::VARCHAR AS environment, incident_id, site, node,
    runbook, opened_at, acknowledged_at, resolved_at, closed_at, updated_at, problem_id,
    (SELECT p.number FROM problems p WHERE p.id = tickets.problem_id) AS problem_number,
    coalesce(workaround, (SELECT p.workaround FROM problems p WHERE p.id = tickets.problem_id)) AS workaround,
    assignee, affected::VARCHAR AS affected, similar_cases::VARCHAR AS similar, detected_at, resolution, cause_code,
    response_target_ms, resolution_target_ms, response_due_at, resolution_due_at, response_breached_at,
    resolution_breached_at, resolution_elapsed_ms, escalation_level, escalated_at, reopened, close_held,
    sla::VARCHAR AS sla";

const PROBLEM_COLS: &str = "id, number, state, title, signature, rule, site, node, group_key, category, kb,
    workaround, incident_count, opened_at, last_incident_at, known_error_at, resolved_at, updated_at";

/// Maintenance columns, with `in_effect`: the window (or its current repetition) covers `now_ms`.
const MAINTENANCE_COLS: &str =
    "id, name, \"match\"::VARCHAR AS \"match\", starts_at, ends_at, every_ms, reason,
    created_by, created_at, cancelled_at,
    CASE WHEN cancelled_at IS NOT NULL OR n.now_ms < epoch_ms(starts_at) THEN false
         WHEN every_ms IS NULL OR every_ms <= 0 THEN n.now_ms < epoch_ms(ends_at)
         ELSE (n.now_ms - epoch_ms(starts_at)) % every_ms < epoch_ms(ends_at) - epoch_ms(starts_at)
    END AS in_effect";

/// Which maintenance windows to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceFilter {
    All,
    /// Not cancelled, and not over (in effect now, starting later, or recurring).
    Active,
}

impl Reader {
    pub fn new(conn: Arc<Mutex<Connection>>) -> Self {
        Reader { conn }
    }

    pub(super) fn with<T>(
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
                &format!("SELECT {TS_NODE_COLS} FROM v_nodes ORDER BY site, node"),
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
        let base = "SELECT i.*, t.number AS ticket_number, p.number AS problem_number,
                (SELECT count(*) FROM incident_alerts a WHERE a.incident_id = i.id) AS alert_count
            FROM incidents i LEFT JOIN tickets t ON t.id = i.ticket_id
            LEFT JOIN problems p ON p.id = i.problem_id";
        self.with(|c| match state {
            Some(s) => query_json(
                c,
                &format!("{base} WHERE i.state = ? ORDER BY i.id DESC"),
                &[&s],
            ),
            None => query_json(c, &format!("{base} ORDER BY i.id DESC LIMIT 1000"), &[]),
        })
    }

    /// One incident with every linked alert (each with its role: `root`, `symptom` or
    /// `related`), the root alert on its own, the incidents merged into it and its problem.
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
                     WHERE l.incident_id = ?
                     ORDER BY CASE l.role WHEN 'root' THEN 0 WHEN 'symptom' THEN 1 ELSE 2 END, l.linked_at, a.id",
                    ALERT_COLS
                        .split(',')
                        .map(|c| format!("a.{}", c.trim()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&id],
            )?;
            let root = alerts
                .iter()
                .find(|a| a.get("role").and_then(Json::as_str) == Some("root"))
                .cloned()
                .map(Json::Object)
                .unwrap_or(Json::Null);
            inc.insert("root_alert_detail".into(), root);
            inc.insert(
                "alerts".into(),
                Json::Array(alerts.into_iter().map(Json::Object).collect()),
            );
            let merged: Vec<Json> = query_json(
                c,
                "SELECT id FROM incidents WHERE merged_into = ? ORDER BY id",
                &[&id],
            )?
            .into_iter()
            .filter_map(|r| r.get("id").cloned())
            .collect();
            inc.insert("merged_from".into(), Json::Array(merged));
            let problem_id = inc.get("problem_id").and_then(Json::as_i64);
            let problem = match problem_id {
                Some(pid) => query_json(
                    c,
                    "SELECT id, number, state, workaround FROM problems WHERE id = ?",
                    &[&pid],
                )?
                .pop()
                .map(Json::Object)
                .unwrap_or(Json::Null),
                None => Json::Null,
            };
            inc.insert("problem".into(), problem);
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
                       AND (?::VARCHAR IS NULL OR assignment_group = ?)
                       AND (?::VARCHAR IS NULL OR assignee = ?) AND (?::VARCHAR IS NULL OR kind = ?)
                     ORDER BY id DESC LIMIT ?"
                ),
                &[
                    &f.state,
                    &f.state,
                    &f.priority,
                    &f.priority,
                    &f.group,
                    &f.group,
                    &f.assignee,
                    &f.assignee,
                    &f.kind,
                    &f.kind,
                    &limit,
                ],
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

    /// Problem records, newest first, optionally by state.
    pub fn problems(&self, state: Option<&str>) -> Result<Vec<Map<String, Json>>, StoreError> {
        self.with(|c| {
            query_json(
                c,
                &format!(
                    "SELECT {PROBLEM_COLS} FROM problems WHERE (?::VARCHAR IS NULL OR state = ?)
                     ORDER BY id DESC LIMIT 1000"
                ),
                &[&state, &state],
            )
        })
    }

    /// The id of a problem given as its id or its number (`PRB-000001`).
    pub fn problem_id(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let id: Option<i64> = key.parse().ok();
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id FROM problems WHERE number = ? OR id = ?")?;
            let mut rows = stmt.query(duckdb::params![key, id])?;
            match rows.next()? {
                Some(r) => Ok(Some(r.get(0)?)),
                None => Ok(None),
            }
        })
    }

    /// One problem by number (`PRB-000001`) or id, with its linked incidents.
    pub fn problem(&self, key: &str) -> Result<Option<Json>, StoreError> {
        let id: Option<i64> = key.parse().ok();
        self.with(|c| {
            let mut rows = query_json(
                c,
                &format!("SELECT {PROBLEM_COLS} FROM problems WHERE number = ? OR id = ?"),
                &[&key, &id],
            )?;
            let Some(mut p) = rows.pop() else {
                return Ok(None);
            };
            let pid = p.get("id").and_then(Json::as_i64).unwrap_or(-1);
            let incidents = query_json(
                c,
                "SELECT i.id, i.state, i.opened_at, i.resolved_at, i.site, i.node, i.title, i.priority,
                        t.number AS ticket_number, l.linked_at
                 FROM problem_incidents l JOIN incidents i ON i.id = l.incident_id
                 LEFT JOIN tickets t ON t.id = i.ticket_id
                 WHERE l.problem_id = ? ORDER BY i.id",
                &[&pid],
            )?;
            p.insert(
                "incidents".into(),
                Json::Array(incidents.into_iter().map(Json::Object).collect()),
            );
            Ok(Some(Json::Object(p)))
        })
    }

    /// Maintenance windows, newest first, with `in_effect` judged at `now`.
    pub fn maintenance(
        &self,
        filter: MaintenanceFilter,
        now: Millis,
    ) -> Result<Vec<Map<String, Json>>, StoreError> {
        let active = filter == MaintenanceFilter::Active;
        self.with(|c| {
            query_json(
                c,
                &format!(
                    "SELECT {MAINTENANCE_COLS} FROM maintenance, (SELECT ?::BIGINT AS now_ms) n
                     WHERE NOT ?::BOOLEAN OR (cancelled_at IS NULL
                         AND (every_ms IS NOT NULL OR epoch_ms(ends_at) > n.now_ms))
                     ORDER BY id DESC LIMIT 1000"
                ),
                &[&now, &active],
            )
        })
    }

    /// One maintenance window.
    pub fn maintenance_window(&self, id: i64, now: Millis) -> Result<Option<Json>, StoreError> {
        self.with(|c| {
            Ok(query_json(
                c,
                &format!(
                    "SELECT {MAINTENANCE_COLS} FROM maintenance, (SELECT ?::BIGINT AS now_ms) n WHERE id = ?"
                ),
                &[&now, &id],
            )?
            .pop()
            .map(Json::Object))
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
                (
                    "problems_open",
                    "SELECT count(*) FROM problems WHERE state <> 'resolved'",
                ),
            ] {
                let n: i64 = c.query_row(sql, [], |r| r.get(0))?;
                m.insert(name.into(), json!(n));
            }
            Ok(Json::Object(m))
        })
    }
}

pub(super) fn text(row: &duckdb::Row<'_>, i: usize) -> Result<String, duckdb::Error> {
    row.get(i)
}

pub(super) fn parse_enum<T>(
    what: &str,
    s: &str,
    f: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    f(s).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {s:?}")))
}

pub(super) fn ms(row: &duckdb::Row<'_>, i: usize) -> Result<Option<i64>, duckdb::Error> {
    let v: Value = row.get(i)?;
    Ok(millis_of(v))
}

pub(super) fn json_col<T: serde::de::DeserializeOwned + Default>(s: Option<String>) -> T {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// What the snapshot needs to know besides the data: the time, and how far back incidents
/// count towards a problem record (the policy's `[problem] window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotScope {
    pub now: Millis,
    pub problem_window_ms: Millis,
}

fn level_or(s: Option<String>, default: Level) -> Result<Level, StoreError> {
    match s {
        Some(s) => parse_enum("level", &s, Level::parse),
        None => Ok(default),
    }
}

pub(super) fn count(v: Option<i64>, default: u32) -> u32 {
    v.and_then(|n| u32::try_from(n).ok()).unwrap_or(default)
}

/// Everything the engine needs to continue after a restart.
pub fn snapshot(conn: &Connection, scope: SnapshotScope) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot {
        now: scope.now,
        ..Snapshot::default()
    };

    let mut stmt = conn.prepare(
        "SELECT site, node, kind, state, agent_version, inventory::VARCHAR, labels::VARCHAR, parents::VARCHAR, via,
                last_seq, last_ts, last_report_at, state_changed_at, first_seen, updated_at
         FROM nodes",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: String = text(r, 2)?;
        snap.nodes.push(NodeRow {
            site: Arc::from(text(r, 0)?),
            node: Arc::from(text(r, 1)?),
            kind: if kind == "network" {
                tocsin_protocol::NodeKind::Network
            } else {
                tocsin_protocol::NodeKind::Host
            },
            state: Presence::from_name(&text(r, 3)?),
            agent_version: r.get::<_, Option<String>>(4)?.map(Arc::from),
            inventory: r
                .get::<_, Option<String>>(5)?
                .and_then(|s| serde_json::from_str::<tocsin_protocol::Inventory>(&s).ok())
                .map(|i| crate::engine::model::NodeInventory::new(&i)),
            labels: std::sync::Arc::new(json_col(r.get(6)?)),
            parents: std::sync::Arc::new(json_col(r.get(7)?)),
            via: r.get(8)?,
            last_seq: r.get(9)?,
            last_ts: ms(r, 10)?,
            last_report_at: ms(r, 11)?,
            // The engine does not keep reports (see `NodeRow::last_report`).
            last_report: None,
            state_changed_at: ms(r, 12)?.unwrap_or(0),
            first_seen: ms(r, 13)?.unwrap_or(0),
            updated_at: ms(r, 14)?.unwrap_or(0),
        });
    }

    // An alert of a merged incident lives on in the incident it was merged into (followed
    // through up to three merges).
    let mut stmt = conn.prepare(
        "SELECT a.alert_key, a.rule, a.site, a.node, a.labels::VARCHAR, a.state, a.started_at,
                COALESCE(m3.merged_into, m2.merged_into, m1.merged_into, a.incident_id),
                a.summary, a.detail, a.suppressed_by
         FROM v_alerts_current a
         LEFT JOIN incidents m1 ON m1.id = a.incident_id AND m1.state = 'merged'
         LEFT JOIN incidents m2 ON m2.id = m1.merged_into AND m2.state = 'merged'
         LEFT JOIN incidents m3 ON m3.id = m2.merged_into AND m3.state = 'merged'
         WHERE a.state IN ('pending', 'firing')",
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
                summary: text(r, 8)?,
                detail: text(r, 9)?,
                suppressed_by: r.get(10)?,
            },
            r.get(7)?,
        ));
    }

    let mut stmt = conn.prepare(
        "SELECT l.incident_id, l.alert_key, l.role, COALESCE(l.node, i.node), l.linked_at
         FROM incident_alerts l JOIN incidents i ON i.id = l.incident_id
         WHERE i.state IN ('open', 'resolved') ORDER BY l.incident_id, l.alert_key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        snap.links.push(crate::engine::IncidentAlertRow {
            incident_id: r.get(0)?,
            alert_key: text(r, 1)?,
            role: text(r, 2)?,
            node: text(r, 3)?,
            linked_at: ms(r, 4)?.unwrap_or(0),
        });
    }

    // Merged incidents are finished: their alerts live on in the incident they were merged into.
    let mut stmt = conn.prepare(
        "SELECT id, state, title, severity, category, priority, site, node, root_alert, root_cause, ticket_id,
                opened_at, resolved_at, closed_at, updated_at, impact, urgency, signature, group_key,
                nodes_affected, symptoms, flapping, merged_into, problem_id
         FROM incidents WHERE state NOT IN ('closed', 'merged') ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let severity = parse_enum("severity", &text(r, 3)?, Severity::parse)?;
        snap.incidents.push(IncidentRow {
            id: r.get(0)?,
            state: parse_enum("incident state", &text(r, 1)?, IncidentState::parse)?,
            title: text(r, 2)?,
            severity,
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
            // Incidents stored before migration 0002 have no impact, urgency or signature.
            impact: level_or(r.get(15)?, Level::Medium)?,
            urgency: level_or(r.get(16)?, Level::from_severity(severity))?,
            signature: r.get::<_, Option<String>>(17)?.unwrap_or_default(),
            group_key: r.get(18)?,
            nodes_affected: count(r.get(19)?, 1),
            symptoms: count(r.get(20)?, 0),
            flapping: r.get::<_, Option<bool>>(21)?.unwrap_or(false),
            merged_into: r.get(22)?,
            problem_id: r.get(23)?,
        });
    }

    let mut stmt = conn.prepare(&format!(
        "SELECT {TICKET_ROW_COLS} FROM tickets WHERE state <> 'closed' ORDER BY id"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        snap.tickets.push(ticket_row(r)?);
    }
    // The log of open tickets, for the handover an escalation carries.
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_ROW_COLS} FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
         WHERE t.state <> 'closed' ORDER BY e.id"
    ))?;
    snap.ticket_events = stmt.query_map([], event_row)?.collect::<Result<_, _>>()?;
    // Past cases: the last closed tickets of each incident signature.
    let mut stmt = conn.prepare(
        "SELECT signature, number, summary, epoch_ms(opened_at), epoch_ms(resolved_at), resolution, cause_code
         FROM (SELECT i.signature, t.number, t.summary, t.opened_at, t.resolved_at, t.resolution, t.cause_code,
                      row_number() OVER (PARTITION BY i.signature ORDER BY t.closed_at DESC, t.id DESC) AS n
               FROM tickets t JOIN incidents i ON i.id = t.incident_id
               WHERE t.state = 'closed' AND i.signature IS NOT NULL AND i.state <> 'merged'
                 AND epoch_ms(t.closed_at) >= ?::BIGINT - 7776000000)
         WHERE n <= ? ORDER BY signature, n",
    )?;
    let mut rows = stmt.query(params![scope.now, crate::engine::SIMILAR_KEPT as i64])?;
    while let Some(r) = rows.next()? {
        snap.similar.push(SimilarCase {
            signature: text(r, 0)?,
            number: text(r, 1)?,
            summary: text(r, 2)?,
            opened_at: r.get(3)?,
            resolved_at: r.get(4)?,
            resolution: r.get(5)?,
            cause_code: r.get(6)?,
        });
    }

    let mut stmt = conn.prepare(
        "SELECT id, number, state, signature, rule, site, node, group_key, title, category, kb, workaround,
                incident_count, opened_at, last_incident_at, known_error_at, resolved_at, updated_at
         FROM problems WHERE state <> 'resolved' ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let opened_at = ms(r, 13)?.unwrap_or(0);
        snap.problems.push(ProblemRow {
            id,
            number: r
                .get::<_, Option<String>>(1)?
                .unwrap_or_else(|| format!("PRB-{id:06}")),
            state: parse_enum("problem state", &text(r, 2)?, ProblemState::parse)?,
            signature: text(r, 3)?,
            rule: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            site: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            node: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            group_key: r.get(7)?,
            title: text(r, 8)?,
            category: match r.get::<_, Option<String>>(9)? {
                Some(c) => parse_enum("category", &c, Category::parse)?,
                None => Category::Software,
            },
            kb: r.get(10)?,
            workaround: r.get(11)?,
            incident_count: count(r.get(12)?, 0),
            opened_at,
            last_incident_at: ms(r, 14)?.unwrap_or(opened_at),
            known_error_at: ms(r, 15)?,
            resolved_at: ms(r, 16)?,
            updated_at: ms(r, 17)?.unwrap_or(opened_at),
        });
    }

    // Incidents that still count towards a problem record: opened within the window.
    let since = scope.now.saturating_sub(scope.problem_window_ms);
    let mut stmt = conn.prepare(
        "SELECT i.signature, i.id, i.opened_at,
                coalesce(i.problem_id, (SELECT max(p.problem_id) FROM problem_incidents p WHERE p.incident_id = i.id))
         FROM incidents i
         WHERE epoch_ms(i.opened_at) >= ? AND coalesce(i.signature, '') <> '' AND i.state <> 'merged'
         ORDER BY i.id",
    )?;
    let mut rows = stmt.query([since])?;
    while let Some(r) = rows.next()? {
        snap.recent.push(RecentIncident {
            signature: text(r, 0)?,
            incident_id: r.get(1)?,
            opened_at: ms(r, 2)?.unwrap_or(0),
            problem_id: r.get(3)?,
        });
    }

    // Windows made through the API that are not over, and the policy's as last stored (the
    // engine cancels those no longer in policy.toml).
    let mut stmt = conn.prepare(
        "SELECT id, name, \"match\"::VARCHAR, starts_at, ends_at, every_ms, reason, created_by, created_at,
                cancelled_at
         FROM maintenance
         WHERE cancelled_at IS NULL
           AND (created_by = 'policy' OR every_ms IS NOT NULL OR epoch_ms(ends_at) > ?)
         ORDER BY id",
    )?;
    let mut rows = stmt.query([scope.now])?;
    while let Some(r) = rows.next()? {
        snap.maintenance.push(MaintenanceRow {
            id: r.get(0)?,
            name: text(r, 1)?,
            match_: json_col(r.get(2)?),
            starts_at: ms(r, 3)?.unwrap_or(0),
            ends_at: ms(r, 4)?.unwrap_or(0),
            every_ms: r.get(5)?,
            reason: text(r, 6)?,
            created_by: text(r, 7)?,
            created_at: ms(r, 8)?.unwrap_or(0),
            cancelled_at: ms(r, 9)?,
        });
    }

    let next = |sql: &str| -> Result<i64, StoreError> {
        Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))?)
    };
    snap.next_ids = Ids {
        // Over the archived history too: an id retention moved to Parquet is never reused.
        alert: next("SELECT coalesce(max(id), 0) + 1 FROM alerts_all")?,
        incident: next("SELECT coalesce(max(id), 0) + 1 FROM incidents_all")?,
        ticket: next("SELECT coalesce(max(id), 0) + 1 FROM tickets")?,
        ticket_event: next("SELECT coalesce(max(id), 0) + 1 FROM ticket_events")?,
        incident_number: next(
            "SELECT coalesce(max(TRY_CAST(substr(number, 5) AS BIGINT)), 0) + 1 FROM tickets WHERE number LIKE 'INC-%'",
        )?,
        problem: next("SELECT coalesce(max(id), 0) + 1 FROM problems")?,
        maintenance: next("SELECT coalesce(max(id), 0) + 1 FROM maintenance")?,
        request_number: next(
            "SELECT coalesce(max(TRY_CAST(substr(number, 5) AS BIGINT)), 0) + 1 FROM tickets WHERE number LIKE 'REQ-%'",
        )?,
        notification: next("SELECT coalesce(max(id), 0) + 1 FROM notifications")?,
    };
    Ok(snap)
}
