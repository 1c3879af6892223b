//! Operators at the service desk: actions on tickets (acknowledge, assign and transfer,
//! comment, pending, escalate, resolve, close, reopen) and tickets opened by people.

use serde_json::json;

use super::desk::{ManualTicket, TicketAction, TicketKind};
use super::escalation::{Trigger, refresh_sla};
use super::lifecycle::{Action, next};
use super::model::{Effect, IncidentState, NodeInventory, TicketRow, TicketState};
use super::policy::{Level, RouteFacts};
use super::{CommandError, Engine, take};
use crate::rules::Category;
use crate::time::{Millis, human, rfc3339};

/// Longest free text an operator may put in one field.
const TEXT_MAX: usize = 10_000;

fn required(field: &str, v: &str) -> Result<String, CommandError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(CommandError::Invalid(format!("{field} is required")));
    }
    if v.len() > TEXT_MAX {
        return Err(CommandError::Invalid(format!(
            "{field} is longer than {TEXT_MAX} bytes"
        )));
    }
    Ok(v.to_string())
}

fn optional(field: &str, v: &Option<String>) -> Result<Option<String>, CommandError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => required(field, v).map(Some),
    }
}

/// The person in an actor: the API records `<name> via <credential>`; the name is who works it.
fn person(actor: &str) -> &str {
    actor.split(" via ").next().unwrap_or(actor)
}

fn refused(e: super::lifecycle::Refused, number: &str) -> CommandError {
    CommandError::Conflict(format!("{number}: {e}"))
}

impl Engine {
    /// Apply an operator's action to a ticket; the ticket as it is afterwards.
    pub(super) fn ticket_action(
        &mut self,
        now: Millis,
        id: i64,
        action: TicketAction,
        actor: &str,
        stored: Option<(Box<TicketRow>, Vec<super::model::TicketEventRow>)>,
        effects: &mut Vec<Effect>,
    ) -> Result<TicketRow, CommandError> {
        let actor = required("actor", actor)?;
        let (stored, history) = match stored {
            Some((row, history)) => (Some(row), history),
            None => (None, Vec::new()),
        };
        if let std::collections::btree_map::Entry::Vacant(slot) = self.tickets.entry(id) {
            let Some(row) = stored.filter(|r| r.id == id) else {
                return Err(CommandError::NotFound(format!("no ticket with id {id}")));
            };
            if row.state != TicketState::Closed {
                return Err(CommandError::NotFound(format!(
                    "{} is not held by the engine (state {}); retry in a moment",
                    row.number,
                    row.state.as_str()
                )));
            }
            if !matches!(action, TicketAction::Reopen { .. }) {
                return Err(CommandError::Conflict(format!(
                    "{}: cannot {} a ticket that is closed (allowed: reopen)",
                    row.number,
                    action.name()
                )));
            }
            // A closed ticket comes back to work, with its log for the handover.
            slot.insert(*row);
            for line in history.into_iter().filter(|l| l.ticket_id == id) {
                self.remember_line(line);
            }
        }
        let result = self.apply_action(now, id, action, &actor, effects);
        if result.is_err() {
            // A closed ticket taken in for a reopen that was refused is let go again.
            if self
                .tickets
                .get(&id)
                .is_some_and(|t| t.state == TicketState::Closed)
            {
                self.tickets.remove(&id);
                self.journal.remove(&id);
            }
        }
        result
    }

