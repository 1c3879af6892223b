//! The headline figures behind `GET /api/v1/analytics/summary`: counts, MTTA, MTTR and SLA
//! compliance for a time window, in total and by one dimension (docs/ANALYTICS.md).

use std::collections::BTreeMap;

use duckdb::Connection;
use serde::Serialize;

use super::{Reader, StoreError};
use crate::time::{Millis, rfc3339};

/// The dimension figures are broken down by (also `tocsin analytics --by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Priority,
    Category,
    Site,
    /// The ticket's assignment group.
    Group,
    /// The UTC day of opening, `YYYY-MM-DD`.
    Day,
    None,
}

impl GroupBy {
    pub const NAMES: &'static [&'static str] =
        &["priority", "category", "site", "group", "day", "none"];

    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "priority" => GroupBy::Priority,
            "category" => GroupBy::Category,
            "site" => GroupBy::Site,
            "group" => GroupBy::Group,
            "day" => GroupBy::Day,
            "none" => GroupBy::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Priority => "priority",
            GroupBy::Category => "category",
            GroupBy::Site => "site",
            GroupBy::Group => "group",
            GroupBy::Day => "day",
            GroupBy::None => "none",
        }
    }

    /// The key expression over `v_ticket_sla` (alias `s`).
    fn ticket_key(self) -> &'static str {
        match self {
            GroupBy::Priority => "s.priority",
            GroupBy::Category => "s.category",
            GroupBy::Site => "coalesce(s.site, '(none)')",
            GroupBy::Group => "coalesce(s.assignment_group, '(none)')",
            GroupBy::Day => "strftime(s.opened_at, '%Y-%m-%d')",
            GroupBy::None => "'all'",
        }
    }

    /// The key expression over `incidents_all` (alias `i`).
    fn incident_key(self) -> &'static str {
        match self {
            GroupBy::Priority => "i.priority",
            GroupBy::Category => "i.category",
            GroupBy::Site => "coalesce(i.site, '(none)')",
            GroupBy::Group => {
                "coalesce((SELECT t.assignment_group FROM tickets t WHERE t.id = i.ticket_id), '(none)')"
            }
            GroupBy::Day => "strftime(i.opened_at, '%Y-%m-%d')",
            GroupBy::None => "'all'",
        }
    }
}

/// The window `[from, to)` and the breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryQuery {
    pub from: Millis,
    pub to: Millis,
    pub group_by: GroupBy,
}

/// The figures of one group (or of the whole window).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub incidents: i64,
    pub tickets: i64,
    pub acknowledged: i64,
    pub resolved: i64,
    pub mtta_ms: Option<f64>,
    pub mttr_ms: Option<f64>,
    pub mttr_net_ms: Option<f64>,
    pub response_breached: i64,
    pub resolution_breached: i64,
    /// Of the tickets whose outcome is known (resolved, or breached already), the share that
    /// breached neither target, in percent; None when there are none.
    pub sla_met_pct: Option<f64>,
    pub escalations: i64,
    #[serde(skip)]
    breached_any: i64,
    /// Tickets whose SLA outcome is known: resolved, or already breached.
    #[serde(skip)]
    decided: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// What is true right now, whatever the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Now {
    pub open_incidents: i64,
    pub open_tickets: i64,
    /// Tickets not yet resolved that breached a target.
    pub breached_open_tickets: i64,
    pub open_incidents_by_priority: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub from: String,
    pub to: String,
    pub group_by: &'static str,
    pub now: Now,
    pub totals: Figures,
    pub groups: Vec<Group>,
}

impl Reader {
    /// The headline figures for a window.
    pub fn summary(&self, q: SummaryQuery) -> Result<Summary, StoreError> {
        self.with(|c| summary(c, q))
    }
}

