//! Ticket intake for monitoring-found faults: the record a dispatcher would have collected.

use serde_json::json;

use super::model::{IncidentRow, NodeInventory, NodeRow, TicketRow, TicketState};
use super::policy::{Level, Policy};
use crate::rules::AlertTransition;
use crate::time::{Millis, rfc3339};

/// The facts for one new monitoring ticket.
pub(super) struct Intake<'a> {
    pub id: i64,
    pub number: String,
    pub incident: &'a IncidentRow,
    pub alert: &'a AlertTransition,
    pub node: Option<&'a NodeRow>,
    pub impact: Level,
    pub urgency: Level,
    pub group: String,
    pub now: Millis,
}

/// Build the ticket: who reported it, when it started, what is wrong, where, how bad, who owns it.
pub(super) fn monitoring_ticket(i: Intake<'_>) -> TicketRow {
    let t = i.alert;
    let reporter = json!({
        "type": "monitoring",
        "source": "tocsin-agent",
        "node": t.node,
        "site": t.site,
        "agent_version": i.node.and_then(|n| n.agent_version.as_deref()),
        "rule": t.rule,
    });
    let environment = match i.node {
        Some(n) => json!({
            "kind": n.kind.as_str(),
            "inventory": n.inventory.as_ref(),
            "labels": &*n.labels,
            "parents": &*n.parents,
            "via": n.via,
            "node_state": n.state,
        }),
        None => json!({}),
    };
    let impact_basis = i
        .node
        .and_then(|n| {
            n.labels
                .get("criticality")
                .map(|c| format!("node label criticality={c}"))
        })
        .unwrap_or_else(|| "no criticality label on the node: default impact".to_string());
    let mut description = String::new();
    description.push_str(&format!("{}\n\n", t.summary));
    description.push_str(&format!("What: {}\n", t.detail));
    if !t.description.is_empty() {
        description.push_str(&format!("Details: {}\n", t.description));
    }
    description.push_str(&format!(
        "Rule: {} (severity {}, category {})\n",
        t.rule,
        t.severity.as_str(),
        t.category.as_str()
    ));
    description.push_str(&format!("Where: node {} at site {}\n", t.node, t.site));
    if let Some(inv) = i
        .node
        .and_then(|n| n.inventory.as_ref())
        .map(NodeInventory::decode)
    {
        let os = os_name(&inv);
        if !os.is_empty() {
            description.push_str(&format!("Environment: {os}"));
            if let Some(k) = &inv.kernel {
                description.push_str(&format!(", kernel {k}"));
            }
            if let Some(a) = &inv.arch {
                description.push_str(&format!(", {a}"));
            }
            description.push('\n');
        }
    }
    description.push_str(&format!(
        "When: started {}, still ongoing at {}\n",
        rfc3339(t.started_at),
        rfc3339(i.now)
    ));
    description.push_str(&format!(
        "Impact: {} ({impact_basis}); urgency {} from severity {}\n",
        i.impact.as_str(),
        i.urgency.as_str(),
        t.severity.as_str()
    ));
    if let Some(rb) = &t.runbook {
        description.push_str(&format!("Runbook: {rb}\n"));
    }
    TicketRow {
        id: i.id,
        number: i.number,
        kind: "incident".into(),
        state: TicketState::New,
        priority: i.incident.priority,
        impact: i.impact,
        urgency: i.urgency,
        category: t.category,
        assignment_group: i.group,
        summary: t.summary.clone(),
        description,
        reporter,
        environment,
        incident_id: Some(i.incident.id),
        site: Some(t.site.clone()),
        node: Some(t.node.clone()),
        runbook: t.runbook.clone(),
        problem_id: None,
        workaround: None,
        assignee: None,
        affected: serde_json::json!({"nodes": [t.node], "services": []}),
        similar: serde_json::json!([]),
        detected_at: t.started_at,
        resolution: None,
        cause_code: None,
        sla: Default::default(),
        escalation_level: 0,
        escalated_at: None,
        reopened: 0,
        close_held: None,
        opened_at: i.now,
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
        updated_at: i.now,
    }
}