    fn apply_action(
        &mut self,
        now: Millis,
        id: i64,
        action: TicketAction,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) -> Result<TicketRow, CommandError> {
        let Some(t) = self.tickets.get(&id) else {
            return Err(CommandError::NotFound(format!("no ticket with id {id}")));
        };
        let number = t.number.clone();
        let state = t.state;
        match action {
            TicketAction::Acknowledge { note } => {
                let note = optional("note", &note)?;
                let to = next(state, Action::Acknowledge).map_err(|e| refused(e, &number))?;
                let t = self.ticket_mut(id)?;
                t.state = to;
                t.acknowledged_at = Some(now);
                if t.assignee.is_none() {
                    t.assignee = Some(person(actor).to_string());
                }
                let took = now - t.opened_at;
                let met = match (t.sla.response_target_ms, t.sla.response_breached_at) {
                    (_, Some(_)) => "; response target missed",
                    (Some(_), None) => "; within the response target",
                    (None, None) => "",
                };
                let msg = format!(
                    "acknowledged by {actor} after {}{met}{}",
                    human(took),
                    note.map(|n| format!(": {n}")).unwrap_or_default()
                );
                self.changed(now, id, effects);
                self.ticket_event_by(
                    now,
                    id,
                    "acknowledged",
                    actor,
                    msg,
                    json!({"after_ms": took}),
                    effects,
                );
            }
            TicketAction::Assign {
                assignee,
                group,
                reason,
            } => self.assign(now, id, assignee, group, reason, actor, effects)?,
            TicketAction::Comment { text } => {
                let text = required("text", &text)?;
                if state == TicketState::Closed {
                    return Err(CommandError::Conflict(format!(
                        "{number}: cannot comment on a ticket that is closed (allowed: reopen)"
                    )));
                }
                let t = self.ticket_mut(id)?;
                if t.state == TicketState::Acknowledged {
                    t.state = TicketState::InProgress;
                }
                // A comment during verification (the fix is in doubt) keeps it for an operator.
                if t.incident_id.is_some()
                    && t.state == TicketState::Resolved
                    && t.close_held.is_none()
                {
                    t.close_held = Some(format!("{actor} commented on it after it was resolved"));
                }
                self.changed(now, id, effects);
                self.ticket_event_by(now, id, "comment", actor, text, json!({}), effects);
            }
            TicketAction::Pend { reason } => {
                let reason = required("reason", &reason)?;
                let to = next(state, Action::Pend).map_err(|e| refused(e, &number))?;
                let t = self
                    .tickets
                    .get_mut(&id)
                    .ok_or_else(|| CommandError::NotFound(format!("no ticket with id {id}")))?;
                t.state = to;
                t.sla.clock.pause(now);
                let used = t.sla.clock.elapsed(&self.policy, t.priority, now);
                let msg = format!(
                    "pending: {reason}; resolution clock paused at {}{}",
                    human(used),
                    t.sla
                        .resolution_target_ms
                        .map(|v| format!(" of {}", human(v)))
                        .unwrap_or_default()
                );
                self.changed(now, id, effects);
                self.ticket_event_by(
                    now,
                    id,
                    "pending",
                    actor,
                    msg,
                    json!({"reason": reason}),
                    effects,
                );
            }
            TicketAction::Resume { note } => {
                let note = optional("note", &note)?;
                let to = next(state, Action::Resume).map_err(|e| refused(e, &number))?;
                let t = self.ticket_mut(id)?;
                t.state = to;
                let paused_at = t.sla.clock.paused_since().unwrap_or(now);
                t.sla.clock.resume(now);
                let msg = format!(
                    "resumed by {actor} after {} pending; resolution clock running{}",
                    human(now - paused_at),
                    note.map(|n| format!(": {n}")).unwrap_or_default()
                );
                self.changed(now, id, effects);
                self.ticket_event_by(now, id, "resumed", actor, msg, json!({}), effects);
            }
            TicketAction::Escalate { reason, complaint } => {
                let reason = required("reason", &reason)?;
                if matches!(state, TicketState::Resolved | TicketState::Closed) {
                    return Err(CommandError::Conflict(format!(
                        "{number}: cannot escalate a ticket that is {} (allowed: reopen)",
                        state.as_str()
                    )));
                }
                let trigger = if complaint {
                    Trigger::Complaint
                } else {
                    Trigger::Requested
                };
                if self.policy.escalation.is_empty() {
                    return Err(CommandError::Invalid(
                        "the policy defines no [[escalation]] levels to escalate to".into(),
                    ));
                }
                self.escalate(now, id, trigger, &reason, actor, effects);
            }
            TicketAction::Resolve { notes, cause_code } => {
                let notes = required("notes", &notes)?;
                let cause = required("cause_code", &cause_code)?;
                let to = next(state, Action::Resolve).map_err(|e| refused(e, &number))?;
                let firing = self.still_firing(id);
                let t = self.ticket_mut(id)?;
                t.state = to;
                t.resolved_at = Some(now);
                t.resolution = Some(notes.clone());
                t.cause_code = Some(cause.clone());
                t.sla.clock.pause(now);
                // Resolved: an escalation still waiting for its level's delay is moot.
                t.sla.deferred = None;
                let mut msg = format!("resolved by {actor} [cause: {cause}]: {notes}");
                if firing > 0 {
                    msg.push_str(&format!(
                        " ({firing} alert(s) still firing: monitoring will confirm the fix when they clear)"
                    ));
                }
                self.changed(now, id, effects);
                self.ticket_event_by(
                    now,
                    id,
                    "resolved",
                    actor,
                    msg,
                    json!({"cause_code": cause, "still_firing": firing}),
                    effects,
                );
            }
            TicketAction::Close { note } => {
                let note = optional("note", &note)?;
                next(state, Action::Close).map_err(|e| refused(e, &number))?;
                let firing = self.still_firing(id);
                if firing > 0 {
                    return Err(CommandError::Conflict(format!(
                        "{number}: cannot close while {firing} alert(s) of its incident still fire: the fix is not verified (wait for them to clear, or reopen)"
                    )));
                }
                let incident = self.tickets.get(&id).and_then(|t| t.incident_id);
                let msg = format!(
                    "closed by {actor}: fix confirmed{}",
                    note.map(|n| format!(": {n}")).unwrap_or_default()
                );
                let closed = self
                    .close_ticket(now, id, "closed", actor, msg, json!({}), effects)
                    .ok_or_else(|| CommandError::NotFound(format!("{number} is gone")))?;
                // Its incident, resolved and in its verification period, closes with it.
                if let Some(inc) = incident
                    && self
                        .incidents
                        .get(&inc)
                        .is_some_and(|i| i.row.state == IncidentState::Resolved)
                {
                    self.close_incident(now, inc, effects);
                }
                return Ok(closed);
            }
            TicketAction::Reopen { reason } => {
                let reason = required("reason", &reason)?;
                let to = next(state, Action::Reopen).map_err(|e| refused(e, &number))?;
                let t = self.ticket_mut(id)?;
                t.state = to;
                t.resolved_at = None;
                t.closed_at = None;
                t.reopened += 1;
                t.close_held = Some(format!("{actor} reopened it"));
                t.sla.clock.resume(now);
                let msg = format!("reopened by {actor}: {reason}");
                self.changed(now, id, effects);
                self.ticket_event_by(
                    now,
                    id,
                    "reopened",
                    actor,
                    msg,
                    json!({"reason": reason, "from": state}),
                    effects,
                );
                self.escalate(now, id, Trigger::Reopened, &reason, actor, effects);
            }
        }
        self.tickets
            .get(&id)
            .cloned()
            .ok_or_else(|| CommandError::NotFound(format!("{number} is gone")))
    }

