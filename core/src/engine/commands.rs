//! Operator commands (maintenance windows, problem updates) and rule/policy reloads.

use super::{Command, CommandError, Engine, Outcome, Reply};
use crate::engine::Policy;
use crate::rules::Rule;
use crate::time::Millis;

impl Engine {
    /// Apply an operator's command received at `now`. A refused command changes nothing.
    pub fn command(&mut self, now: Millis, cmd: Command) -> Result<(Reply, Outcome), CommandError> {
        let now = self.advance(now);
        let mut out = Outcome::default();
        out.effects.append(&mut self.pending);
        let reply =
            match cmd {
                Command::AddMaintenance(row) => self.add_maintenance(now, row, &mut out.effects)?,
                Command::EndMaintenance { id, actor } => {
                    self.end_maintenance(now, id, &actor, &mut out.effects)?
                }
                Command::UpdateProblem {
                    id,
                    state,
                    workaround,
                    actor,
                } => self.update_problem(now, id, state, workaround, &actor, &mut out.effects)?,
                Command::Ticket {
                    id,
                    action,
                    actor,
                    stored,
                    history,
                } => Reply::Ticket(Box::new(self.ticket_action(
                    now,
                    id,
                    action,
                    &actor,
                    stored.map(|row| (row, history)),
                    &mut out.effects,
                )?)),
                Command::OpenTicket { ticket, actor } => Reply::Ticket(Box::new(
                    self.open_manual(now, *ticket, &actor, &mut out.effects)?,
                )),
            };
        Ok((reply, out))
    }

    /// Swap in new rules and policy (already validated). Alerts of rules that are gone
    /// resolve; everything else carries on.
    pub fn reload(&mut self, now: Millis, rules: Vec<Rule>, policy: Policy) -> Outcome {
        let now = self.advance(now);
        let mut out = Outcome::default();
        out.effects.append(&mut self.pending);
        self.policy = policy;
        self.load_policy_windows(now);
        // New SLA targets or calendars apply to the open tickets at once (rewritten only
        // where something moved).
        for t in self.tickets.values_mut() {
            let before = t.sla.clone();
            super::escalation::refresh_sla(&self.policy, t, now);
            if t.sla != before {
                out.effects.push(super::Effect::Ticket(Box::new(t.clone())));
            }
        }
        for t in self.rules.reload(rules, now) {
            self.apply_alert(now, t, &mut out.effects);
        }
        out.effects.append(&mut self.pending);
        // A window that was removed or moved may release alerts it held back.
        self.release_suppressed(now, &mut out.effects);
        out
    }
}