/// The first line of the ticket's log.
pub(super) fn opened_message(ticket: &TicketRow, policy: &Policy) -> String {
    let mut msg = format!(
        "opened by monitoring: {} {} ({}), assigned to {}",
        ticket.number,
        ticket.priority.as_str(),
        ticket.priority.label(),
        ticket.assignment_group
    );
    if let Some(sla) = policy.sla.get(&ticket.priority) {
        msg.push_str(&format!(
            "; SLA: acknowledge within {}, resolve within {}",
            humantime::format_duration(sla.response),
            humantime::format_duration(sla.resolution)
        ));
    }
    msg
}

/// "Debian GNU/Linux 12" from an inventory (empty when it names no OS).
pub(super) fn os_name(inv: &tocsin_protocol::Inventory) -> String {
    [inv.os.as_deref(), inv.os_version.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Add the similar past cases to a new ticket's description.
pub(super) fn append_similar(ticket: &mut TicketRow) {
    let Some(cases) = ticket.similar.as_array().filter(|c| !c.is_empty()) else {
        return;
    };
    ticket
        .description
        .push_str("Similar past incidents (newest first):\n");
    for c in cases {
        let s = |k: &str| c.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
        let cause = match s("cause_code") {
            "" => String::new(),
            code => format!(" [cause: {code}]"),
        };
        ticket.description.push_str(&format!(
            "  - {} ({}): {}{cause}\n",
            s("number"),
            s("resolved_at"),
            match s("resolution") {
                "" => "no resolution recorded",
                r => r,
            }
        ));
    }
}

impl super::Engine {
    /// Nodes and services a ticket affects: the nodes, and their `service` labels.
    pub(super) fn affected(&self, nodes: &[(String, String)]) -> serde_json::Value {
        let mut services: Vec<String> = nodes
            .iter()
            .filter_map(|(s, n)| self.nodes.get(s, n))
            .filter_map(|n| n.labels.get("service").cloned())
            .collect();
        services.sort();
        services.dedup();
        let names: Vec<&str> = nodes.iter().map(|(_, n)| n.as_str()).collect();
        json!({"nodes": names, "services": services})
    }

    /// Closed tickets of earlier incidents with this signature, newest first.
    pub(super) fn similar_cases(&self, signature: &str) -> serde_json::Value {
        let cases: Vec<serde_json::Value> = self
            .similar
            .get(signature)
            .map(|v| {
                v.iter()
                    .map(|c| {
                        json!({
                            "number": c.number,
                            "summary": c.summary,
                            "opened_at": rfc3339(c.opened_at),
                            "resolved_at": c.resolved_at.map(rfc3339),
                            "resolution": c.resolution,
                            "cause_code": c.cause_code,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        serde_json::Value::Array(cases)
    }

    /// Keep a closed monitoring ticket as a past case for its incident's signature.
    pub(super) fn remember_case(&mut self, ticket: &TicketRow) {
        let Some(signature) = ticket
            .incident_id
            .and_then(|i| self.incidents.get(&i))
            .map(|i| i.row.signature.clone())
            .filter(|s| !s.is_empty())
        else {
            return;
        };
        let cases = self.similar.entry(signature.clone()).or_default();
        cases.insert(
            0,
            super::SimilarCase {
                signature,
                number: ticket.number.clone(),
                summary: ticket.summary.clone(),
                opened_at: ticket.opened_at,
                resolved_at: ticket.resolved_at,
                resolution: ticket.resolution.clone(),
                cause_code: ticket.cause_code.clone(),
            },
        );
        cases.truncate(super::SIMILAR_KEPT);
    }

    /// Urgent tickets (P1, or `notify_at_once` in the priority's SLA) go to the first level at once.
    pub(super) fn escalate_if_urgent(
        &mut self,
        now: Millis,
        ticket_id: i64,
        priority: super::Priority,
        effects: &mut Vec<super::Effect>,
    ) {
        if self.policy.notify_at_once(priority) {
            let reason = format!(
                "{} ({}) opened: the first level is told at once",
                priority.as_str(),
                priority.label()
            );
            self.escalate(
                now,
                ticket_id,
                super::escalation::Trigger::Urgent,
                &reason,
                super::incidents::MONITORING,
                effects,
            );
        }
    }
}
