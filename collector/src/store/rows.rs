//! A batch's event rows (alerts, incidents, tickets, notifications...): coalesced per key,
//! appended to staging tables, then moved into each table by one statement.
//!
//! DuckDB executes a one-row INSERT in about the time of a small query: measured on this
//! schema in release, 2.4 ms a row for a plain insert and 8–13 ms for `INSERT OR REPLACE`
//! into `incidents` and `tickets`. Row by row, a burst of incidents therefore held the writer
//! for minutes (1,538 simulated hosts reporting a reboot at once: one batch of 3,584 effects
//! took 221 s in the debug build) while everything queued behind it, intake included
//! (BENCHMARKS.md). Staged, a table costs four statements a batch whatever its row count;
//! nodes go the same way in `nodes.rs`.

use std::collections::{BTreeMap, HashSet};

use duckdb::{Appender, Transaction, params};

use super::nodes::{Marks, StoredNodes, write_nodes};
use super::{RejectedRow, StoreError};
use crate::engine::Effect;
use crate::engine::model::{
    AlertRow, IncidentAlertRow, IncidentRow, MaintenanceRow, NodeRow, NotificationRow,
    ProblemIncidentRow, ProblemRow, ReportBody, TicketEventRow, TicketRow,
};

pub(super) fn json<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

/// How a column travels through the staging table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Col {
    /// As it is stored.
    Value,
    /// A timestamp, staged as epoch milliseconds.
    Time,
    /// A JSON document, staged as text.
    Json,
}

use Col::{Json, Time, Value};

/// A table written through a temporary staging table with its columns (times as epoch
/// milliseconds, JSON as text): the appender fills the stage, one statement moves the rows,
/// and the stage is emptied for the next batch.
#[derive(Debug)]
pub(super) struct Staged {
    pub table: &'static str,
    /// The staging table's name (in the connection's temporary schema).
    pub stage: &'static str,
    /// The columns in append order.
    pub columns: &'static [(&'static str, Col)],
    /// How the staged rows reach the table.
    pub into: MoveBy,
}

/// The statement that moves staged rows into their table.
#[derive(Debug)]
pub(super) enum MoveBy {
    /// `INSERT` or `INSERT OR REPLACE` of every column, then an `ON CONFLICT` clause or "".
    Insert(&'static str, &'static str),
    /// A statement of its own reading `temp.main.<stage>` (an `UPDATE ... FROM`).
    Sql(&'static str),
}

impl Staged {
    /// The stage's columns, typed from the table itself so they cannot drift apart.
    fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|&(c, kind)| match kind {
                Value => c.to_string(),
                Time => format!("epoch_ms({c}) AS {c}"),
                Json => format!("{c}::VARCHAR AS {c}"),
            })
            .collect();
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM main.{} LIMIT 0",
            self.stage,
            cols.join(", "),
            self.table
        )
    }

    fn move_sql(&self) -> String {
        let (verb, conflict) = match self.into {
            MoveBy::Insert(verb, conflict) => (verb, conflict),
            MoveBy::Sql(sql) => return sql.to_string(),
        };
        let names: Vec<&str> = self.columns.iter().map(|&(c, _)| c).collect();
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|&(c, kind)| match kind {
                Value => c.to_string(),
                Time => format!("epoch_ms({c})"),
                Json => format!("{c}::JSON"),
            })
            .collect();
        format!(
            "{verb} INTO main.{} ({}) SELECT {} FROM temp.main.{} {conflict}",
            self.table,
            names.join(", "),
            values.join(", "),
            self.stage,
        )
    }

    /// Write `rows` (each appended by `append` in column order); returns how many.
    pub fn write<T>(
        &self,
        tx: &Transaction<'_>,
        rows: impl IntoIterator<Item = T>,
        mut append: impl FnMut(&mut Appender<'_>, T) -> duckdb::Result<()>,
    ) -> Result<usize, StoreError> {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(0);
        }
        // Statements are prepared once per connection (DuckDB's parser is a good part of a
        // small batch's cost); the texts are rebuilt, which is cheap next to that.
        tx.prepare_cached(&self.create_sql())?.execute([])?;
        let mut n = 0;
        {
            let mut app = tx.appender_to_catalog_and_db(self.stage, "temp", "main")?;
            for row in rows {
                append(&mut app, row)?;
                n += 1;
            }
            app.flush()?;
        }
        tx.prepare_cached(&self.move_sql())?.execute([])?;
        tx.prepare_cached(&format!("DELETE FROM temp.main.{}", self.stage))?
            .execute([])?;
        Ok(n)
    }
}

