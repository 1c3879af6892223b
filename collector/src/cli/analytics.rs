//! `tocsin analytics`: the service-desk figures of a period (GET /api/v1/analytics/summary)
//! as a table: totals, one row per group, and what is open now.

use serde_json::Value as Json;

use super::output::{Cell, Column, Table, percent};
use super::query_string;
use super::table::{cell, items, when};

/// How `tocsin analytics --by` groups the figures: the API's `group_by`, one definition.
pub use crate::store::GroupBy;

/// The request path: `/api/v1/analytics/summary?from=…&to=…&group_by=…` (unset ones left to
/// the API's defaults).
pub fn analytics_path(from: Option<&str>, to: Option<&str>, by: Option<GroupBy>) -> String {
    format!(
        "/api/v1/analytics/summary{}",
        query_string(&[
            ("from", from),
            ("to", to),
            ("group_by", by.map(GroupBy::name)),
        ])
    )
}

fn count(f: &Json, key: &str) -> Cell {
    match f.get(key) {
        Some(Json::Null) | None => Cell::Null,
        Some(v) => Cell::json(v),
    }
}

fn pct(f: &Json) -> Cell {
    match f.get("sla_met_pct").and_then(Json::as_f64) {
        Some(p) => Cell::text(percent(p)),
        None => Cell::Null,
    }
}

/// One text row of FIGURES.
fn text_row(key: String, f: &Json) -> Vec<Cell> {
    vec![
        Cell::text(key),
        count(f, "incidents"),
        count(f, "tickets"),
        count(f, "acknowledged"),
        count(f, "resolved"),
        Cell::millis(f, "mtta_ms"),
        Cell::millis(f, "mttr_ms"),
        Cell::millis(f, "mttr_net_ms"),
        pct(f),
        Cell::text(format!(
            "{}/{}",
            cell(f, "response_breached"),
            cell(f, "resolution_breached")
        )),
        count(f, "escalations"),
    ]
}

/// The figures as a table: the totals first, then one row per group.
pub fn analytics_table(v: &Json) -> Table {
    let by = v.get("group_by").and_then(Json::as_str).unwrap_or("key");
    let mut rows = vec![text_row(
        "TOTAL".into(),
        v.get("totals").unwrap_or(&Json::Null),
    )];
    for g in items(v.get("groups").unwrap_or(&Json::Null)) {
        rows.push(text_row(cell(g, "key"), g));
    }
    let key = if by == "none" {
        String::new()
    } else {
        by.to_uppercase()
    };
    Table::new(
        &[
            key.as_str(),
            "INCIDENTS",
            "TICKETS",
            "ACK'D",
            "RESOLVED",
            "MTTA",
            "MTTR",
            "MTTR NET",
            "SLA MET",
            "BREACHED RESP/RES",
            "ESCALATIONS",
        ],
        rows,
    )
}

/// The whole answer for people: the period, the table, and what is open now.
pub fn analytics_text(v: &Json) -> String {
    let mut o = format!(
        "From {} to {} UTC, by {}\n\n",
        when(v, "from"),
        when(v, "to"),
        cell(v, "group_by")
    );
    o.push_str(&analytics_table(v).text());
    o.push_str(&now_line(v.get("now").unwrap_or(&Json::Null)));
    o
}