/// One scan per table: `GROUPING SETS` gives the groups and the total together.
pub fn summary(conn: &Connection, q: SummaryQuery) -> Result<Summary, duckdb::Error> {
    let mut groups: BTreeMap<String, Figures> = BTreeMap::new();
    let mut totals = Figures::default();
    let grouped = q.group_by != GroupBy::None;
    let (total_col, sets) = if grouped {
        ("grouping(key) = 1", "GROUP BY GROUPING SETS ((key), ())")
    } else {
        ("true", "")
    };

    let ticket_sql = format!(
        "SELECT {key} AS key, {total_col} AS total,
                count(*) AS tickets,
                count(s.acknowledged_at) AS acknowledged,
                count(s.resolved_at) AS resolved,
                avg(s.time_to_ack_ms) AS mtta_ms,
                avg(s.time_to_resolve_ms) AS mttr_ms,
                avg(s.time_to_resolve_net_ms) AS mttr_net_ms,
                count(*) FILTER (WHERE s.response_breached) AS response_breached,
                count(*) FILTER (WHERE s.resolution_breached) AS resolution_breached,
                count(*) FILTER (WHERE s.response_breached OR s.resolution_breached) AS breached_any,
                coalesce(sum(e.n), 0)::BIGINT AS escalations,
                count(*) FILTER (WHERE s.resolved_at IS NOT NULL
                                    OR s.response_breached OR s.resolution_breached) AS decided
         FROM v_ticket_sla s
         LEFT JOIN (SELECT ticket_id, count(*) AS n FROM ticket_events
                    WHERE kind = 'escalated' GROUP BY ticket_id) e ON e.ticket_id = s.ticket_id
         WHERE s.opened_at >= make_timestamp(?::BIGINT * 1000)
           AND s.opened_at < make_timestamp(?::BIGINT * 1000)
           -- Faults only (service requests are another process), and not the tickets closed
           -- because their incident was merged into another (that one's ticket counts).
           AND s.kind = 'incident'
           -- (NOT IN over the few merged ids: a NOT EXISTS here joined every incident, 70 ms on
           -- a million; coalesce keeps tickets without an incident.)
           AND coalesce(s.incident_id, -1) NOT IN (SELECT id FROM incidents WHERE state = 'merged')
         {sets}",
        key = q.group_by.ticket_key(),
    );
    // Every row is (key, total, figures...): the figures go to the total or to their group.
    let mut each_row = |sql: &str,
                        fill: &dyn Fn(&mut Figures, &duckdb::Row) -> Result<(), duckdb::Error>|
     -> Result<(), duckdb::Error> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([q.from, q.to])?;
        while let Some(r) = rows.next()? {
            let key: Option<String> = r.get(0)?;
            let total: bool = r.get(1)?;
            let f = if total || !grouped {
                &mut totals
            } else {
                groups.entry(key.unwrap_or_default()).or_default()
            };
            fill(f, r)?;
        }
        Ok(())
    };
    each_row(&ticket_sql, &|f, r| {
        f.tickets = r.get(2)?;
        f.acknowledged = r.get(3)?;
        f.resolved = r.get(4)?;
        f.mtta_ms = r.get(5)?;
        f.mttr_ms = r.get(6)?;
        f.mttr_net_ms = r.get(7)?;
        f.response_breached = r.get(8)?;
        f.resolution_breached = r.get(9)?;
        f.breached_any = r.get(10)?;
        f.escalations = r.get(11)?;
        f.decided = r.get(12)?;
        Ok(())
    })?;

    let incident_sql = format!(
        "SELECT {key} AS key, {total_col} AS total, count(*) AS incidents
         FROM incidents_all i
         WHERE i.state <> 'merged'
           AND i.opened_at >= make_timestamp(?::BIGINT * 1000)
           AND i.opened_at < make_timestamp(?::BIGINT * 1000)
         {sets}",
        key = q.group_by.incident_key(),
    );
    each_row(&incident_sql, &|f, r| {
        f.incidents = r.get(2)?;
        Ok(())
    })?;

    let now = now_figures(conn)?;
    for f in std::iter::once(&mut totals).chain(groups.values_mut()) {
        // Open tickets not yet breached may still breach: only decided ones count.
        f.sla_met_pct =
            (f.decided > 0).then(|| 100.0 * (f.decided - f.breached_any) as f64 / f.decided as f64);
    }
    Ok(Summary {
        from: rfc3339(q.from),
        to: rfc3339(q.to),
        group_by: q.group_by.name(),
        now,
        totals,
        groups: groups
            .into_iter()
            .map(|(key, figures)| Group { key, figures })
            .collect(),
    })
}

fn now_figures(conn: &Connection) -> Result<Now, duckdb::Error> {
    let mut now = Now::default();
    for p in ["P1", "P2", "P3", "P4"] {
        now.open_incidents_by_priority.insert(p.to_string(), 0);
    }
    let mut stmt = conn.prepare(
        "SELECT priority, count(*) FROM incidents WHERE state = 'open' GROUP BY priority",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let p: String = r.get(0)?;
        let n: i64 = r.get(1)?;
        now.open_incidents += n;
        now.open_incidents_by_priority.insert(p, n);
    }
    (now.open_tickets, now.breached_open_tickets) = conn.query_row(
        "SELECT count(*),
                count(*) FILTER (WHERE response_breached_at IS NOT NULL
                                    OR resolution_breached_at IS NOT NULL)
         FROM tickets WHERE state NOT IN ('resolved', 'closed')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(now)
}
