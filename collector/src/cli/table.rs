//! Plain-text tables and detail views of API answers.

use serde_json::Value as Json;

use super::output::{Cell, Table};

pub(super) fn cell(v: &Json, key: &str) -> String {
    match v.get(key) {
        None | Some(Json::Null) => "-".to_string(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Short timestamp: `2026-11-29 16:09:01` from RFC 3339.
pub(super) fn when(v: &Json, key: &str) -> String {
    let s = cell(v, key);
    if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') {
        format!("{} {}", &s[..10], &s[11..19])
    } else {
        s
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Render rows under headers with aligned columns.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

/// Bytes as GiB with one decimal.
pub(super) fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

pub(super) fn items(v: &Json) -> &[Json] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// `merged→12` for a merged incident, else its state.
fn incident_state(i: &Json) -> String {
    match i.get("merged_into").and_then(Json::as_i64) {
        Some(into) => format!("merged→{into}"),
        None => cell(i, "state"),
    }
}

/// The root cause in words, else the title.
fn root_cause(i: &Json) -> String {
    match i.get("root_cause").and_then(Json::as_str) {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => cell(i, "title"),
    }
}

pub fn incidents_table(v: &Json) -> Table {
    let rows: Vec<Vec<Cell>> = items(v)
        .iter()
        .map(|i| {
            vec![
                Cell::field(i, "id"),
                Cell::text(incident_state(i)),
                Cell::field(i, "priority"),
                Cell::field(i, "ticket_number"),
                Cell::text(format!("{}/{}", cell(i, "site"), cell(i, "node"))),
                Cell::field(i, "nodes_affected"),
                Cell::field(i, "symptoms"),
                Cell::field(i, "problem_number"),
                Cell::time(i, "opened_at"),
                Cell::Long(root_cause(i), 60),
            ]
        })
        .collect();
    Table::new(
        &[
            "ID",
            "STATE",
            "PRIO",
            "TICKET",
            "NODE",
            "NODES",
            "SYMPTOMS",
            "PROBLEM",
            "OPENED",
            "ROOT CAUSE",
        ],
        rows,
    )
}

/// One incident: root cause, scope, problem, and its alerts by role.
pub fn incident_detail(i: &Json) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "Incident {}  {}  {} (impact {}, urgency {})  ticket {}\n",
        cell(i, "id"),
        incident_state(i),
        cell(i, "priority"),
        cell(i, "impact"),
        cell(i, "urgency"),
        cell(i, "ticket_number"),
    ));
    o.push_str(&format!("Title:       {}\n", cell(i, "title")));
    o.push_str(&format!("Root cause:  {}\n", root_cause(i)));
    o.push_str(&format!(
        "Node:        {}/{}  (nodes affected {}, symptoms {})\n",
        cell(i, "site"),
        cell(i, "node"),
        cell(i, "nodes_affected"),
        cell(i, "symptoms")
    ));
    if i.get("group_key").is_some_and(|g| !g.is_null()) {
        o.push_str(&format!("Group:       {}\n", cell(i, "group_key")));
    }
    if let Some(p) = i.get("problem").filter(|p| !p.is_null()) {
        o.push_str(&format!(
            "Problem:     {} ({})",
            cell(p, "number"),
            cell(p, "state")
        ));
        if p.get("workaround").is_some_and(|w| !w.is_null()) {
            o.push_str(&format!("  workaround: {}", cell(p, "workaround")));
        }
        o.push('\n');
    }
    if i.get("merged_into").is_some_and(|m| !m.is_null()) {
        o.push_str(&format!(
            "Merged into: incident {}\n",
            cell(i, "merged_into")
        ));
    }
    let merged_from: Vec<String> = items(i.get("merged_from").unwrap_or(&Json::Null))
        .iter()
        .map(|m| m.to_string())
        .collect();
    if !merged_from.is_empty() {
        o.push_str(&format!("Merged from: {}\n", merged_from.join(", ")));
    }
    if i.get("flapping").and_then(Json::as_bool) == Some(true) {
        o.push_str("Flapping:    yes (notifications held until it settles)\n");
    }
    o.push_str(&format!("Opened:      {}\n", when(i, "opened_at")));
    if i.get("resolved_at").is_some_and(|r| !r.is_null()) {
        o.push_str(&format!("Resolved:    {}\n", when(i, "resolved_at")));
    }
    if i.get("closed_at").is_some_and(|r| !r.is_null()) {
        o.push_str(&format!("Closed:      {}\n", when(i, "closed_at")));
    }
    let alerts = items(i.get("alerts").unwrap_or(&Json::Null));
    o.push_str("\nAlerts:\n");
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                cell(a, "role"),
                cell(a, "state"),
                format!("{}/{}", cell(a, "site"), cell(a, "node")),
                cell(a, "rule"),
                when(a, "changed_at"),
                truncate(&cell(a, "summary"), 60),
            ]
        })
        .collect();
    o.push_str(&render(
        &["ROLE", "STATE", "NODE", "RULE", "CHANGED", "SUMMARY"],
        &rows,
    ));
    o
}