/// `Now: 3 open incidents (P1 1, P2 2, P3 0, P4 0), 4 open tickets, 1 of them past an SLA target`.
fn now_line(now: &Json) -> String {
    let by_priority = now
        .get("open_incidents_by_priority")
        .and_then(Json::as_object)
        .map(|m| {
            let mut parts: Vec<(&String, &Json)> = m.iter().collect();
            parts.sort_by(|a, b| a.0.cmp(b.0));
            parts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    format!(
        "\nNow: {} open incidents{by_priority}, {} open tickets, {} of them past an SLA target\n",
        cell(now, "open_incidents"),
        cell(now, "open_tickets"),
        cell(now, "breached_open_tickets"),
    )
}

/// One CSV row of FIGURES: full numbers, durations in milliseconds.
fn csv_row(key: String, f: &Json) -> Vec<Cell> {
    let mut row = vec![Cell::text(key)];
    for k in CSV_FIELDS {
        row.push(Cell::field(f, k));
    }
    row
}

const CSV_FIELDS: [&str; 11] = [
    "incidents",
    "tickets",
    "acknowledged",
    "resolved",
    "mtta_ms",
    "mttr_ms",
    "mttr_net_ms",
    "sla_met_pct",
    "response_breached",
    "resolution_breached",
    "escalations",
];

/// The groups for `--csv`: one row per group with the API's field names; with `--by none`
/// (no groups) the totals as one row with the key `all`.
pub fn analytics_csv_table(v: &Json) -> Table {
    let groups = items(v.get("groups").unwrap_or(&Json::Null));
    let rows = if v.get("group_by").and_then(Json::as_str) == Some("none") && groups.is_empty() {
        vec![csv_row(
            "all".into(),
            v.get("totals").unwrap_or(&Json::Null),
        )]
    } else {
        groups.iter().map(|g| csv_row(cell(g, "key"), g)).collect()
    };
    let mut columns = vec![Column::named("KEY", "key")];
    columns.extend(CSV_FIELDS.iter().map(|f| Column::named(f, f)));
    Table::with_columns(columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The contract's example answer.
    fn sample() -> Json {
        json!({
            "from": "2026-10-31T03:00:00Z", "to": "2026-11-30T03:00:00Z", "group_by": "priority",
            "now": {"open_incidents": 3, "open_tickets": 4, "breached_open_tickets": 1,
                    "open_incidents_by_priority": {"P2": 2, "P1": 1, "P3": 0, "P4": 0}},
            "totals": {"incidents": 12, "tickets": 10, "acknowledged": 8, "resolved": 7,
                       "mtta_ms": 65000.0, "mttr_ms": 3_600_000.0, "mttr_net_ms": 3_500_000.0,
                       "response_breached": 1, "resolution_breached": 0, "sla_met_pct": 90.0,
                       "escalations": 3},
            "groups": [
                {"key": "P1", "incidents": 2, "tickets": 2, "acknowledged": 2, "resolved": 2,
                 "mtta_ms": 30000.0, "mttr_ms": 7_390_000.0, "mttr_net_ms": 7_390_000.0,
                 "response_breached": 1, "resolution_breached": 0, "sla_met_pct": 50.0,
                 "escalations": 3},
                {"key": "P4,\"q\"", "incidents": 1, "tickets": 0, "acknowledged": 0, "resolved": 0,
                 "mtta_ms": null, "mttr_ms": null, "mttr_net_ms": null,
                 "response_breached": 0, "resolution_breached": 0, "sla_met_pct": null,
                 "escalations": 0}
            ]
        })
    }

    #[test]
    fn analytics_table_for_people() {
        let t = analytics_text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0], "From 2026-10-31 03:00:00 to 2026-11-30 03:00:00 UTC, by priority",
            "{t}"
        );
        assert!(
            lines[2].starts_with("PRIORITY  INCIDENTS  TICKETS  ACK'D"),
            "{t}"
        );
        assert!(lines[2].contains("MTTR NET  SLA MET  BREACHED RESP/RES  ESCALATIONS"));
        let total: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            total,
            [
                "TOTAL", "12", "10", "8", "7", "1m", "5s", "1h", "58m", "20s", "90%", "1/0", "3"
            ],
            "{t}"
        );
        assert!(
            lines[4].starts_with("P1 ") && lines[4].contains("30s"),
            "{t}"
        );
        assert!(
            lines[4].contains("2h 3m") && lines[4].contains("50%"),
            "{t}"
        );
        // Nulls show as "-".
        let p4: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(
            p4,
            [
                "P4,\"q\"", "1", "0", "0", "0", "-", "-", "-", "-", "0/0", "0"
            ],
            "{t}"
        );
        assert_eq!(
            lines.last().copied(),
            Some(
                "Now: 3 open incidents (P1 1, P2 2, P3 0, P4 0), 4 open tickets, 1 of them past an SLA target"
            ),
            "{t}"
        );
    }

    #[test]
    fn analytics_without_groups() {
        let mut v = sample();
        v["group_by"] = json!("none");
        v["groups"] = json!([]);
        let t = analytics_table(&v).text();
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(
            t.lines().nth(1).is_some_and(|l| l.starts_with("TOTAL")),
            "{t}"
        );
        let csv = analytics_csv_table(&v).csv();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "all,12,10,8,7,65000.0,3600000.0,3500000.0,90.0,1,0,3"
        );
    }

    #[test]
    fn analytics_csv_has_the_groups_with_api_names() {
        let csv = analytics_csv_table(&sample()).csv();
        assert_eq!(
            csv,
            "key,incidents,tickets,acknowledged,resolved,mtta_ms,mttr_ms,mttr_net_ms,sla_met_pct,\
             response_breached,resolution_breached,escalations\r\n\
             P1,2,2,2,2,30000.0,7390000.0,7390000.0,50.0,1,0,3\r\n\
             \"P4,\"\"q\"\"\",1,0,0,0,,,,,0,0,0\r\n"
        );
    }

    #[test]
    fn request_paths() {
        assert_eq!(
            analytics_path(None, None, None),
            "/api/v1/analytics/summary"
        );
        assert_eq!(
            analytics_path(
                Some("2026-11-01"),
                Some("2026-11-30T00:00:00Z"),
                Some(GroupBy::Day)
            ),
            "/api/v1/analytics/summary?from=2026-11-01&to=2026-11-30T00%3A00%3A00Z&group_by=day"
        );
    }
}
