//! Reads for the service desk: a ticket as the engine keeps it (the snapshot, a reopen of a
//! closed ticket) and the notification outbox for the API.

use duckdb::params;
use serde_json::{Map, Value as Json};

use super::StoreError;
use super::read::{Reader, count, json_col, ms, parse_enum, text};
use super::sql::query_json;
use crate::engine::model::{TicketEventRow, TicketRow, TicketSla, TicketState};
use crate::engine::{Level, Priority};
use crate::rules::Category;

/// Ticket columns in the order [`ticket_row`] reads them.
pub(super) const TICKET_ROW_COLS: &str = "id, number, kind, state, priority, impact, urgency, category, assignment_group,
    summary, description, reporter::VARCHAR, environment::VARCHAR, incident_id, site, node, runbook,
    opened_at, acknowledged_at, resolved_at, closed_at, updated_at, problem_id, workaround,
    assignee, affected::VARCHAR, similar_cases::VARCHAR, detected_at, resolution, cause_code, sla::VARCHAR,
    escalation_level, escalated_at, reopened, close_held";

/// A ticket as the engine keeps it. Tickets stored before migration 0003 get empty SLA
/// state and no assignee.
pub(super) fn ticket_row(r: &duckdb::Row<'_>) -> Result<TicketRow, StoreError> {
    let opened_at = ms(r, 17)?.unwrap_or(0);
    Ok(TicketRow {
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
        opened_at,
        acknowledged_at: ms(r, 18)?,
        resolved_at: ms(r, 19)?,
        closed_at: ms(r, 20)?,
        updated_at: ms(r, 21)?.unwrap_or(0),
        problem_id: r.get(22)?,
        workaround: r.get(23)?,
        assignee: r.get(24)?,
        affected: json_col::<Json>(r.get(25)?),
        similar: json_col::<Json>(r.get(26)?),
        detected_at: ms(r, 27)?.unwrap_or(opened_at),
        resolution: r.get(28)?,
        cause_code: r.get(29)?,
        sla: json_col::<TicketSla>(r.get(30)?),
        escalation_level: r
            .get::<_, Option<i64>>(31)?
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        escalated_at: ms(r, 32)?,
        reopened: count(r.get(33)?, 0),
        close_held: r.get(34)?,
    })
}

/// Ticket event columns (table alias `e`) in the order [`event_row`] reads them.
pub(super) const EVENT_ROW_COLS: &str =
    "e.id, e.ticket_id, epoch_ms(e.created_at), e.kind, e.actor, e.message, e.data::VARCHAR";

/// One line of a ticket's log.
pub(super) fn event_row(r: &duckdb::Row<'_>) -> Result<TicketEventRow, duckdb::Error> {
    Ok(TicketEventRow {
        id: r.get(0)?,
        ticket_id: r.get(1)?,
        at: r.get(2)?,
        kind: text(r, 3)?,
        actor: text(r, 4)?,
        message: text(r, 5)?,
        data: json_col::<Json>(r.get(6)?),
    })
}

impl Reader {
    /// A ticket's whole log, oldest first (a reopened closed ticket's handover carries it).
    pub fn ticket_log(&self, ticket_id: i64) -> Result<Vec<TicketEventRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {EVENT_ROW_COLS} FROM ticket_events e WHERE e.ticket_id = ? ORDER BY e.id"
            ))?;
            let rows = stmt.query_map(params![ticket_id], event_row)?;
            rows.collect()
        })
    }

    /// One ticket as the engine keeps it, by number or id (the API hands a closed one to a reopen).
    pub fn ticket_row(&self, key: &str) -> Result<Option<TicketRow>, StoreError> {
        let id: Option<i64> = key.parse().ok();
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {TICKET_ROW_COLS} FROM tickets WHERE number = ? OR id = ? LIMIT 1"
            ))?;
            let mut rows = stmt.query(params![key, id])?;
            Ok(rows.next()?.map(ticket_row))
        })?
        .transpose()
    }
}

impl Reader {
    /// The notification outbox, newest first: by delivery state (`pending`, `delivered`,
    /// `failed`) and/or ticket (number or id). Without the payload.
    pub fn notifications(
        &self,
        state: Option<&str>,
        ticket: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Map<String, Json>>, StoreError> {
        let limit = limit.clamp(1, 10_000) as i64;
        let ticket_id: Option<i64> = ticket.and_then(|t| t.parse().ok());
        self.with(|c| {
            query_json(
                c,
                "SELECT n.id, n.channel, n.target, coalesce(n.event, n.kind) AS event, n.state, n.attempts, n.last_error,
                        n.created_at, n.sent_at, n.failed_at, n.next_attempt_at, n.ticket_id,
                        t.number AS ticket_number, n.idempotency_key
                 FROM notifications n LEFT JOIN tickets t ON t.id = n.ticket_id
                 WHERE (?::VARCHAR IS NULL OR n.state = ?)
                   AND (?::VARCHAR IS NULL OR t.number = ? OR n.ticket_id = ?)
                 ORDER BY n.id DESC LIMIT ?",
                &[&state, &state, &ticket, &ticket, &ticket_id, &limit],
            )
        })
    }
}