    #[allow(clippy::too_many_arguments)]
    fn assign(
        &mut self,
        now: Millis,
        id: i64,
        assignee: Option<String>,
        group: Option<String>,
        reason: Option<String>,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) -> Result<(), CommandError> {
        let assignee = optional("assignee", &assignee)?;
        let group = optional("group", &group)?;
        let reason = optional("reason", &reason)?;
        let t = self.ticket_mut(id)?;
        if t.state == TicketState::Closed {
            return Err(CommandError::Conflict(format!(
                "{}: cannot assign a ticket that is closed (allowed: reopen)",
                t.number
            )));
        }
        if assignee.is_none() && group.is_none() {
            return Err(CommandError::Invalid(
                "assign needs an assignee, a group, or both".into(),
            ));
        }
        let transfer = group
            .as_ref()
            .filter(|g| **g != t.assignment_group)
            .cloned();
        if transfer.is_some() && reason.is_none() {
            return Err(CommandError::Invalid(
                "a transfer to another group needs a reason".into(),
            ));
        }
        let from_group = t.assignment_group.clone();
        let from_assignee = t.assignee.clone();
        if let Some(g) = &transfer {
            t.assignment_group = g.clone();
            // The new group picks its own person unless one is named.
            t.assignee = assignee.clone();
        } else if assignee.is_some() {
            t.assignee = assignee.clone();
        }
        if t.state == TicketState::Acknowledged && t.assignee.is_some() {
            t.state = TicketState::InProgress;
        }
        let to_assignee = t.assignee.clone();
        let why = reason.clone().map(|r| format!(": {r}")).unwrap_or_default();
        let (kind, msg) = match &transfer {
            Some(g) => (
                "transferred",
                format!(
                    "transferred by {actor} from {from_group} to {g}{}{why}",
                    to_assignee
                        .as_ref()
                        .map(|a| format!(" (assignee {a})"))
                        .unwrap_or_default()
                ),
            ),
            None => (
                "assigned",
                format!(
                    "assigned by {actor} to {}{why}",
                    to_assignee.as_deref().unwrap_or("the group queue")
                ),
            ),
        };
        self.changed(now, id, effects);
        let event = self.ticket_event_by(
            now,
            id,
            kind,
            actor,
            msg,
            json!({"from_group": from_group, "to_group": transfer.clone().unwrap_or(from_group.clone()),
                   "from_assignee": from_assignee, "to_assignee": to_assignee, "reason": reason}),
            effects,
        );
        // The receiving group gets the full record, as with an escalation.
        if let Some(g) = transfer
            && let Some(t) = self.tickets.get(&id)
        {
            let targets =
                self.policy
                    .notify
                    .expand(&["group".to_string()], &g, &self.policy.groups);
            if !targets.is_empty() {
                let payload = json!({
                    "event": "ticket.transferred",
                    "ticket": super::escalation::brief(t),
                    "transfer": {"from": from_group, "to": g, "by": actor, "reason": reason},
                    "handover": self.handover(t, now),
                });
                let number = t.number.clone();
                self.notify(
                    now,
                    id,
                    &number,
                    event,
                    ("ticket.transferred", "handover"),
                    &targets,
                    &payload,
                    effects,
                );
            }
        }
        Ok(())
    }

