//! Alerts into incidents and their tickets: open, join, raise priority, resolve, reopen, close.

use std::collections::BTreeSet;

use serde_json::json;

use super::correlate::Role;
use super::model::{
    Effect, IncidentAlertRow, IncidentRow, IncidentState, TicketEventRow, TicketState,
};
use super::policy::{Level, Priority};
use super::{Engine, Incident, take, tickets};
use crate::rules::AlertTransition;
use crate::time::{Millis, human};

/// Who the engine writes into ticket logs as the actor.
pub const MONITORING: &str = "tocsin";

impl Engine {
    pub(super) fn open(
        &mut self,
        now: Millis,
        t: &AlertTransition,
        group_key: Option<String>,
        effects: &mut Vec<Effect>,
    ) -> i64 {
        let labels = self.node_labels(&t.site, &t.node);
        let impact = self.policy.impact(&labels);
        let urgency = Level::from_severity(t.severity);
        let priority = self.policy.priority(impact, urgency);
        let id = take(&mut self.ids.incident);
        let ticket_id = take(&mut self.ids.ticket);
        let signature = super::problems::signature(t, group_key.as_deref());
        let row = IncidentRow {
            id,
            state: IncidentState::Open,
            title: t.summary.clone(),
            severity: t.severity,
            category: t.category,
            priority,
            impact,
            urgency,
            site: t.site.clone(),
            node: t.node.clone(),
            root_alert: t.key.clone(),
            root_cause: format!("{} on {} ({})", t.rule, t.node, t.detail),
            signature,
            group_key,
            nodes_affected: 1,
            symptoms: 0,
            flapping: false,
            merged_into: None,
            problem_id: None,
            ticket_id: Some(ticket_id),
            opened_at: now,
            resolved_at: None,
            closed_at: None,
            updated_at: now,
        };
        self.counters.incidents_opened += 1;
        self.counters.tickets_opened += 1;
        effects.push(Effect::Incident(Box::new(row.clone())));
        effects.push(Effect::IncidentAlert(self.link_row(now, id, t, Role::Root)));

        let node = self.nodes.get(&t.site, &t.node);
        let number = format!("INC-{:06}", take(&mut self.ids.incident_number));
        let group = self.policy.route(&super::policy::RouteFacts {
            category: Some(t.category),
            site: &t.site,
            node: &t.node,
            rule: &t.rule,
            severity: Some(t.severity),
            labels: Some(&labels),
        });
        let ticket = tickets::monitoring_ticket(tickets::Intake {
            id: ticket_id,
            number,
            incident: &row,
            alert: t,
            node,
            impact,
            urgency,
            group,
            now,
        });
        let opened = tickets::opened_message(&ticket, &self.policy);
        effects.push(Effect::Ticket(Box::new(ticket.clone())));
        self.tickets.insert(ticket_id, ticket);
        self.ticket_event(
            now,
            ticket_id,
            "opened",
            opened,
            json!({"alert": t.key, "incident": id}),
            effects,
        );

        let mut members = BTreeSet::new();
        members.insert(t.key.clone());
        self.incidents.insert(
            id,
            Incident {
                row,
                active: members.clone(),
                members,
                nodes: [(t.site.clone(), t.node.clone())].into(),
                root: Some(t.clone()),
            },
        );
        id
    }

    /// Impact (the most critical node, or how many nodes are affected), urgency (the worst
    /// severity) and the priority they give.
    fn assess(&self, inc: &Incident) -> (Level, Level, Priority) {
        let by_label = inc
            .nodes
            .iter()
            .map(|(s, n)| self.policy.impact(&self.node_labels(s, n)))
            .min()
            .unwrap_or(self.policy.priority.default_impact);
        let impact = match self.policy.impact_of_count(inc.nodes.len()) {
            Some(by_count) => by_label.min(by_count),
            None => by_label,
        };
        let urgency = Level::from_severity(inc.row.severity);
        (impact, urgency, self.policy.priority(impact, urgency))
    }

