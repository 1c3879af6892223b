//! Problem records: the same signature causing incidents again and again is one problem.
//!
//! An incident's signature is its root alert's rule and node, plus the rule's group labels.
//! When `problem.threshold` incidents of one signature open within `problem.window`, a
//! problem record opens linking them; every later incident of that signature is linked as it
//! opens. A known error's workaround is shown on the tickets of its incidents.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;

use super::model::{Effect, ProblemIncidentRow, ProblemRow, ProblemState};
use super::{CommandError, Engine, RecentIncident, Reply, take};
use crate::rules::AlertTransition;
use crate::time::{Millis, millis};

/// `rule@site/node` plus `{group labels}` when the incident was grouped.
pub fn signature(t: &AlertTransition, group_key: Option<&str>) -> String {
    match group_key {
        Some(g) => format!("{}@{{{g}}}", t.rule),
        None => format!("{}@{}/{}", t.rule, t.site, t.node),
    }
}

/// Incidents per signature inside the problem window.
#[derive(Debug, Clone, Default)]
pub(super) struct Recent {
    by_signature: BTreeMap<String, VecDeque<(i64, Millis)>>,
}

impl Recent {
    pub fn restore(recent: &[RecentIncident]) -> Recent {
        let mut r = Recent::default();
        let mut sorted = recent.to_vec();
        sorted.sort_by_key(|x| (x.opened_at, x.incident_id));
        for x in sorted {
            r.by_signature
                .entry(x.signature)
                .or_default()
                .push_back((x.incident_id, x.opened_at));
        }
        r
    }

    fn push(&mut self, signature: &str, id: i64, at: Millis, window: Millis) -> Vec<i64> {
        let q = self.by_signature.entry(signature.to_string()).or_default();
        q.push_back((id, at));
        while q.front().is_some_and(|&(_, t)| at - t > window) {
            q.pop_front();
        }
        q.iter().map(|&(i, _)| i).collect()
    }

    /// An incident folded into another one no longer counts.
    pub fn forget(&mut self, id: i64) {
        for q in self.by_signature.values_mut() {
            q.retain(|&(i, _)| i != id);
        }
        self.by_signature.retain(|_, q| !q.is_empty());
    }

    pub fn clear(&mut self, signature: &str) {
        self.by_signature.remove(signature);
    }

    /// Drop signatures whose newest incident left the window (bounded memory).
    pub fn prune(&mut self, now: Millis, window: Millis) {
        self.by_signature
            .retain(|_, q| q.back().is_some_and(|&(_, t)| now - t <= window));
    }
}

impl Engine {
    /// Count a newly opened incident; open or extend its problem record.
    pub(super) fn count_for_problem(&mut self, now: Millis, id: i64, effects: &mut Vec<Effect>) {
        let Some(inc) = self.incidents.get(&id) else {
            return;
        };
        let signature = inc.row.signature.clone();
        let window = millis(self.policy.problem.window);
        let ids = self.recent.push(&signature, id, now, window);
        let existing = self
            .problems
            .values()
            .find(|p| p.signature == signature && p.state != ProblemState::Resolved)
            .map(|p| p.id);
        let problem = match existing {
            Some(p) => p,
            None if ids.len() >= self.policy.problem.threshold.max(1) as usize => {
                self.open_problem(now, id, &signature)
            }
            None => return,
        };
        let to_link: Vec<i64> = if existing.is_some() { vec![id] } else { ids };
        for incident in to_link {
            self.link_problem(now, problem, incident, effects);
        }
    }

    fn open_problem(&mut self, now: Millis, incident: i64, signature: &str) -> i64 {
        let id = take(&mut self.ids.problem);
        let (rule, site, node, group_key, title, category, kb) = match self.incidents.get(&incident)
        {
            Some(inc) => {
                let root = inc.root.as_ref();
                (
                    root.map(|r| r.rule.clone()).unwrap_or_default(),
                    inc.row.site.clone(),
                    inc.row.node.clone(),
                    inc.row.group_key.clone(),
                    format!(
                        "recurring: {}",
                        root.map(|r| r.rule.as_str()).unwrap_or("?")
                    ) + &format!(
                        " on {}",
                        inc.row.group_key.as_deref().unwrap_or(&inc.row.node)
                    ),
                    inc.row.category,
                    root.and_then(|r| r.runbook.clone()),
                )
            }
            None => return id,
        };
        let row = ProblemRow {
            id,
            number: format!("PRB-{id:06}"),
            state: ProblemState::Open,
            signature: signature.to_string(),
            rule,
            site,
            node,
            group_key,
            title,
            category,
            kb,
            workaround: None,
            incident_count: 0,
            opened_at: now,
            last_incident_at: now,
            known_error_at: None,
            resolved_at: None,
            updated_at: now,
        };
        self.counters.problems_opened += 1;
        self.problems.insert(id, row);
        id
    }

