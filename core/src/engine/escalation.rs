//! SLA clocks on tickets and escalation: response and resolution targets (75% and 100%),
//! escalation levels with their delays, the handover each escalation carries, and the
//! notifications written to the outbox.

use serde_json::{Value as Json, json};

use super::model::{
    DeferredEscalation, Effect, NotificationRow, TicketEventRow, TicketRow, TicketState,
};
use super::policy::{Policy, Target};
use super::{Engine, take};
use crate::time::{Millis, human, millis, rfc3339};

/// Ticket events kept in memory per open ticket for the handover (the store keeps them all).
const JOURNAL_KEPT: usize = 500;

/// Why a ticket is escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A P1 (or a priority with `notify_at_once`) opened: the first level hears at once.
    Urgent,
    /// The response target passed with nobody acknowledging.
    ResponseBreached,
    /// 75% of the resolution target is used.
    ResolutionWarning,
    /// The resolution target passed.
    ResolutionBreached,
    /// The impact grew or the severity rose: a higher priority.
    PriorityRaised,
    /// It came back after being resolved.
    Reopened,
    /// An operator asked for it (beyond the team's authority or ability).
    Requested,
    /// The user complained about progress or the result.
    Complaint,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Urgent => "urgent",
            Trigger::ResponseBreached => "response_breached",
            Trigger::ResolutionWarning => "resolution_75",
            Trigger::ResolutionBreached => "resolution_breached",
            Trigger::PriorityRaised => "priority_raised",
            Trigger::Reopened => "reopened",
            Trigger::Requested => "requested",
            Trigger::Complaint => "complaint",
        }
    }

    /// Asked for by a person: goes up at once, without waiting for the level's delay.
    fn immediate(self) -> bool {
        matches!(
            self,
            Trigger::Urgent | Trigger::Requested | Trigger::Complaint
        )
    }
}

/// Targets, due times and clocks of a ticket from its priority and state, as of `now`.
pub(super) fn refresh_sla(policy: &Policy, t: &mut TicketRow, now: Millis) {
    let sla = policy.sla.get(&t.priority);
    t.sla.response_target_ms = sla.map(|s| millis(s.response));
    t.sla.resolution_target_ms = sla.map(|s| millis(s.resolution));
    t.sla.calendar = sla.and_then(|s| s.calendar.clone());
    let p = t.priority;
    t.sla.response_due_at = match (t.acknowledged_at, t.sla.response_target_ms) {
        (None, Some(target)) if t.state != TicketState::Closed => {
            policy.sla_due(p, t.opened_at, target)
        }
        _ => None,
    };
    let elapsed = t.sla.clock.elapsed(policy, p, now);
    t.sla.resolution_elapsed_ms = elapsed;
    match t.sla.resolution_target_ms {
        Some(target) if t.sla.clock.running() => {
            t.sla.resolution_due_at = policy.sla_due(p, now, (target - elapsed).max(0));
            t.sla.resolution_warn_at = if t.sla.resolution_warned_at.is_none() {
                policy.sla_due(p, now, (target * 3 / 4 - elapsed).max(0))
            } else {
                None
            };
        }
        _ => {
            t.sla.resolution_due_at = None;
            t.sla.resolution_warn_at = None;
        }
    }
}

/// A ticket's face in a notification: enough to recognise it and follow the link.
pub(super) fn brief(t: &TicketRow) -> Json {
    json!({
        "id": t.id,
        "number": t.number,
        "kind": t.kind,
        "state": t.state,
        "priority": t.priority,
        "priority_label": t.priority.label(),
        "category": t.category,
        "assignment_group": t.assignment_group,
        "assignee": t.assignee,
        "summary": t.summary,
        "site": t.site,
        "node": t.node,
        "incident_id": t.incident_id,
        "escalation_level": t.escalation_level,
    })
}

fn at(ms: Option<Millis>) -> Json {
    ms.map_or(Json::Null, |v| Json::String(rfc3339(v)))
}

/// Where a ticket stands against its SLA, in words and figures.
pub(super) fn sla_status(policy: &Policy, t: &TicketRow, now: Millis) -> Json {
    let resolution_elapsed = t.sla.clock.elapsed(policy, t.priority, now);
    json!({
        "calendar": t.sla.calendar,
        "response_target": t.sla.response_target_ms.map(human),
        "response_due_at": at(t.sla.response_due_at),
        "response_breached_at": at(t.sla.response_breached_at),
        "acknowledged_at": at(t.acknowledged_at),
        "resolution_target": t.sla.resolution_target_ms.map(human),
        "resolution_elapsed": human(resolution_elapsed),
        "resolution_used_pct": t.sla.resolution_target_ms.filter(|v| *v > 0).map(|v| resolution_elapsed * 100 / v),
        "resolution_due_at": at(t.sla.resolution_due_at),
        "resolution_breached_at": at(t.sla.resolution_breached_at),
        "clock": if t.sla.clock.running() { "running" } else { "paused" },
    })
}