    /// A firing alert joins an open incident: linked (once), counted, and the priority
    /// recomputed; a raise is written to the ticket.
    pub(super) fn join(
        &mut self,
        now: Millis,
        id: i64,
        t: &AlertTransition,
        role: Role,
        effects: &mut Vec<Effect>,
    ) {
        let flapping = self.is_flapping(&t.key);
        let link = self.link_row(now, id, t, role);
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        let new_member = inc.members.insert(t.key.clone());
        inc.active.insert(t.key.clone());
        if flapping {
            inc.row.flapping = true;
        }
        inc.nodes.insert((t.site.clone(), t.node.clone()));
        let role = if inc.row.root_alert == t.key {
            Role::Root
        } else {
            role
        };
        if new_member {
            if role == Role::Symptom {
                inc.row.symptoms += 1;
            }
            effects.push(Effect::IncidentAlert(IncidentAlertRow {
                role: role.as_str().into(),
                ..link
            }));
        }
        inc.row.nodes_affected = u32::try_from(inc.nodes.len()).unwrap_or(u32::MAX);
        if t.severity > inc.row.severity {
            inc.row.severity = t.severity;
        }
        let before = inc.row.priority;
        let Some(inc) = self.incidents.get(&id) else {
            return;
        };
        let (impact, urgency, priority) = self.assess(inc);
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        let raised = priority < before;
        if raised {
            inc.row.priority = priority;
            inc.row.impact = impact;
            inc.row.urgency = urgency;
        }
        inc.row.updated_at = now;
        effects.push(Effect::Incident(Box::new(inc.row.clone())));
        let nodes = inc.row.nodes_affected;
        let Some(ticket_id) = inc.row.ticket_id else {
            return;
        };
        if t.key != inc.row.root_alert && !flapping {
            let (kind, what) = match (new_member, role) {
                (true, Role::Symptom) => ("symptom_added", "symptom added"),
                (true, _) => ("alert_added", "alert added"),
                (false, _) => ("alert_fired_again", "alert fired again"),
            };
            let msg = format!("{what}: {} ({})", t.summary, t.detail);
            self.ticket_event(
                now,
                ticket_id,
                kind,
                msg,
                json!({"alert": t.key, "node": t.node, "role": role.as_str()}),
                effects,
            );
        }
        if raised {
            self.counters.priority_raised += 1;
            if let Some(ticket) = self.tickets.get_mut(&ticket_id) {
                ticket.priority = priority;
                ticket.impact = impact;
                ticket.urgency = urgency;
                ticket.updated_at = now;
                effects.push(Effect::Ticket(Box::new(ticket.clone())));
            }
            let msg = format!(
                "priority raised from {} to {} ({}): impact {} ({nodes} node(s) affected), urgency {} ({} is {})",
                before.as_str(),
                priority.as_str(),
                priority.label(),
                impact.as_str(),
                urgency.as_str(),
                t.rule,
                t.severity.as_str()
            );
            self.ticket_event(
                now,
                ticket_id,
                "priority_changed",
                msg,
                json!({"from": before, "to": priority, "impact": impact, "urgency": urgency, "nodes_affected": nodes}),
                effects,
            );
        }
    }

    pub(super) fn reopen(
        &mut self,
        now: Millis,
        id: i64,
        t: &AlertTransition,
        effects: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        let was_resolved_for = inc.row.resolved_at.map(|r| now - r).unwrap_or(0);
        inc.row.state = IncidentState::Open;
        inc.row.resolved_at = None;
        inc.row.updated_at = now;
        self.counters.incidents_reopened += 1;
        effects.push(Effect::Incident(Box::new(inc.row.clone())));
        let Some(ticket_id) = inc.row.ticket_id else {
            return;
        };
        if let Some(ticket) = self.tickets.get_mut(&ticket_id) {
            ticket.state = if ticket.acknowledged_at.is_some() {
                TicketState::InProgress
            } else {
                TicketState::New
            };
            ticket.resolved_at = None;
            ticket.updated_at = now;
            effects.push(Effect::Ticket(Box::new(ticket.clone())));
        }
        let msg = format!(
            "reopened: the fault recurred {} after it was resolved, inside the verification period: {}",
            human(was_resolved_for),
            t.summary
        );
        self.ticket_event(
            now,
            ticket_id,
            "reopened",
            msg,
            json!({"alert": t.key}),
            effects,
        );
    }

