//! Alerts into incidents and their tickets: open, join, raise priority, resolve, reopen, close.

use std::collections::BTreeSet;

use serde_json::json;

use super::correlate::Role;
use super::model::{Effect, IncidentAlertRow, IncidentRow, IncidentState, TicketRow, TicketState};
use super::policy::{Level, Priority};
use super::{Engine, Incident, take, tickets};
use crate::rules::AlertTransition;
use crate::time::{Millis, human};

/// Who the engine writes into ticket logs as the actor.
pub const MONITORING: &str = "tocsin";

/// The resolution of a monitoring ticket whose alerts all cleared.
pub const RECOVERED: &str = "recovered automatically";

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
        let mut ticket = tickets::monitoring_ticket(tickets::Intake {
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
        ticket.affected = self.affected(&[(t.site.clone(), t.node.clone())]);
        ticket.similar = self.similar_cases(&row.signature);
        tickets::append_similar(&mut ticket);
        ticket.sla.clock = super::sla::SlaClock::started(now);
        super::escalation::refresh_sla(&self.policy, &mut ticket, now);
        let opened = tickets::opened_message(&ticket, &self.policy);
        effects.push(Effect::Ticket(Box::new(ticket.clone())));
        let priority = ticket.priority;
        self.tickets.insert(ticket_id, ticket);
        self.ticket_event(
            now,
            ticket_id,
            "opened",
            opened,
            json!({"alert": t.key, "incident": id}),
            effects,
        );
        self.escalate_if_urgent(now, ticket_id, priority, effects);

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
        if let Some(inc) = self.incidents.get(&id) {
            self.index.add(inc);
        }
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
        if new_member {
            self.index.add_member(&t.key, id);
        }
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
        let nodes_list: Vec<(String, String)> = inc.nodes.iter().cloned().collect();
        let is_root = t.key == inc.row.root_alert;
        if !is_root && !flapping {
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
        let affected = self.affected(&nodes_list);
        if let Some(ticket) = self.tickets.get_mut(&ticket_id)
            && ticket.affected != affected
        {
            ticket.affected = affected;
            ticket.updated_at = now;
            if !raised {
                effects.push(Effect::Ticket(Box::new(ticket.clone())));
            }
        }
        if raised {
            self.counters.priority_raised += 1;
            if let Some(ticket) = self.tickets.get_mut(&ticket_id) {
                // Time already used keeps the old priority's calendar.
                ticket.sla.clock.rebase(&self.policy, ticket.priority, now);
                ticket.priority = priority;
                ticket.impact = impact;
                ticket.urgency = urgency;
                ticket.updated_at = now;
                super::escalation::refresh_sla(&self.policy, ticket, now);
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
            let reason = format!(
                "priority raised from {} to {}: impact {}, {nodes} node(s) affected",
                before.as_str(),
                priority.as_str(),
                impact.as_str()
            );
            // Raised to a priority that pages at once (P1): no waiting for a level's delay.
            let trigger =
                if self.policy.notify_at_once(priority) && !self.policy.notify_at_once(before) {
                    super::escalation::Trigger::Urgent
                } else {
                    super::escalation::Trigger::PriorityRaised
                };
            self.escalate(now, ticket_id, trigger, &reason, MONITORING, effects);
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
        let Some(ticket) = self.tickets.get_mut(&ticket_id) else {
            return;
        };
        if ticket.state != TicketState::Resolved {
            // An operator already reopened it (or never resolved it): the recurrence is a log line.
            let msg = format!("the fault recurred: {}", t.summary);
            self.ticket_event(
                now,
                ticket_id,
                "alert_fired_again",
                msg,
                json!({"alert": t.key}),
                effects,
            );
            return;
        }
        ticket.state = if ticket.acknowledged_at.is_some() {
            TicketState::InProgress
        } else {
            TicketState::New
        };
        ticket.resolved_at = None;
        ticket.resolution = None;
        ticket.cause_code = None;
        ticket.reopened += 1;
        ticket.sla.clock.resume(now);
        ticket.updated_at = now;
        super::escalation::refresh_sla(&self.policy, ticket, now);
        effects.push(Effect::Ticket(Box::new(ticket.clone())));
        let msg = format!(
            "reopened: the fault recurred {} after it was resolved, inside the verification period: {}",
            human(was_resolved_for),
            t.summary
        );
        self.ticket_event(
            now,
            ticket_id,
            "reopened",
            msg.clone(),
            json!({"alert": t.key}),
            effects,
        );
        self.escalate(
            now,
            ticket_id,
            super::escalation::Trigger::Reopened,
            &msg,
            MONITORING,
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
        let Some(ticket) = self.tickets.get_mut(&ticket_id) else {
            return;
        };
        if ticket.state == TicketState::Resolved {
            let msg = format!(
                "every alert cleared ({}; {}) after {}: the fix {} resolved it with is confirmed by monitoring; closes after {} without recurrence",
                t.summary,
                t.detail,
                human(lasted),
                ticket.assignee.as_deref().unwrap_or("an operator"),
                humantime::format_duration(verify)
            );
            self.ticket_event(
                now,
                ticket_id,
                "recovered",
                msg,
                json!({"alert": t.key}),
                effects,
            );
            return;
        }
        ticket.state = TicketState::Resolved;
        ticket.resolved_at = Some(now);
        ticket.resolution = Some(RECOVERED.to_string());
        ticket.cause_code = Some("auto_recovered".to_string());
        ticket.sla.clock.pause(now);
        ticket.sla.deferred = None;
        ticket.updated_at = now;
        super::escalation::refresh_sla(&self.policy, ticket, now);
        effects.push(Effect::Ticket(Box::new(ticket.clone())));
        let msg = format!(
            "resolved by monitoring ({RECOVERED}): every alert cleared ({}; {}) after {}; closes after {} without recurrence",
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

    /// Resolved incidents whose verification period passed without recurrence close; their
    /// tickets close with them unless an operator holds them (commented, reopened).
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
            let ticket_id = self.incidents.get(&id).and_then(|i| i.row.ticket_id);
            if let Some(ticket_id) = ticket_id {
                self.ticket_verified(now, ticket_id, effects);
            }
            self.close_incident(now, id, effects);
        }
    }

    /// The verification period of a monitoring ticket's incident passed.
    fn ticket_verified(&mut self, now: Millis, ticket_id: i64, effects: &mut Vec<Effect>) {
        let verified = humantime::format_duration(self.policy.incident.verify_for);
        let held = self
            .tickets
            .get(&ticket_id)
            .map(|tk| (tk.state, tk.close_held.clone()));
        match held {
            Some((TicketState::Resolved, None)) => {
                let msg = format!("closed: verified, no recurrence for {verified}");
                self.close_ticket(
                    now,
                    ticket_id,
                    "closed",
                    MONITORING,
                    msg,
                    json!({}),
                    effects,
                );
            }
            Some((state, why)) => {
                let msg = match (state, why) {
                    (TicketState::Resolved, Some(why)) => format!(
                        "verified: no recurrence for {verified}; left for an operator to close ({why})"
                    ),
                    (state, _) => format!(
                        "verified: no recurrence for {verified}; the ticket stays {} (an operator reopened it)",
                        state.as_str()
                    ),
                };
                self.ticket_event(now, ticket_id, "verified", msg, json!({}), effects);
            }
            None => {}
        }
    }

    /// Close an incident and let go of it (the store keeps it).
    pub(super) fn close_incident(&mut self, now: Millis, id: i64, effects: &mut Vec<Effect>) {
        let Some(mut inc) = self.incidents.remove(&id) else {
            return;
        };
        self.index.remove(&inc);
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
    }

    /// Close a ticket with its last log line, keep it as a past case, and let go of it (the
    /// store keeps it). Returns the closed row.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn close_ticket(
        &mut self,
        now: Millis,
        ticket_id: i64,
        kind: &str,
        actor: &str,
        message: String,
        data: serde_json::Value,
        effects: &mut Vec<Effect>,
    ) -> Option<TicketRow> {
        let ticket = self.tickets.get_mut(&ticket_id)?;
        ticket.state = TicketState::Closed;
        ticket.closed_at = Some(now);
        ticket.sla.clock.pause(now);
        ticket.updated_at = now;
        super::escalation::refresh_sla(&self.policy, ticket, now);
        ticket.sla.deferred = None;
        self.ticket_event_by(now, ticket_id, kind, actor, message, data, effects);
        let ticket = self.tickets.remove(&ticket_id)?;
        self.journal.remove(&ticket_id);
        if kind != "merged" {
            self.remember_case(&ticket);
        }
        effects.push(Effect::Ticket(Box::new(ticket.clone())));
        Some(ticket)
    }
}
