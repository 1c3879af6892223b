//! Tickets and the notification outbox as text: the list, one ticket as a dispatcher reads
//! it (record, SLA, escalation, resolution, similar past incidents, log), and the outbox.

use serde_json::Value as Json;

use super::output::{Cell, Table};
use super::table::{cell, gib, items, truncate, when};
use crate::time::human;

fn present(v: &Json, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null() && x != "")
}

/// A field that may still be JSON text (older answers): as JSON.
fn json_field(v: &Json, key: &str) -> Json {
    match v.get(key) {
        Some(Json::String(s)) => serde_json::from_str(s).unwrap_or(Json::Null),
        Some(other) => other.clone(),
        None => Json::Null,
    }
}

/// `2026-11-29 16:09` from RFC 3339 (no seconds: for due times in a table).
fn short(v: &Json, key: &str) -> String {
    when(v, key).chars().take(16).collect()
}

/// The SLA in one cell: breached, paused, met, or what is due next and when.
fn sla_cell(t: &Json) -> String {
    let state = t.get("state").and_then(Json::as_str).unwrap_or_default();
    if present(t, "resolution_breached_at") {
        "BREACHED resolution".into()
    } else if present(t, "response_breached_at") {
        "BREACHED response".into()
    } else if matches!(state, "resolved" | "closed") {
        "met".into()
    } else if state == "pending" {
        "paused".into()
    } else if present(t, "response_due_at") && !present(t, "acknowledged_at") {
        format!("ack by {}", short(t, "response_due_at"))
    } else if present(t, "resolution_due_at") {
        format!("fix by {}", short(t, "resolution_due_at"))
    } else {
        "-".into()
    }
}

pub fn tickets_table(v: &Json) -> Table {
    let rows: Vec<Vec<Cell>> = items(v)
        .iter()
        .map(|t| {
            vec![
                Cell::field(t, "number"),
                Cell::field(t, "state"),
                Cell::field(t, "priority"),
                Cell::field(t, "category"),
                Cell::field(t, "assignment_group"),
                Cell::long(t, "assignee", 20),
                Cell::text(sla_cell(t)),
                Cell::time(t, "opened_at"),
                Cell::long(t, "summary", 60),
            ]
        })
        .collect();
    Table::new(
        &[
            "TICKET", "STATE", "PRIO", "CATEGORY", "GROUP", "ASSIGNEE", "SLA", "OPENED", "SUMMARY",
        ],
        rows,
    )
}

/// Who reported it: monitoring (node, site, agent) or a person (name, department, contact).
fn reporter_line(rep: &Json) -> String {
    if rep.get("type").and_then(Json::as_str) == Some("monitoring") || present(rep, "node") {
        return format!(
            "monitoring node {} at site {} (agent {})",
            cell(rep, "node"),
            cell(rep, "site"),
            cell(rep, "agent_version")
        );
    }
    let mut s = cell(rep, "name");
    if present(rep, "department") {
        s.push_str(&format!(" ({})", cell(rep, "department")));
    }
    if present(rep, "contact") {
        s.push_str(&format!(", {}", cell(rep, "contact")));
    }
    s
}