pub fn problems_table(v: &Json) -> Table {
    let rows: Vec<Vec<Cell>> = items(v)
        .iter()
        .map(|p| {
            vec![
                Cell::field(p, "number"),
                Cell::field(p, "state"),
                Cell::field(p, "incident_count"),
                Cell::text(format!("{}/{}", cell(p, "site"), cell(p, "node"))),
                Cell::field(p, "rule"),
                Cell::time(p, "last_incident_at"),
                Cell::long(p, "title", 60),
            ]
        })
        .collect();
    Table::new(
        &[
            "PROBLEM",
            "STATE",
            "INCIDENTS",
            "NODE",
            "RULE",
            "LAST INCIDENT",
            "TITLE",
        ],
        rows,
    )
}

/// One problem record with its incidents.
pub fn problem_detail(p: &Json) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "{}  {}  {} incidents  category {}\n",
        cell(p, "number"),
        cell(p, "state"),
        cell(p, "incident_count"),
        cell(p, "category")
    ));
    o.push_str(&format!("Title:       {}\n", cell(p, "title")));
    o.push_str(&format!(
        "Where:       {}/{}  rule {}\n",
        cell(p, "site"),
        cell(p, "node"),
        cell(p, "rule")
    ));
    o.push_str(&format!("Signature:   {}\n", cell(p, "signature")));
    o.push_str(&format!("KB:          {}\n", cell(p, "kb")));
    o.push_str(&format!("Workaround:  {}\n", cell(p, "workaround")));
    o.push_str(&format!("Opened:      {}\n", when(p, "opened_at")));
    o.push_str(&format!("Last:        {}\n", when(p, "last_incident_at")));
    if p.get("known_error_at").is_some_and(|v| !v.is_null()) {
        o.push_str(&format!("Known error: {}\n", when(p, "known_error_at")));
    }
    if p.get("resolved_at").is_some_and(|v| !v.is_null()) {
        o.push_str(&format!("Resolved:    {}\n", when(p, "resolved_at")));
    }
    let rows: Vec<Vec<String>> = items(p.get("incidents").unwrap_or(&Json::Null))
        .iter()
        .map(|i| {
            vec![
                cell(i, "id"),
                cell(i, "state"),
                cell(i, "ticket_number"),
                format!("{}/{}", cell(i, "site"), cell(i, "node")),
                when(i, "opened_at"),
                truncate(&cell(i, "title"), 60),
            ]
        })
        .collect();
    o.push_str("\nIncidents:\n");
    o.push_str(&render(
        &["ID", "STATE", "TICKET", "NODE", "OPENED", "TITLE"],
        &rows,
    ));
    o
}

/// `node=web-*, labels.role=db`
fn match_text(m: &Json) -> String {
    match m.as_object() {
        Some(o) if !o.is_empty() => o
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(every node)".into(),
    }
}

/// Maintenance windows (a list, or one window).
pub fn maintenance_table(v: &Json) -> Table {
    let list: Vec<&Json> = match v {
        Json::Array(a) => a.iter().collect(),
        Json::Object(_) => vec![v],
        _ => Vec::new(),
    };
    let rows: Vec<Vec<Cell>> = list
        .iter()
        .map(|m| {
            let now = if m.get("cancelled_at").is_some_and(|c| !c.is_null()) {
                "ended"
            } else if m.get("in_effect").and_then(Json::as_bool) == Some(true) {
                "yes"
            } else {
                "no"
            };
            vec![
                Cell::field(m, "id"),
                Cell::long(m, "name", 30),
                Cell::Long(match_text(m.get("match").unwrap_or(&Json::Null)), 40),
                Cell::time(m, "starts_at"),
                Cell::time(m, "ends_at"),
                m.get("every_ms")
                    .and_then(Json::as_i64)
                    .map(|ms| Cell::text(crate::time::human(ms)))
                    .unwrap_or(Cell::Null),
                Cell::text(now),
                Cell::field(m, "created_by"),
                Cell::long(m, "reason", 40),
            ]
        })
        .collect();
    Table::new(
        &[
            "ID", "NAME", "MATCH", "STARTS", "ENDS", "EVERY", "NOW", "BY", "REASON",
        ],
        rows,
    )
}