impl Engine {
    /// The tickets' SLA clocks at `now`: breaches and the 75% mark escalate; deferred
    /// escalations whose delay passed go up.
    pub(super) fn sla_tick(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        let mut due: Vec<(i64, Trigger)> = Vec::new();
        let mut deferred: Vec<i64> = Vec::new();
        for t in self.tickets.values() {
            if matches!(t.state, TicketState::Resolved | TicketState::Closed) {
                continue;
            }
            if t.acknowledged_at.is_none()
                && t.sla.response_breached_at.is_none()
                && t.sla.response_due_at.is_some_and(|d| d <= now)
            {
                due.push((t.id, Trigger::ResponseBreached));
            }
            if t.sla.resolution_warned_at.is_none()
                && t.sla.resolution_warn_at.is_some_and(|d| d <= now)
            {
                due.push((t.id, Trigger::ResolutionWarning));
            }
            if t.sla.resolution_breached_at.is_none()
                && t.sla.resolution_due_at.is_some_and(|d| d <= now)
            {
                due.push((t.id, Trigger::ResolutionBreached));
            }
            if t.sla.deferred.as_ref().is_some_and(|d| d.at <= now) {
                deferred.push(t.id);
            }
        }
        for (id, trigger) in due {
            self.sla_passed(now, id, trigger, effects);
        }
        for id in deferred {
            let Some(d) = self
                .tickets
                .get_mut(&id)
                .and_then(|t| t.sla.deferred.take())
            else {
                continue;
            };
            self.raise_level(
                now,
                id,
                &d.triggers,
                &d.reason,
                super::incidents::MONITORING,
                effects,
            );
        }
    }

    /// A target was reached: record it on the ticket and escalate.
    fn sla_passed(&mut self, now: Millis, id: i64, trigger: Trigger, effects: &mut Vec<Effect>) {
        let policy = &self.policy;
        let Some(t) = self.tickets.get_mut(&id) else {
            return;
        };
        let (kind, msg) = match trigger {
            Trigger::ResponseBreached => {
                t.sla.response_breached_at = Some(now);
                t.sla.response_due_at = None;
                (
                    "sla_breached",
                    format!(
                        "response target missed: not acknowledged within {}",
                        t.sla.response_target_ms.map(human).unwrap_or_default()
                    ),
                )
            }
            Trigger::ResolutionWarning => {
                t.sla.resolution_warned_at = Some(now);
                t.sla.resolution_warn_at = None;
                (
                    "sla_warning",
                    format!(
                        "75% of the resolution target used ({} of {}); due {}",
                        human(t.sla.clock.elapsed(policy, t.priority, now)),
                        t.sla.resolution_target_ms.map(human).unwrap_or_default(),
                        t.sla.resolution_due_at.map(rfc3339).unwrap_or_default()
                    ),
                )
            }
            _ => {
                t.sla.resolution_breached_at = Some(now);
                t.sla.resolution_due_at = None;
                (
                    "sla_breached",
                    format!(
                        "resolution target missed: not resolved within {}",
                        t.sla.resolution_target_ms.map(human).unwrap_or_default()
                    ),
                )
            }
        };
        t.updated_at = now;
        effects.push(Effect::Ticket(Box::new(t.clone())));
        self.ticket_event(
            now,
            id,
            kind,
            msg.clone(),
            json!({"trigger": trigger.as_str()}),
            effects,
        );
        self.escalate(
            now,
            id,
            trigger,
            &msg,
            super::incidents::MONITORING,
            effects,
        );
    }