/// `a, b` from a JSON array of strings.
fn list(v: &Json) -> String {
    items(v)
        .iter()
        .map(|x| {
            x.as_str()
                .map(String::from)
                .unwrap_or_else(|| x.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn affected_line(a: &Json) -> Option<String> {
    let mut parts = Vec::new();
    let nodes = list(a.get("nodes").unwrap_or(&Json::Null));
    if !nodes.is_empty() {
        parts.push(format!("nodes {nodes}"));
    }
    let services = list(a.get("services").unwrap_or(&Json::Null));
    if !services.is_empty() {
        parts.push(format!("services {services}"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The two SLA targets: target, when due, and breach.
fn sla_lines(t: &Json, o: &mut String) {
    let sla = json_field(t, "sla");
    let target = |key: &str| {
        t.get(key)
            .and_then(Json::as_i64)
            .or_else(|| sla.get(key).and_then(Json::as_i64))
    };
    let (response, resolution) = (target("response_target_ms"), target("resolution_target_ms"));
    if response.is_none() && resolution.is_none() {
        return;
    }
    let mut line = |name: &str, target: Option<i64>, due: &str, breached: &str, done: &str| {
        let mut s = format!("{name:<11}");
        match target {
            Some(ms) => s.push_str(&format!("target {}", human(ms))),
            None => s.push_str("no target"),
        }
        if present(t, breached) {
            s.push_str(&format!(", BREACHED at {}", when(t, breached)));
        }
        if present(t, done) {
            s.push_str(&format!(", done {}", when(t, done)));
        } else if present(t, due) {
            s.push_str(&format!(", due {}", when(t, due)));
        }
        o.push_str(&format!("SLA:       {s}\n"));
    };
    line(
        "response",
        response,
        "response_due_at",
        "response_breached_at",
        "acknowledged_at",
    );
    line(
        "resolution",
        resolution,
        "resolution_due_at",
        "resolution_breached_at",
        "resolved_at",
    );
    let elapsed = t
        .get("resolution_elapsed_ms")
        .and_then(Json::as_i64)
        .filter(|ms| *ms > 0);
    let calendar = sla.get("calendar").and_then(Json::as_str);
    if elapsed.is_some() || calendar.is_some() {
        let mut s = String::new();
        if let Some(ms) = elapsed {
            s.push_str(&format!("resolution time used {}", human(ms)));
        }
        if let Some(c) = calendar {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&format!("counted in calendar {c}"));
        }
        if t.get("state").and_then(Json::as_str) == Some("pending") {
            s.push_str(" (clock paused: pending)");
        }
        o.push_str(&format!("           {s}\n"));
    }
}

fn inventory_line(inv: &Json) -> String {
    let ips = list(inv.get("ip_addresses").unwrap_or(&Json::Null));
    format!(
        "{} — {} {}, kernel {}, {}, {} cores {}, {} RAM, IPs {}",
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
    o.push_str(&format!(
        "Kind:      {}, category {}\n",
        cell(t, "kind"),
        cell(t, "category")
    ));
    o.push_str(&format!(
        "Assignee:  {}\n",
        if present(t, "assignee") {
            cell(t, "assignee")
        } else {
            format!("- (in the queue of {})", cell(t, "assignment_group"))
        }
    ));
    if let Some(rep) = t.get("reporter").filter(|r| r.is_object()) {
        o.push_str(&format!("Reporter:  {}\n", reporter_line(rep)));
    }
    if let Some(a) = affected_line(&json_field(t, "affected")) {
        o.push_str(&format!("Affected:  {a}\n"));
    }
    if present(t, "detected_at") {
        o.push_str(&format!("Started:   {}\n", when(t, "detected_at")));
    }
    o.push_str(&format!("Opened:    {}\n", when(t, "opened_at")));
    for (label, key) in [
        ("Acked:     ", "acknowledged_at"),
        ("Resolved:  ", "resolved_at"),
        ("Closed:    ", "closed_at"),
    ] {
        if present(t, key) {
            o.push_str(&format!("{label}{}\n", when(t, key)));
        }
    }
    sla_lines(t, &mut o);
    let level = t
        .get("escalation_level")
        .and_then(Json::as_i64)
        .unwrap_or(0);
    if level > 0 {
        o.push_str(&format!(
            "Escalated: level {level} at {}\n",
            when(t, "escalated_at")
        ));
    }
    if let Some(n) = t.get("reopened").and_then(Json::as_i64).filter(|n| *n > 0) {
        o.push_str(&format!("Reopened:  {n} time(s)\n"));
    }
    if present(t, "resolution") || present(t, "cause_code") {
        o.push_str(&format!(
            "Resolution: {} (cause {})\n",
            cell(t, "resolution"),
            cell(t, "cause_code")
        ));
    }
    if present(t, "close_held") {
        o.push_str(&format!(
            "Close:     waits for an operator ({})\n",
            cell(t, "close_held")
        ));
    }
    if present(t, "problem_number") {
        o.push_str(&format!("Problem:   {}\n", cell(t, "problem_number")));
    }
    if present(t, "workaround") {
        o.push_str(&format!("Workaround: {}\n", cell(t, "workaround")));
    }
    if present(t, "runbook") {
        o.push_str(&format!("Runbook:   {}\n", cell(t, "runbook")));
    }
    if let Some(inv) = t
        .get("environment")
        .and_then(|e| e.get("inventory"))
        .filter(|i| !i.is_null())
    {
        o.push_str(&format!("Node:      {}\n", inventory_line(inv)));
    }
    o.push('\n');
    o.push_str(&cell(t, "description"));
    if !o.ends_with('\n') {
        o.push('\n');
    }
    let similar = json_field(t, "similar");
    if !items(&similar).is_empty() {
        o.push_str("\nSimilar past incidents:\n");
        for s in items(&similar) {
            let mut line = format!(
                "  {}  {}  {}",
                cell(s, "number"),
                when(s, "opened_at"),
                truncate(&cell(s, "summary"), 50)
            );
            if present(s, "resolution") {
                line.push_str(&format!(" — {}", truncate(&cell(s, "resolution"), 60)));
            }
            if present(s, "cause_code") {
                line.push_str(&format!(" (cause {})", cell(s, "cause_code")));
            }
            o.push_str(&line);
            o.push('\n');
        }
    }
    let events = items(t.get("events").unwrap_or(&Json::Null));
    if !events.is_empty() {
        o.push_str("\nLog:\n");
        for e in events {
            o.push_str(&format!(
                "  {}  {:<16} {:<24} {}\n",
                when(e, "created_at"),
                cell(e, "kind"),
                truncate(&cell(e, "actor"), 24),
                cell(e, "message")
            ));
        }
    }
    o
}

/// The notification outbox.
pub fn notifications_table(v: &Json) -> Table {
    let rows: Vec<Vec<Cell>> = items(v)
        .iter()
        .map(|n| {
            let done = if present(n, "sent_at") {
                Cell::time(n, "sent_at")
            } else if present(n, "failed_at") {
                Cell::time(n, "failed_at")
            } else {
                Cell::Null
            };
            vec![
                Cell::field(n, "id"),
                Cell::field(n, "state"),
                Cell::field(n, "channel"),
                Cell::field(n, "target"),
                Cell::field(n, "event"),
                Cell::field(n, "ticket_number"),
                Cell::field(n, "attempts"),
                Cell::time(n, "created_at"),
                done,
                Cell::long(n, "last_error", 50),
            ]
        })
        .collect();
    Table::new(
        &[
            "ID",
            "STATE",
            "CHANNEL",
            "TARGET",
            "EVENT",
            "TICKET",
            "TRIES",
            "CREATED",
            "SENT/FAILED",
            "LAST ERROR",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_handle_empty() {
        let v = json!([
            {"number": "INC-000001", "state": "new", "priority": "P1", "category": "software",
             "assignment_group": "service-desk", "opened_at": "2026-11-29T16:09:01.123Z", "summary": "web-01: tcp:pg is critical",
             "response_due_at": "2026-11-29T16:24:01.123Z"},
            {"number": "REQ-000001", "state": "in_progress", "priority": "P4", "assignee": "bob",
             "resolution_breached_at": "2026-11-29T18:00:00.000Z", "summary": "vpn"},
        ]);
        let t = tickets_table(&v).text();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TICKET") && lines[0].contains("ASSIGNEE"));
        assert!(lines[1].starts_with("INC-000001  new"));
        assert!(lines[1].contains("2026-11-29 16:09:01"));
        assert!(lines[1].contains("ack by 2026-11-29 16:24"), "{t}");
        assert!(
            lines[2].contains("bob") && lines[2].contains("BREACHED resolution"),
            "{t}"
        );
        assert!(tickets_table(&json!([])).text().contains("(none)"));
    }

    #[test]
    fn detail_shows_record_and_log() {
        let t = json!({"number": "INC-000001", "priority": "P2", "impact": "medium", "urgency": "high",
            "state": "new", "assignment_group": "service-desk", "summary": "s", "category": "software",
            "opened_at": "2026-11-29T16:09:01.123Z", "description": "what happened",
            "reporter": {"type": "monitoring", "node": "web-01", "site": "dc1", "agent_version": "0.1.0"},
            "environment": {"inventory": {"hostname": "web-01", "os": "Debian", "ip_addresses": ["10.0.0.5"],
                "memory_bytes": 25_276_502_016u64}},
            "events": [{"created_at": "2026-11-29T16:09:01.123Z", "kind": "opened", "actor": "monitoring",
                "message": "opened by monitoring"}]});
        let d = ticket_detail(&t);
        assert!(d.contains("INC-000001  P2"));
        assert!(d.contains("IPs 10.0.0.5"));
        assert!(d.contains("23.5 GiB RAM"), "{d}");
        assert!(d.contains("opened by monitoring"));
        assert!(
            d.contains("Reporter:  monitoring node web-01 at site dc1"),
            "{d}"
        );
        assert!(
            d.contains("Assignee:  - (in the queue of service-desk)"),
            "{d}"
        );
        assert!(!d.contains("Problem:") && !d.contains("SLA:"), "{d}");
        let mut t = t;
        t["problem_number"] = json!("PRB-000002");
        t["workaround"] = json!("restart the pool");
        let d = ticket_detail(&t);
        assert!(d.contains("Problem:   PRB-000002"), "{d}");
        assert!(d.contains("Workaround: restart the pool"), "{d}");
    }

    #[test]
    fn detail_shows_the_service_desk_fields() {
        let t = json!({"number": "REQ-000003", "kind": "request", "priority": "P3", "state": "resolved",
            "assignment_group": "network", "assignee": "bob", "summary": "vpn",
            "reporter": {"name": "Ann", "department": "Sales", "contact": "ann@example.com"},
            "affected": "{\"nodes\":[\"vpn-1\"],\"services\":[\"vpn\"]}",
            "detected_at": "2026-11-29T15:00:00.000Z", "opened_at": "2026-11-29T15:05:00.000Z",
            "acknowledged_at": "2026-11-29T15:10:00.000Z", "resolved_at": "2026-11-29T17:00:00.000Z",
            "response_target_ms": 900_000, "resolution_target_ms": 14_400_000,
            "resolution_due_at": "2026-11-29T19:05:00.000Z", "resolution_elapsed_ms": 6_900_000,
            "response_breached_at": null, "resolution_breached_at": null,
            "sla": {"calendar": "office"},
            "escalation_level": 2, "escalated_at": "2026-11-29T16:00:00.000Z", "reopened": 1,
            "resolution": "recreated the account", "cause_code": "configuration-error",
            "similar": [{"number": "REQ-000001", "opened_at": "2026-11-01T10:00:00.000Z", "summary": "vpn broken",
                         "resolution": "reset the token", "cause_code": "user-error"}],
            "events": []});
        let d = ticket_detail(&t);
        for needle in [
            "Kind:      request",
            "Assignee:  bob",
            "Reporter:  Ann (Sales), ann@example.com",
            "Affected:  nodes vpn-1; services vpn",
            "Started:   2026-11-29 15:00:00",
            "SLA:       response   target 15m, done 2026-11-29 15:10:00",
            "SLA:       resolution target 4h, done 2026-11-29 17:00:00",
            "resolution time used 1h 55m, counted in calendar office",
            "Escalated: level 2 at 2026-11-29 16:00:00",
            "Reopened:  1 time(s)",
            "Resolution: recreated the account (cause configuration-error)",
            "Similar past incidents:",
            "REQ-000001  2026-11-01 10:00:00  vpn broken — reset the token (cause user-error)",
        ] {
            assert!(d.contains(needle), "{needle:?} missing in:\n{d}");
        }
    }

    #[test]
    fn outbox_table() {
        let v = json!([{"id": 3, "state": "failed", "channel": "webhook", "target": "oncall",
            "event": "ticket.escalated", "ticket_number": "INC-000001", "attempts": 5,
            "created_at": "2026-11-29T16:09:01.123Z", "failed_at": "2026-11-29T16:19:01.123Z",
            "last_error": "HTTP 500"}]);
        let t = notifications_table(&v).text();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID  STATE"), "{t}");
        assert!(
            lines[1].contains("failed") && lines[1].contains("2026-11-29 16:19:01"),
            "{t}"
        );
        assert!(lines[1].ends_with("HTTP 500"), "{t}");
    }
}
