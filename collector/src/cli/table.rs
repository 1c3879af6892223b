//! Plain-text tables and detail views of API answers.

use serde_json::Value as Json;

fn cell(v: &Json, key: &str) -> String {
    match v.get(key) {
        None | Some(Json::Null) => "-".to_string(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Short timestamp: `2026-11-29 16:09:01` from RFC 3339.
fn when(v: &Json, key: &str) -> String {
    let s = cell(v, key);
    if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') {
        format!("{} {}", &s[..10], &s[11..19])
    } else {
        s
    }
}

fn truncate(s: &str, max: usize) -> String {
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
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn items(v: &Json) -> &[Json] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub fn incidents_table(v: &Json) -> String {
    let rows: Vec<Vec<String>> = items(v)
        .iter()
        .map(|i| {
            vec![
                cell(i, "id"),
                cell(i, "state"),
                cell(i, "priority"),
                cell(i, "ticket_number"),
                format!("{}/{}", cell(i, "site"), cell(i, "node")),
                cell(i, "alert_count"),
                when(i, "opened_at"),
                truncate(&cell(i, "title"), 60),
            ]
        })
        .collect();
    render(
        &[
            "ID", "STATE", "PRIO", "TICKET", "NODE", "ALERTS", "OPENED", "TITLE",
        ],
        &rows,
    )
}

pub fn tickets_table(v: &Json) -> String {
    let rows: Vec<Vec<String>> = items(v)
        .iter()
        .map(|t| {
            vec![
                cell(t, "number"),
                cell(t, "state"),
                cell(t, "priority"),
                cell(t, "category"),
                cell(t, "assignment_group"),
                when(t, "opened_at"),
                truncate(&cell(t, "summary"), 60),
            ]
        })
        .collect();
    render(
        &[
            "TICKET", "STATE", "PRIO", "CATEGORY", "GROUP", "OPENED", "SUMMARY",
        ],
        &rows,
    )
}

pub fn nodes_table(v: &Json) -> String {
    let rows: Vec<Vec<String>> = items(v)
        .iter()
        .map(|n| {
            let inv = n.get("inventory").cloned().unwrap_or(Json::Null);
            vec![
                cell(n, "site"),
                cell(n, "node"),
                cell(n, "kind"),
                cell(n, "state"),
                format!("{} {}", cell(&inv, "os"), cell(&inv, "os_version")),
                cell(n, "agent_version"),
                when(n, "last_report_at"),
            ]
        })
        .collect();
    render(
        &[
            "SITE",
            "NODE",
            "KIND",
            "STATE",
            "OS",
            "AGENT",
            "LAST REPORT",
        ],
        &rows,
    )
}

/// A ticket with its record and event log, as a dispatcher reads it.
pub fn ticket_detail(t: &Json) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "{}  {} (impact {}, urgency {})  {}  group {}\n",
        cell(t, "number"),
        cell(t, "priority"),
        cell(t, "impact"),
        cell(t, "urgency"),
        cell(t, "state"),
        cell(t, "assignment_group")
    ));
    o.push_str(&format!("Summary:   {}\n", cell(t, "summary")));
    o.push_str(&format!("Category:  {}\n", cell(t, "category")));
    o.push_str(&format!("Opened:    {}\n", when(t, "opened_at")));
    if let Some(rep) = t.get("reporter") {
        o.push_str(&format!(
            "Reporter:  {} node {} at site {} (agent {})\n",
            cell(rep, "type"),
            cell(rep, "node"),
            cell(rep, "site"),
            cell(rep, "agent_version")
        ));
    }
    if let Some(inv) = t
        .get("environment")
        .and_then(|e| e.get("inventory"))
        .filter(|i| !i.is_null())
    {
        let ips = inv
            .get("ip_addresses")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        o.push_str(&format!(
            "Node:      {} — {} {}, kernel {}, {}, {} cores {}, {} RAM, IPs {}\n",
            cell(inv, "hostname"),
            cell(inv, "os"),
            cell(inv, "os_version"),
            cell(inv, "kernel"),
            cell(inv, "arch"),
            cell(inv, "cpu_cores"),
            cell(inv, "cpu_model"),
            inv.get("memory_bytes")
                .and_then(Json::as_u64)
                .map(gib)
                .unwrap_or_else(|| "-".into()),
            if ips.is_empty() { "-".into() } else { ips }
        ));
    }
    o.push('\n');
    o.push_str(&cell(t, "description"));
    if !o.ends_with('\n') {
        o.push('\n');
    }
    let events = items(t.get("events").unwrap_or(&Json::Null));
    if !events.is_empty() {
        o.push_str("\nLog:\n");
        for e in events {
            o.push_str(&format!(
                "  {}  {:<16} {}\n",
                when(e, "created_at"),
                cell(e, "kind"),
                cell(e, "message")
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_handle_empty() {
        let v = json!([
            {"number": "INC-000001", "state": "new", "priority": "P1", "category": "software",
             "assignment_group": "service-desk", "opened_at": "2026-11-29T16:09:01.123Z", "summary": "web-01: tcp:pg is critical"},
        ]);
        let t = tickets_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TICKET"));
        assert!(lines[1].starts_with("INC-000001  new"));
        assert!(lines[1].contains("2026-11-29 16:09:01"));
        assert!(tickets_table(&json!([])).contains("(none)"));
    }

    #[test]
    fn detail_shows_record_and_log() {
        let t = json!({"number": "INC-000001", "priority": "P2", "impact": "medium", "urgency": "high",
            "state": "new", "assignment_group": "service-desk", "summary": "s", "category": "software",
            "opened_at": "2026-11-29T16:09:01.123Z", "description": "what happened",
            "reporter": {"type": "monitoring", "node": "web-01", "site": "dc1", "agent_version": "0.1.0"},
            "environment": {"inventory": {"hostname": "web-01", "os": "Debian", "ip_addresses": ["10.0.0.5"],
                "memory_bytes": 25_276_502_016u64}},
            "events": [{"created_at": "2026-11-29T16:09:01.123Z", "kind": "opened", "message": "opened by monitoring"}]});
        let d = ticket_detail(&t);
        assert!(d.contains("INC-000001  P2"));
        assert!(d.contains("IPs 10.0.0.5"));
        assert!(d.contains("23.5 GiB RAM"), "{d}");
        assert!(d.contains("opened by monitoring"));
    }
}