    /// Link an incident (and its ticket) to a problem; the ticket learns the workaround.
    fn link_problem(
        &mut self,
        now: Millis,
        problem: i64,
        incident: i64,
        effects: &mut Vec<Effect>,
    ) {
        let Some(p) = self.problems.get_mut(&problem) else {
            return;
        };
        p.incident_count += 1;
        p.last_incident_at = p.last_incident_at.max(now);
        p.updated_at = now;
        let p = p.clone();
        effects.push(Effect::Problem(Box::new(p.clone())));
        effects.push(Effect::ProblemIncident(ProblemIncidentRow {
            problem_id: problem,
            incident_id: incident,
            linked_at: now,
        }));
        let ticket = match self.incidents.get_mut(&incident) {
            Some(inc) => {
                inc.row.problem_id = Some(problem);
                inc.row.updated_at = now;
                effects.push(Effect::Incident(Box::new(inc.row.clone())));
                inc.row.ticket_id
            }
            None => None,
        };
        let Some(ticket) = ticket else {
            return;
        };
        if let Some(tk) = self.tickets.get_mut(&ticket) {
            tk.problem_id = Some(problem);
            tk.workaround = p.workaround.clone();
            tk.updated_at = now;
            effects.push(Effect::Ticket(Box::new(tk.clone())));
        }
        let mut msg = format!(
            "linked to problem {} ({} incidents of {} so far)",
            p.number, p.incident_count, p.signature
        );
        if p.state == ProblemState::KnownError {
            msg.push_str(&format!(
                "; known error, workaround: {}",
                p.workaround.as_deref().unwrap_or("(none recorded)")
            ));
        }
        if let Some(kb) = &p.kb {
            msg.push_str(&format!("; knowledge base: {kb}"));
        }
        self.ticket_event(
            now,
            ticket,
            "problem_linked",
            msg,
            json!({"problem": p.number}),
            effects,
        );
    }

    pub(super) fn update_problem(
        &mut self,
        now: Millis,
        id: i64,
        state: Option<ProblemState>,
        workaround: Option<String>,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, CommandError> {
        let Some(p) = self.problems.get_mut(&id) else {
            return Err(CommandError::NotFound(format!(
                "problem {id} does not exist or is already resolved"
            )));
        };
        if state.is_none() && workaround.is_none() {
            return Err(CommandError::Invalid(
                "give a state (open, known_error, resolved) and/or a workaround".into(),
            ));
        }
        if let Some(w) = &workaround
            && w.len() > 16 * 1024
        {
            return Err(CommandError::Invalid(
                "the workaround is longer than 16 KiB".into(),
            ));
        }
        if state == Some(ProblemState::KnownError) && workaround.is_none() && p.workaround.is_none()
        {
            return Err(CommandError::Invalid(
                "a known error needs a workaround: give one".into(),
            ));
        }
        if let Some(w) = workaround {
            p.workaround = Some(w);
        }
        if let Some(s) = state
            && s != p.state
        {
            p.state = s;
            match s {
                ProblemState::KnownError => p.known_error_at = Some(now),
                ProblemState::Resolved => p.resolved_at = Some(now),
                ProblemState::Open => {}
            }
        }
        p.updated_at = now;
        let p = p.clone();
        effects.push(Effect::Problem(Box::new(p.clone())));
        // Open tickets of the problem show the new workaround.
        let tickets: Vec<i64> = self
            .incidents
            .values()
            .filter(|i| i.row.problem_id == Some(id))
            .filter_map(|i| i.row.ticket_id)
            .collect();
        for ticket in tickets {
            if let Some(tk) = self.tickets.get_mut(&ticket) {
                tk.workaround = p.workaround.clone();
                tk.updated_at = now;
                effects.push(Effect::Ticket(Box::new(tk.clone())));
            }
            let msg = format!(
                "problem {} is now {} ({actor}){}",
                p.number,
                p.state.as_str(),
                p.workaround
                    .as_deref()
                    .map(|w| format!("; workaround: {w}"))
                    .unwrap_or_default()
            );
            self.ticket_event(
                now,
                ticket,
                "problem_updated",
                msg,
                json!({"problem": p.number, "state": p.state}),
                effects,
            );
        }
        if p.state == ProblemState::Resolved {
            // Incidents after the fix count towards a new problem, not this one.
            self.problems.remove(&id);
            self.recent.clear(&p.signature);
        }
        Ok(Reply::Problem(Box::new(p)))
    }
}