/// The answer of a rule reload.
pub fn reload_result(v: &Json) -> String {
    format!(
        "rules reloaded: {} rules in {} files from {}; {} live alerts resolved\n",
        cell(v, "rules"),
        cell(v, "files"),
        cell(v, "dir"),
        cell(v, "alerts_resolved")
    )
}

pub fn nodes_table(v: &Json) -> Table {
    let rows: Vec<Vec<Cell>> = items(v)
        .iter()
        .map(|n| {
            let inv = n.get("inventory").cloned().unwrap_or(Json::Null);
            vec![
                Cell::field(n, "site"),
                Cell::field(n, "node"),
                Cell::field(n, "kind"),
                Cell::field(n, "state"),
                Cell::text(format!("{} {}", cell(&inv, "os"), cell(&inv, "os_version"))),
                Cell::field(n, "agent_version"),
                Cell::time(n, "last_report_at"),
            ]
        })
        .collect();
    Table::new(
        &[
            "SITE",
            "NODE",
            "KIND",
            "STATE",
            "OS",
            "AGENT",
            "LAST REPORT",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn incidents_show_root_cause_scope_and_problem() {
        let v = json!([{"id": 7, "state": "merged", "merged_into": 5, "priority": "P2",
            "ticket_number": "INC-000007", "site": "dc1", "node": "sw-1", "nodes_affected": 3,
            "symptoms": 2, "problem_number": "PRB-000001", "opened_at": "2026-11-29T16:09:01.123Z",
            "root_cause": "sw-1 is offline", "title": "t"}]);
        let t = incidents_table(&v).text();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("ROOT CAUSE") && lines[0].contains("SYMPTOMS"),
            "{t}"
        );
        assert!(
            lines[1].contains("merged→5") && lines[1].contains("PRB-000001"),
            "{t}"
        );
        assert!(lines[1].contains("sw-1 is offline"), "{t}");
        let d = incident_detail(
            &json!({"id": 5, "state": "open", "priority": "P1", "root_cause": "sw-1 is offline",
            "site": "dc1", "node": "sw-1", "nodes_affected": 3, "symptoms": 2, "merged_from": [7],
            "problem": {"number": "PRB-000001", "state": "known_error", "workaround": "power cycle"},
            "alerts": [{"role": "root", "state": "firing", "site": "dc1", "node": "sw-1", "rule": "node_offline",
                        "summary": "sw-1 is offline"},
                       {"role": "symptom", "state": "firing", "site": "dc1", "node": "web-01", "rule": "node_offline",
                        "summary": "web-01 is offline"}]}),
        );
        assert!(d.contains("Root cause:  sw-1 is offline"), "{d}");
        assert!(d.contains("nodes affected 3, symptoms 2"), "{d}");
        assert!(
            d.contains("PRB-000001 (known_error)  workaround: power cycle"),
            "{d}"
        );
        assert!(d.contains("Merged from: 7"), "{d}");
        assert!(
            d.lines()
                .any(|l| l.starts_with("symptom") && l.contains("dc1/web-01")),
            "{d}"
        );
    }

    #[test]
    fn problems_and_maintenance() {
        let p = json!({"number": "PRB-000001", "state": "open", "incident_count": 3, "category": "software",
            "title": "db down again", "site": "dc1", "node": "db-01", "rule": "check_critical",
            "incidents": [{"id": 1, "state": "closed", "ticket_number": "INC-000001", "site": "dc1",
                           "node": "db-01", "opened_at": "2026-11-29T16:09:01.123Z", "title": "db down"}]});
        assert!(
            problems_table(&json!([p.clone()]))
                .text()
                .contains("PRB-000001  open   3")
        );
        let d = problem_detail(&p);
        assert!(d.contains("Incidents:") && d.contains("INC-000001"), "{d}");
        let m = json!([{"id": 2, "name": "patch", "match": {"node": "web-*", "labels.role": "db"},
            "starts_at": "2026-11-29T16:00:00.000Z", "ends_at": "2026-11-29T18:00:00.000Z", "every_ms": 604800000,
            "in_effect": true, "created_by": "alice", "reason": "kernel", "cancelled_at": null}]);
        let t = maintenance_table(&m).text();
        assert!(t.contains("labels.role=db, node=web-*"), "{t}");
        assert!(
            t.contains("7days") && t.contains("yes") && t.contains("alice"),
            "{t}"
        );
        assert!(maintenance_table(&m[0]).text().lines().count() == 2);
    }
}