    /// Ask for an escalation of a ticket: it goes one level up now, or when the next level's
    /// delay has passed (requests by people and urgent tickets go at once).
    pub(super) fn escalate(
        &mut self,
        now: Millis,
        id: i64,
        trigger: Trigger,
        reason: &str,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) {
        let levels = self.policy.escalation.len();
        let Some(t) = self.tickets.get_mut(&id) else {
            return;
        };
        // A resolved ticket waits for verification or a reopen, not for another level.
        if matches!(t.state, TicketState::Resolved | TicketState::Closed) {
            return;
        }
        // No levels in the policy: nobody to escalate to (an operator's request is refused
        // before it gets here).
        if levels == 0 {
            return;
        }
        let next = (t.escalation_level as usize + 1).min(levels);
        let level = &self.policy.escalation[next - 1];
        let since = t.escalated_at.unwrap_or(t.opened_at);
        let not_before = since.saturating_add(millis(level.after));
        let at_top = t.escalation_level as usize >= levels;
        if !trigger.immediate() && !at_top && now < not_before {
            let first = t.sla.deferred.is_none();
            let d = t.sla.deferred.get_or_insert_with(|| DeferredEscalation {
                at: not_before,
                triggers: Vec::new(),
                reason: reason.to_string(),
            });
            if !d.triggers.iter().any(|x| x == trigger.as_str()) {
                d.triggers.push(trigger.as_str().to_string());
            }
            t.updated_at = now;
            effects.push(Effect::Ticket(Box::new(t.clone())));
            if first {
                let msg = format!(
                    "escalation to level {next} ({}) on {} waits until {}: the current level has it for {} first",
                    level.name,
                    trigger.as_str(),
                    rfc3339(not_before),
                    humantime::format_duration(level.after)
                );
                self.ticket_event_by(
                    now,
                    id,
                    "escalation_deferred",
                    actor,
                    msg,
                    json!({"level": next, "trigger": trigger.as_str(), "at": not_before}),
                    effects,
                );
            }
            return;
        }
        let mut triggers = t
            .sla
            .deferred
            .take()
            .map(|d| d.triggers)
            .unwrap_or_default();
        if !triggers.iter().any(|x| x == trigger.as_str()) {
            triggers.push(trigger.as_str().to_string());
        }
        self.raise_level(now, id, &triggers, reason, actor, effects);
    }

    /// Move a ticket one level up (the top level hears it again) and hand it over.
    fn raise_level(
        &mut self,
        now: Millis,
        id: i64,
        triggers: &[String],
        reason: &str,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) {
        let levels = self.policy.escalation.len();
        let Some(t) = self.tickets.get_mut(&id) else {
            return;
        };
        if levels == 0 {
            return;
        }
        let level_no = (t.escalation_level as usize + 1).min(levels);
        let level = self.policy.escalation[level_no - 1].clone();
        let previous = t.escalation_level;
        t.escalation_level = u32::try_from(level_no).unwrap_or(u32::MAX);
        t.escalated_at = Some(now);
        t.updated_at = now;
        effects.push(Effect::Ticket(Box::new(t.clone())));
        let targets =
            self.policy
                .notify
                .expand(&level.notify, &t.assignment_group, &self.policy.groups);
        let names: Vec<String> = targets
            .iter()
            .map(|x| format!("{}:{}", x.channel.as_str(), x.name))
            .collect();
        let told = if names.is_empty() {
            "nobody".to_string()
        } else {
            names.join(", ")
        };
        let escalation = json!({
            "level": level_no,
            "name": level.name,
            "previous_level": previous,
            "triggers": triggers,
            "reason": reason,
            "by": actor,
            "at": rfc3339(now),
            "targets": names,
        });
        let Some(t) = self.tickets.get(&id) else {
            return;
        };
        let handover = self.handover(t, now);
        let msg = format!(
            "escalated to level {level_no} ({}) on {}: {reason}; {} notified with the full record",
            level.name,
            triggers.join(", "),
            told
        );
        let event_id = self.ticket_event_by(
            now,
            id,
            "escalated",
            actor,
            msg,
            json!({"escalation": escalation, "handover": handover}),
            effects,
        );
        let Some(t) = self.tickets.get(&id) else {
            return;
        };
        let payload = json!({
            "event": "ticket.escalated",
            "ticket": brief(t),
            "escalation": escalation,
            "handover": handover,
        });
        let number = t.number.clone();
        self.notify(
            now,
            id,
            &number,
            event_id,
            ("ticket.escalated", "handover"),
            &targets,
            &payload,
            effects,
        );
    }