    pub(super) fn alert_cleared(
        &mut self,
        now: Millis,
        id: i64,
        t: &AlertTransition,
        effects: &mut Vec<Effect>,
    ) {
        let verify = self.policy.incident.verify_for;
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.active.remove(&t.key);
        let ticket_id = inc.row.ticket_id;
        if !inc.active.is_empty() || inc.row.state != IncidentState::Open {
            let Some(ticket_id) = ticket_id else {
                return;
            };
            let msg = format!(
                "alert cleared: {} ({}); {} still firing",
                t.summary,
                t.detail,
                inc.active.len()
            );
            self.ticket_event(
                now,
                ticket_id,
                "alert_cleared",
                msg,
                json!({"alert": t.key}),
                effects,
            );
            return;
        }
        inc.row.state = IncidentState::Resolved;
        inc.row.resolved_at = Some(now);
        inc.row.updated_at = now;
        self.counters.incidents_resolved += 1;
        effects.push(Effect::Incident(Box::new(inc.row.clone())));
        let lasted = now - inc.row.opened_at;
        let Some(ticket_id) = ticket_id else {
            return;
        };
        if let Some(ticket) = self.tickets.get_mut(&ticket_id) {
            ticket.state = TicketState::Resolved;
            ticket.resolved_at = Some(now);
            ticket.updated_at = now;
            effects.push(Effect::Ticket(Box::new(ticket.clone())));
        }
        let msg = format!(
            "resolved by monitoring: every alert cleared ({}; {}) after {}; closes after {} without recurrence",
            t.summary,
            t.detail,
            human(lasted),
            humantime::format_duration(verify)
        );
        self.ticket_event(
            now,
            ticket_id,
            "resolved",
            msg,
            json!({"alert": t.key}),
            effects,
        );
    }

    /// Resolved incidents whose verification period passed without recurrence close, with their tickets.
    pub(super) fn close_verified(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        let verify = self.policy.verify_ms();
        let due: Vec<i64> = self
            .incidents
            .values()
            .filter(|i| {
                i.row.state == IncidentState::Resolved
                    && i.row.resolved_at.is_some_and(|r| now - r >= verify)
            })
            .map(|i| i.row.id)
            .collect();
        for id in due {
            let Some(mut inc) = self.incidents.remove(&id) else {
                continue;
            };
            inc.row.state = IncidentState::Closed;
            inc.row.closed_at = Some(now);
            inc.row.updated_at = now;
            self.counters.incidents_closed += 1;
            effects.push(Effect::Incident(Box::new(inc.row.clone())));
            // Alerts of a closed incident that are still pending belong to nothing now.
            for key in &inc.members {
                if let Some(live) = self.alerts.get_mut(key)
                    && live.incident == Some(id)
                {
                    live.incident = None;
                }
            }
            let Some(ticket_id) = inc.row.ticket_id else {
                continue;
            };
            self.close_ticket(now, ticket_id, effects);
            let msg = format!(
                "closed: verified, no recurrence for {}",
                humantime::format_duration(self.policy.incident.verify_for)
            );
            self.ticket_event(now, ticket_id, "closed", msg, json!({}), effects);
        }
    }

    /// Close a ticket and let go of it (the store keeps it).
    pub(super) fn close_ticket(&mut self, now: Millis, ticket_id: i64, effects: &mut Vec<Effect>) {
        if let Some(mut ticket) = self.tickets.remove(&ticket_id) {
            ticket.state = TicketState::Closed;
            ticket.closed_at = Some(now);
            ticket.updated_at = now;
            effects.push(Effect::Ticket(Box::new(ticket)));
        }
    }

    pub(super) fn ticket_event(
        &mut self,
        now: Millis,
        ticket_id: i64,
        kind: &str,
        message: String,
        data: serde_json::Value,
        effects: &mut Vec<Effect>,
    ) {
        effects.push(Effect::TicketEvent(TicketEventRow {
            id: take(&mut self.ids.ticket_event),
            ticket_id,
            at: now,
            kind: kind.to_string(),
            actor: MONITORING.to_string(),
            message,
            data,
        }));
    }
}