const ALERTS: Staged = Staged {
    table: "alerts",
    stage: "alerts_stage",
    columns: &[
        ("id", Value),
        ("alert_key", Value),
        ("rule", Value),
        ("site", Value),
        ("node", Value),
        ("labels", Json),
        ("state", Value),
        ("severity", Value),
        ("category", Value),
        ("value", Value),
        ("summary", Value),
        ("detail", Value),
        ("runbook", Value),
        ("started_at", Time),
        ("changed_at", Time),
        ("incident_id", Value),
        ("source", Value),
        ("suppressed_by", Value),
        ("flapping", Value),
        ("description", Value),
    ],
    into: MoveBy::Insert("INSERT", ""),
};

const INCIDENTS: Staged = Staged {
    table: "incidents",
    stage: "incidents_stage",
    columns: &[
        ("id", Value),
        ("state", Value),
        ("title", Value),
        ("severity", Value),
        ("category", Value),
        ("priority", Value),
        ("site", Value),
        ("node", Value),
        ("root_alert", Value),
        ("root_cause", Value),
        ("ticket_id", Value),
        ("opened_at", Time),
        ("resolved_at", Time),
        ("closed_at", Time),
        ("updated_at", Time),
        ("impact", Value),
        ("urgency", Value),
        ("signature", Value),
        ("group_key", Value),
        ("nodes_affected", Value),
        ("symptoms", Value),
        ("flapping", Value),
        ("merged_into", Value),
        ("problem_id", Value),
    ],
    into: MoveBy::Insert("INSERT OR REPLACE", ""),
};

const INCIDENT_ALERTS: Staged = Staged {
    table: "incident_alerts",
    stage: "incident_alerts_stage",
    columns: &[
        ("incident_id", Value),
        ("alert_key", Value),
        ("role", Value),
        ("linked_at", Time),
        ("node", Value),
    ],
    into: MoveBy::Insert(
        "INSERT",
        "ON CONFLICT (incident_id, alert_key) DO UPDATE SET role = excluded.role, node = excluded.node",
    ),
};

const TICKETS: Staged = Staged {
    table: "tickets",
    stage: "tickets_stage",
    columns: &[
        ("id", Value),
        ("number", Value),
        ("kind", Value),
        ("state", Value),
        ("priority", Value),
        ("impact", Value),
        ("urgency", Value),
        ("category", Value),
        ("assignment_group", Value),
        ("summary", Value),
        ("description", Value),
        ("reporter", Json),
        ("environment", Json),
        ("incident_id", Value),
        ("site", Value),
        ("node", Value),
        ("runbook", Value),
        ("opened_at", Time),
        ("acknowledged_at", Time),
        ("resolved_at", Time),
        ("closed_at", Time),
        ("updated_at", Time),
        ("problem_id", Value),
        ("workaround", Value),
        ("assignee", Value),
        ("affected", Json),
        ("similar_cases", Json),
        ("detected_at", Time),
        ("resolution", Value),
        ("cause_code", Value),
        ("sla", Json),
        ("response_target_ms", Value),
        ("resolution_target_ms", Value),
        ("response_due_at", Time),
        ("resolution_due_at", Time),
        ("response_breached_at", Time),
        ("resolution_breached_at", Time),
        ("resolution_elapsed_ms", Value),
        ("escalation_level", Value),
        ("escalated_at", Time),
        ("reopened", Value),
        ("close_held", Value),
    ],
    into: MoveBy::Insert("INSERT OR REPLACE", ""),
};

/// Written pending, in the transaction of the event that made them: the delivery task picks
/// them up once committed, and a crash before the commit sends nothing.
const NOTIFICATIONS: Staged = Staged {
    table: "notifications",
    stage: "notifications_stage",
    columns: &[
        ("id", Value),
        ("target", Value),
        ("kind", Value),
        ("payload", Json),
        ("state", Value),
        ("attempts", Value),
        ("created_at", Time),
        ("idempotency_key", Value),
        ("channel", Value),
        ("event", Value),
        ("ticket_id", Value),
        ("next_attempt_at", Time),
    ],
    into: MoveBy::Insert("INSERT", ""),
};

const TICKET_EVENTS: Staged = Staged {
    table: "ticket_events",
    stage: "ticket_events_stage",
    columns: &[
        ("id", Value),
        ("ticket_id", Value),
        ("created_at", Time),
        ("kind", Value),
        ("actor", Value),
        ("message", Value),
        ("data", Json),
    ],
    into: MoveBy::Insert("INSERT", ""),
};

const PROBLEMS: Staged = Staged {
    table: "problems",
    stage: "problems_stage",
    columns: &[
        ("id", Value),
        ("number", Value),
        ("state", Value),
        ("signature", Value),
        ("rule", Value),
        ("site", Value),
        ("node", Value),
        ("group_key", Value),
        ("title", Value),
        ("category", Value),
        ("kb", Value),
        ("workaround", Value),
        ("incident_count", Value),
        ("opened_at", Time),
        ("last_incident_at", Time),
        ("known_error_at", Time),
        ("resolved_at", Time),
        ("updated_at", Time),
    ],
    into: MoveBy::Insert("INSERT OR REPLACE", ""),
};

