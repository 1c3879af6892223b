//! Alerts into incidents and their tickets: open, join, raise priority, resolve, reopen, close.

use std::collections::BTreeSet;

use serde_json::json;

use super::model::{
    Effect, IncidentAlertRow, IncidentRow, IncidentState, TicketEventRow, TicketState,
};
use super::policy::Level;
use super::{Engine, Incident, LiveAlert, take, tickets};
use crate::rules::{AlertState, AlertTransition};
use crate::time::{Millis, human};

/// Who the engine writes into ticket logs as the actor.
pub const MONITORING: &str = "tocsin";

impl Engine {
    /// Apply one alert transition: store it and move incidents and tickets along.
    pub(super) fn apply_alert(
        &mut self,
        now: Millis,
        t: AlertTransition,
        effects: &mut Vec<Effect>,
    ) {
        match t.state {
            AlertState::Pending => {
                self.alerts
                    .insert(t.key.clone(), LiveAlert { incident: None });
                self.push_alert_row(&t, None, effects);
            }
            AlertState::Firing => {
                let incident = self.incident_for(now, &t, effects);
                self.alerts.insert(
                    t.key.clone(),
                    LiveAlert {
                        incident: Some(incident),
                    },
                );
                self.push_alert_row(&t, Some(incident), effects);
            }
            AlertState::Resolved => {
                let live = self.alerts.remove(&t.key);
                let incident = live.and_then(|l| l.incident);
                self.push_alert_row(&t, incident, effects);
                if let Some(id) = incident {
                    self.alert_cleared(now, id, &t, effects);
                }
            }
        }
    }

    /// The incident a firing alert belongs to: the node's open one if it saw activity within
    /// the grouping window, the node's resolved one still in verification (a recurrence
    /// reopens it), or a new one.
    fn incident_for(&mut self, now: Millis, t: &AlertTransition, effects: &mut Vec<Effect>) -> i64 {
        let verify = self.policy.verify_ms();
        let grouping = self.policy.grouping_ms();
        let same_node = |i: &Incident| i.row.site == t.site && i.row.node == t.node;
        let open = self
            .incidents
            .values()
            .filter(|i| {
                same_node(i)
                    && i.row.state == IncidentState::Open
                    && now - i.row.updated_at <= grouping
            })
            .map(|i| i.row.id)
            .next_back();
        if let Some(id) = open {
            self.join(now, id, t, effects);
            return id;
        }
        let recurring = self
            .incidents
            .values()
            .filter(|i| {
                same_node(i)
                    && i.row.state == IncidentState::Resolved
                    && i.row.resolved_at.is_some_and(|r| now - r <= verify)
            })
            .map(|i| i.row.id)
            .next_back();
        if let Some(id) = recurring {
            self.reopen(now, id, t, effects);
            self.join(now, id, t, effects);
            return id;
        }
        self.open(now, t, effects)
    }

    fn open(&mut self, now: Millis, t: &AlertTransition, effects: &mut Vec<Effect>) -> i64 {
        let labels = self.node_labels(&t.site, &t.node);
        let impact = self.policy.impact(&labels);
        let urgency = Level::from_severity(t.severity);
        let priority = self.policy.priority(impact, urgency);
        let id = take(&mut self.ids.incident);
        let ticket_id = take(&mut self.ids.ticket);
        let row = IncidentRow {
            id,
            state: IncidentState::Open,
            title: t.summary.clone(),
            severity: t.severity,
            category: t.category,
            priority,
            site: t.site.clone(),
            node: t.node.clone(),
            root_alert: t.key.clone(),
            root_cause: format!("{} on {} ({})", t.rule, t.node, t.detail),
            ticket_id: Some(ticket_id),
            opened_at: now,
            resolved_at: None,
            closed_at: None,
            updated_at: now,
        };
        self.counters.incidents_opened += 1;
        self.counters.tickets_opened += 1;
        effects.push(Effect::Incident(Box::new(row.clone())));
        effects.push(Effect::IncidentAlert(IncidentAlertRow {
            incident_id: id,
            alert_key: t.key.clone(),
            role: "root".into(),
            linked_at: now,
        }));

        let node = self.nodes.get(&(t.site.clone(), t.node.clone()));
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
            },
        );
        id
    }

    /// A firing alert joins an open incident; a worse severity raises the priority.
    fn join(&mut self, now: Millis, id: i64, t: &AlertTransition, effects: &mut Vec<Effect>) {
        let labels = self.node_labels(&t.site, &t.node);
        let impact = self.policy.impact(&labels);
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        let new_member = inc.members.insert(t.key.clone());
        inc.active.insert(t.key.clone());
        if new_member {
            effects.push(Effect::IncidentAlert(IncidentAlertRow {
                incident_id: id,
                alert_key: t.key.clone(),
                role: if inc.row.root_alert == t.key {
                    "root"
                } else {
                    "symptom"
                }
                .into(),
                linked_at: now,
            }));
        }
        let mut raised = None;
        if t.severity > inc.row.severity {
            inc.row.severity = t.severity;
            let priority = self
                .policy
                .priority(impact, Level::from_severity(t.severity));
            if priority < inc.row.priority {
                raised = Some((inc.row.priority, priority));
                inc.row.priority = priority;
            }
        }
        inc.row.updated_at = now;
        effects.push(Effect::Incident(Box::new(inc.row.clone())));
        let Some(ticket_id) = inc.row.ticket_id else {
            return;
        };
        if t.key != inc.row.root_alert {
            let msg = format!("alert added: {} ({})", t.summary, t.detail);
            self.ticket_event(
                now,
                ticket_id,
                "alert_added",
                msg,
                json!({"alert": t.key}),
                effects,
            );
        }
        if let Some((from, to)) = raised {
            if let Some(ticket) = self.tickets.get_mut(&ticket_id) {
                ticket.priority = to;
                ticket.urgency = Level::from_severity(t.severity);
                ticket.updated_at = now;
                effects.push(Effect::Ticket(Box::new(ticket.clone())));
            }
            let msg = format!(
                "priority raised from {} to {} ({}): {} is {}",
                from.as_str(),
                to.as_str(),
                to.label(),
                t.rule,
                t.severity.as_str()
            );
            self.ticket_event(
                now,
                ticket_id,
                "priority_changed",
                msg,
                json!({"from": from, "to": to}),
                effects,
            );
        }
    }

    fn reopen(&mut self, now: Millis, id: i64, t: &AlertTransition, effects: &mut Vec<Effect>) {
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

    fn alert_cleared(
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
            if let Some(mut ticket) = self.tickets.remove(&ticket_id) {
                ticket.state = TicketState::Closed;
                ticket.closed_at = Some(now);
                ticket.updated_at = now;
                effects.push(Effect::Ticket(Box::new(ticket)));
            }
            let msg = format!(
                "closed: verified, no recurrence for {}",
                humantime::format_duration(self.policy.incident.verify_for)
            );
            self.ticket_event(now, ticket_id, "closed", msg, json!({}), effects);
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