    /// Write one notification per target to the outbox.
    /// Write one notification per target to the outbox. `purpose` (`event`, `handover`) keeps
    /// the idempotency keys of two notifications about one event apart; the key also goes in
    /// the payload, so any receiver (MQTT too) can drop a repeat.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn notify(
        &mut self,
        now: Millis,
        ticket_id: i64,
        number: &str,
        event_id: i64,
        (event, purpose): (&str, &str),
        targets: &[Target],
        payload: &Json,
        effects: &mut Vec<Effect>,
    ) {
        for target in targets {
            let key = format!(
                "{number}:{event_id}:{purpose}:{}:{}",
                target.channel.as_str(),
                target.name
            );
            let mut payload = payload.clone();
            if let Json::Object(m) = &mut payload {
                m.insert("idempotency_key".into(), Json::String(key.clone()));
            }
            effects.push(Effect::Notification(Box::new(NotificationRow {
                id: take(&mut self.ids.notification),
                key,
                channel: target.channel.as_str().to_string(),
                target: target.name.clone(),
                event: event.to_string(),
                ticket_id: Some(ticket_id),
                payload,
                created_at: now,
            })));
        }
    }

    /// The ticket's full record for the next level: what, where, how bad, the SLA, the
    /// diagnosis so far, the actions tried, the whole log, and where it stands now.
    pub(super) fn handover(&self, t: &TicketRow, now: Millis) -> Json {
        let journal = self.journal.get(&t.id).map(Vec::as_slice).unwrap_or(&[]);
        let line = |e: &TicketEventRow| json!({"at": rfc3339(e.at), "actor": e.actor, "kind": e.kind, "message": e.message});
        let diagnosis: Vec<Json> = journal
            .iter()
            .filter(|e| e.kind == "comment")
            .map(line)
            .collect();
        let actions: Vec<Json> = journal
            .iter()
            .filter(|e| {
                matches!(
                    e.kind.as_str(),
                    "acknowledged"
                        | "assigned"
                        | "transferred"
                        | "pending"
                        | "resumed"
                        | "resolved"
                        | "reopened"
                        | "escalated"
                        | "priority_changed"
                )
            })
            .map(line)
            .collect();
        let history: Vec<Json> = journal.iter().map(line).collect();
        json!({
            "record": {
                "number": t.number,
                "kind": t.kind,
                "summary": t.summary,
                "description": t.description,
                "priority": t.priority,
                "priority_label": t.priority.label(),
                "impact": t.impact,
                "urgency": t.urgency,
                "category": t.category,
                "assignment_group": t.assignment_group,
                "assignee": t.assignee,
                "reporter": t.reporter,
                "environment": t.environment,
                "affected": t.affected,
                "detected_at": rfc3339(t.detected_at),
                "opened_at": rfc3339(t.opened_at),
                "site": t.site,
                "node": t.node,
                "incident_id": t.incident_id,
                "runbook": t.runbook,
                "problem_id": t.problem_id,
                "workaround": t.workaround,
                "similar": t.similar,
                "resolution": t.resolution,
                "cause_code": t.cause_code,
                "reopened": t.reopened,
            },
            "state": t.state,
            "escalation_level": t.escalation_level,
            "sla": sla_status(&self.policy, t, now),
            "diagnosis": diagnosis,
            "actions": actions,
            "history": history,
        })
    }

    /// Keep a line of a ticket's log for its handover (bounded; an escalation's own handover
    /// is not kept nested in each line).
    pub(super) fn remember_line(&mut self, mut line: TicketEventRow) {
        if line.kind == "escalated" {
            line.data = Json::Null;
        }
        let journal = self.journal.entry(line.ticket_id).or_default();
        journal.push(line);
        if journal.len() > JOURNAL_KEPT {
            let excess = journal.len() - JOURNAL_KEPT;
            journal.drain(..excess);
        }
    }

    /// Append a line to a ticket's log as monitoring.
    pub(super) fn ticket_event(
        &mut self,
        now: Millis,
        ticket_id: i64,
        kind: &str,
        message: String,
        data: Json,
        effects: &mut Vec<Effect>,
    ) -> i64 {
        self.ticket_event_by(
            now,
            ticket_id,
            kind,
            super::incidents::MONITORING,
            message,
            data,
            effects,
        )
    }

    /// Append a line to a ticket's log; systems listening to every ticket event hear it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ticket_event_by(
        &mut self,
        now: Millis,
        ticket_id: i64,
        kind: &str,
        actor: &str,
        message: String,
        data: Json,
        effects: &mut Vec<Effect>,
    ) -> i64 {
        let row = TicketEventRow {
            id: take(&mut self.ids.ticket_event),
            ticket_id,
            at: now,
            kind: kind.to_string(),
            actor: actor.to_string(),
            message,
            data,
        };
        let id = row.id;
        if self.tickets.contains_key(&ticket_id) {
            self.remember_line(row.clone());
        }
        if !self.policy.notify.events.is_empty()
            && let Some(t) = self.tickets.get(&ticket_id)
        {
            let targets = self.policy.notify.expand(
                &self.policy.notify.events,
                &t.assignment_group,
                &self.policy.groups,
            );
            let event = format!("ticket.{kind}");
            let payload = json!({
                "event": event,
                "ticket": brief(t),
                "entry": {"id": row.id, "at": rfc3339(now), "actor": actor, "kind": kind, "message": row.message},
            });
            let number = t.number.clone();
            self.notify(
                now,
                ticket_id,
                &number,
                id,
                (&event, "event"),
                &targets,
                &payload,
                effects,
            );
        }
        effects.push(Effect::TicketEvent(row));
        id
    }
}