const PROBLEM_INCIDENTS: Staged = Staged {
    table: "problem_incidents",
    stage: "problem_incidents_stage",
    columns: &[
        ("problem_id", Value),
        ("incident_id", Value),
        ("linked_at", Time),
    ],
    into: MoveBy::Insert("INSERT OR REPLACE", ""),
};

const MAINTENANCE: Staged = Staged {
    table: "maintenance",
    stage: "maintenance_stage",
    columns: &[
        ("id", Value),
        ("name", Value),
        ("\"match\"", Json),
        ("starts_at", Time),
        ("ends_at", Time),
        ("every_ms", Value),
        ("reason", Value),
        ("created_by", Value),
        ("created_at", Time),
        ("cancelled_at", Time),
    ],
    into: MoveBy::Insert("INSERT OR REPLACE", ""),
};

/// Refused payloads; their ids come from the table's sequence.
const REJECTED: Staged = Staged {
    table: "rejected_payloads",
    stage: "rejected_payloads_stage",
    columns: &[
        ("received_at", Time),
        ("topic", Value),
        ("site", Value),
        ("node", Value),
        ("reason", Value),
        ("error", Value),
        ("payload_size", Value),
        ("payload", Value),
    ],
    into: MoveBy::Insert("INSERT", ""),
};

/// Write effects in one transaction, every node row in full. Upserts are coalesced so each
/// key is written once.
pub fn write_effects(tx: &Transaction<'_>, effects: &[Effect]) -> Result<usize, StoreError> {
    write_batch(tx, effects, None).map(|(rows, _)| rows)
}

/// Write effects in one transaction; with `stored`, node rows whose wide columns are already
/// stored are written light (see [`StoredNodes`]), and the batch's new marks are returned.
pub(super) fn write_batch(
    tx: &Transaction<'_>,
    effects: &[Effect],
    stored: Option<&StoredNodes>,
) -> Result<(usize, Marks), StoreError> {
    // The node's last row, with the newest report any of its rows in the batch carried.
    let mut nodes: BTreeMap<(&str, &str), (&NodeRow, Option<&ReportBody>)> = BTreeMap::new();
    let mut alerted: HashSet<(&str, &str)> = HashSet::new();
    // Keyed rows keep their last version of the batch: a statement may not touch a key twice.
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
                let report = n.last_report.as_ref();
                let e = nodes.entry((&*n.site, &*n.node)).or_insert((n, report));
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
    let (mut rows, marks) = write_nodes(tx, &nodes, &alerted, stored)?;
    rows += ALERTS.write(tx, alerts, |app, a| {
        let t = &a.transition;
        app.append_row(params![
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
        ])
    })?;
    rows += INCIDENTS.write(tx, incidents.into_values(), |app, i| {
        app.append_row(params![
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
        ])
    })?;
    rows += INCIDENT_ALERTS.write(tx, links.into_values(), |app, l| {
        app.append_row(params![
            l.incident_id,
            l.alert_key,
            l.role,
            l.linked_at,
            l.node
        ])
    })?;
    rows += TICKETS.write(tx, tickets.into_values(), |app, t| {
        app.append_row(params![
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
        ])
    })?;
    rows += NOTIFICATIONS.write(tx, notifications, |app, n| {
        app.append_row(params![
            n.id,
            n.target,
            n.event,
            json(&n.payload),
            "pending",
            0,
            n.created_at,
            n.key,
            n.channel,
            n.event,
            n.ticket_id,
            n.created_at,
        ])
    })?;
    rows += TICKET_EVENTS.write(tx, events, |app, ev| {
        app.append_row(params![
            ev.id,
            ev.ticket_id,
            ev.at,
            ev.kind,
            ev.actor,
            ev.message,
            json(&ev.data)
        ])
    })?;
    rows += PROBLEMS.write(tx, problems.into_values(), |app, p| {
        app.append_row(params![
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
        ])
    })?;
    rows += PROBLEM_INCIDENTS.write(tx, problem_links.into_values(), |app, l| {
        app.append_row(params![l.problem_id, l.incident_id, l.linked_at])
    })?;
    rows += MAINTENANCE.write(tx, maintenance.into_values(), |app, m| {
        app.append_row(params![
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
        ])
    })?;
    Ok((rows, marks))
}

/// Refused payloads, with their reasons.
pub(super) fn write_rejected(
    tx: &Transaction<'_>,
    rejected: &[RejectedRow],
) -> Result<usize, StoreError> {
    REJECTED.write(tx, rejected, |app, r| {
        app.append_row(params![
            r.received_at,
            r.topic,
            r.site,
            r.node,
            r.reason,
            r.error,
            r.payload_size as i64,
            r.payload
        ])
    })
}
