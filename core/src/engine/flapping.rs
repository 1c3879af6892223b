//! Flapping: an alert that changes state too often is marked, its incident is held open and
//! its ticket gets one line instead of one per change, until it settles.

use std::collections::VecDeque;

use serde_json::json;

use super::Engine;
use super::model::{Effect, IncidentState};
use crate::rules::{AlertState, AlertTransition};
use crate::time::{Millis, human, millis};

/// Recent state changes of one alert.
#[derive(Debug, Clone, Default)]
pub(super) struct Flap {
    changes: VecDeque<Millis>,
    pub flapping: bool,
    /// The latest firing/resolved transition.
    pub last: Option<AlertTransition>,
    /// The incident it belonged to when it started flapping.
    pub incident: Option<i64>,
}

/// What a change did to an alert's flapping state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlapChange {
    Steady,
    /// It just crossed the limit.
    Started,
    /// It was flapping already.
    Still,
}

impl Engine {
    /// Note a firing or resolved transition of an alert that had fired.
    pub(super) fn note_change(&mut self, now: Millis, t: &AlertTransition) -> FlapChange {
        let window = millis(self.policy.flapping.window);
        let limit = self.policy.flapping.changes as usize;
        let flap = self.flaps.entry(t.key.clone()).or_default();
        flap.changes.push_back(now);
        while flap.changes.front().is_some_and(|&c| now - c > window) {
            flap.changes.pop_front();
        }
        flap.last = Some(t.clone());
        if flap.flapping {
            FlapChange::Still
        } else if flap.changes.len() > limit {
            flap.flapping = true;
            FlapChange::Started
        } else {
            FlapChange::Steady
        }
    }

    pub(super) fn is_flapping(&self, key: &str) -> bool {
        self.flaps.get(key).is_some_and(|f| f.flapping)
    }

    /// Mark the incident and say so once on its ticket.
    pub(super) fn flapping_started(
        &mut self,
        now: Millis,
        id: i64,
        t: &AlertTransition,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(f) = self.flaps.get_mut(&t.key) {
            f.incident = Some(id);
        }
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.row.flapping = true;
        inc.row.updated_at = now;
        effects.push(Effect::Incident(Box::new(inc.row.clone())));
        let Some(ticket) = inc.row.ticket_id else {
            return;
        };
        let p = &self.policy.flapping;
        let msg = format!(
            "flapping: {} changed state more than {} times within {}; the incident stays open and notifications about it are held until it is steady for {}",
            t.key,
            p.changes,
            humantime::format_duration(p.window),
            humantime::format_duration(p.settle_for)
        );
        self.ticket_event(
            now,
            ticket,
            "flapping",
            msg,
            json!({"alert": t.key}),
            effects,
        );
    }

    /// Alerts steady for the settle period stop flapping; one that ended resolved now clears.
    pub(super) fn settle_flaps(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        let settle = millis(self.policy.flapping.settle_for);
        let window = millis(self.policy.flapping.window);
        let mut settled: Vec<String> = self
            .flaps
            .iter()
            .filter(|(_, f)| f.flapping && f.changes.back().is_none_or(|&c| now - c >= settle))
            .map(|(k, _)| k.clone())
            .collect();
        settled.sort();
        for key in settled {
            let Some(flap) = self.flaps.remove(&key) else {
                continue;
            };
            // The incident it belongs to now (it may have been merged since it started).
            let current = self
                .incidents
                .values()
                .filter(|i| i.members.contains(&key) && i.row.state == IncidentState::Open)
                .map(|i| i.row.id)
                .next_back();
            let (Some(last), Some(id)) = (flap.last, current.or(flap.incident)) else {
                continue;
            };
            let firing = last.state == AlertState::Firing;
            let quiet_for = flap.changes.back().map(|&c| now - c).unwrap_or(0);
            let still = self.flaps.iter().any(|(k, f)| {
                f.flapping
                    && self
                        .incidents
                        .get(&id)
                        .is_some_and(|i| i.members.contains(k))
            });
            if let Some(inc) = self.incidents.get_mut(&id) {
                inc.row.flapping = still;
                inc.row.updated_at = now;
                effects.push(Effect::Incident(Box::new(inc.row.clone())));
                if let Some(ticket) = inc.row.ticket_id {
                    let msg = format!(
                        "settled: {} has not changed for {}; it is {}",
                        key,
                        human(quiet_for),
                        if firing { "firing" } else { "resolved" }
                    );
                    self.ticket_event(now, ticket, "settled", msg, json!({"alert": key}), effects);
                }
            }
            if !firing {
                let mut t = last;
                t.at = now;
                self.alert_cleared(now, id, &t, effects);
            }
        }
        // Forget steady alerts with no change inside the window (bounded memory).
        self.flaps
            .retain(|_, f| f.flapping || f.changes.back().is_some_and(|&c| now - c <= window));
    }
}