    /// Firing alerts of a monitoring ticket's incident.
    fn still_firing(&self, ticket: i64) -> usize {
        self.tickets
            .get(&ticket)
            .and_then(|t| t.incident_id)
            .and_then(|i| self.incidents.get(&i))
            .filter(|i| i.row.state == IncidentState::Open)
            .map_or(0, |i| i.active.len())
    }

    fn ticket_mut(&mut self, id: i64) -> Result<&mut TicketRow, CommandError> {
        self.tickets
            .get_mut(&id)
            .ok_or_else(|| CommandError::NotFound(format!("no ticket with id {id}")))
    }

    /// A ticket changed at `now`: SLA due times again, and the row to the store.
    fn changed(&mut self, now: Millis, id: i64, effects: &mut Vec<Effect>) {
        if let Some(t) = self.tickets.get_mut(&id) {
            t.updated_at = now;
            refresh_sla(&self.policy, t, now);
            effects.push(Effect::Ticket(Box::new(t.clone())));
        }
    }

    /// Open a ticket reported by a person: a service request (`REQ-`) or a fault (`INC-`).
    pub(super) fn open_manual(
        &mut self,
        now: Millis,
        m: ManualTicket,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) -> Result<TicketRow, CommandError> {
        let actor = required("actor", actor)?;
        let summary = required("summary", &m.summary)?;
        let reporter = required("reporter.name", &m.reporter.name)?;
        if m.description.len() > TEXT_MAX {
            return Err(CommandError::Invalid(format!(
                "description is longer than {TEXT_MAX} bytes"
            )));
        }
        let node = match &m.node {
            Some(name) => {
                let found = match &m.site {
                    Some(site) => self.nodes.get(site, name),
                    None => self.nodes.find(name),
                };
                match found {
                    Some(n) => Some(n.clone()),
                    None => {
                        return Err(CommandError::Invalid(format!(
                            "node {name:?}{} is not known to tocsin (leave node out, or name a node that reports)",
                            m.site
                                .as_ref()
                                .map(|s| format!(" at site {s:?}"))
                                .unwrap_or_default()
                        )));
                    }
                }
            }
            None => None,
        };
        let assignee = optional("assignee", &m.assignee)?;
        let started = m.started_at.unwrap_or(now).min(now);
        let category = m.category.unwrap_or(Category::Software);
        let labels = node.as_ref().map(|n| n.labels.clone()).unwrap_or_default();
        let impact = m.impact.unwrap_or_else(|| self.policy.impact(&labels));
        let urgency = m.urgency.unwrap_or(match m.kind {
            TicketKind::Incident => Level::Medium,
            TicketKind::Request => Level::Low,
        });
        let priority = self.policy.priority(impact, urgency);
        let site = m
            .site
            .clone()
            .or_else(|| node.as_ref().map(|n| n.site.to_string()));
        let group = match &m.group {
            Some(g) => required("group", g)?,
            None => self.policy.route(&RouteFacts {
                category: Some(category),
                site: site.as_deref().unwrap_or(""),
                node: m.node.as_deref().unwrap_or(""),
                rule: "",
                severity: None,
                labels: Some(&labels),
            }),
        };
        let number = match m.kind {
            TicketKind::Incident => format!("INC-{:06}", take(&mut self.ids.incident_number)),
            TicketKind::Request => format!("REQ-{:06}", take(&mut self.ids.request_number)),
        };
        let id = take(&mut self.ids.ticket);
        let environment = json!({
            "kind": node.as_ref().map(|n| n.kind.as_str()),
            "inventory": node.as_ref().and_then(|n| n.inventory.as_ref()),
            "labels": node.as_ref().map(|n| &*n.labels),
            "parents": node.as_ref().map(|n| &*n.parents),
            "node_state": node.as_ref().map(|n| n.state),
            "reported": m.environment,
        });
        let mut nodes: Vec<&str> = Vec::new();
        if let Some(n) = &m.node {
            nodes.push(n);
        }
        let mut services = m.services.clone();
        if let Some(s) = labels.get("service") {
            services.push(s.clone());
        }
        services.sort();
        services.dedup();
        let mut description = format!("{summary}\n\n");
        if !m.description.trim().is_empty() {
            description.push_str(&format!("Reported: {}\n", m.description.trim()));
        }
        description.push_str(&format!(
            "Reporter: {reporter}{}{} (entered by {actor})\n",
            m.reporter
                .department
                .as_ref()
                .map(|d| format!(", {d}"))
                .unwrap_or_default(),
            m.reporter
                .contact
                .as_ref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default()
        ));
        description.push_str(&format!(
            "When: started {}{}\n",
            rfc3339(started),
            if m.kind == TicketKind::Incident {
                ", reported as ongoing"
            } else {
                ""
            }
        ));
        if let Some(n) = &node {
            description.push_str(&format!("Where: node {} at site {}", n.node, n.site));
            if let Some(inv) = n.inventory.as_ref().map(NodeInventory::decode) {
                let os = super::tickets::os_name(&inv);
                if !os.is_empty() {
                    description.push_str(&format!(" ({os})"));
                }
            }
            description.push('\n');
        }
        if !services.is_empty() {
            description.push_str(&format!("Services affected: {}\n", services.join(", ")));
        }
        description.push_str(&format!(
            "Impact: {}; urgency {}; category {}\n",
            impact.as_str(),
            urgency.as_str(),
            category.as_str()
        ));
        let mut ticket = TicketRow {
            id,
            number: number.clone(),
            kind: m.kind.as_str().to_string(),
            state: TicketState::New,
            priority,
            impact,
            urgency,
            category,
            assignment_group: group,
            summary,
            description,
            reporter: json!({
                "type": "person",
                "name": reporter,
                "department": m.reporter.department,
                "contact": m.reporter.contact,
                "entered_by": actor,
            }),
            environment,
            incident_id: None,
            site,
            node: m.node.clone(),
            runbook: None,
            problem_id: None,
            workaround: None,
            assignee,
            affected: json!({"nodes": nodes, "services": services}),
            similar: json!([]),
            detected_at: started,
            resolution: None,
            cause_code: None,
            sla: Default::default(),
            escalation_level: 0,
            escalated_at: None,
            reopened: 0,
            close_held: None,
            opened_at: now,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            updated_at: now,
        };
        ticket.sla.clock = super::sla::SlaClock::started(now);
        refresh_sla(&self.policy, &mut ticket, now);
        self.counters.tickets_opened += 1;
        let mut msg = format!(
            "opened by {actor} for {reporter}: {number} {} ({}), {}, assigned to {}",
            priority.as_str(),
            priority.label(),
            m.kind.as_str(),
            ticket.assignment_group
        );
        if let Some(sla) = self.policy.sla.get(&priority) {
            msg.push_str(&format!(
                "; SLA: acknowledge within {}, resolve within {}",
                humantime::format_duration(sla.response),
                humantime::format_duration(sla.resolution)
            ));
        }
        effects.push(Effect::Ticket(Box::new(ticket.clone())));
        self.tickets.insert(id, ticket);
        self.ticket_event_by(
            now,
            id,
            "opened",
            &actor,
            msg,
            json!({"kind": m.kind.as_str()}),
            effects,
        );
        self.escalate_if_urgent(now, id, priority, effects);
        self.tickets
            .get(&id)
            .cloned()
            .ok_or_else(|| CommandError::NotFound(format!("{number} is gone")))
    }
}
