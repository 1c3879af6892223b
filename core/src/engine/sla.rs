//! SLA clocks: time spent against a target, in the priority's calendar, paused while pending.
//!
//! A clock is a list of running segments. `pause` (the ticket waits on a user or a vendor)
//! closes the open segment, `resume` opens a new one. Elapsed time counts only running
//! segments, in business hours when the priority's SLA names a calendar.

use super::policy::{Policy, Priority};
use crate::time::Millis;

/// How far along its target a clock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// SLA time spent so far.
    pub elapsed: Millis,
    /// When the target is reached if the clock keeps running (None while paused).
    pub due: Option<Millis>,
    /// Elapsed in thousandths of the target (750 = 75%, 1000 = breached).
    pub permille: u32,
}

/// One SLA clock (response or resolution) of one ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlaClock {
    /// (from, to) of every running stretch; the last one is open while running.
    segments: Vec<(Millis, Option<Millis>)>,
    /// SLA time counted before the last priority change (in that priority's calendar).
    #[serde(default)]
    banked: Millis,
}

impl SlaClock {
    /// A clock started at `at`.
    pub fn started(at: Millis) -> SlaClock {
        SlaClock {
            segments: vec![(at, None)],
            banked: 0,
        }
    }

    pub fn running(&self) -> bool {
        self.segments.last().is_some_and(|(_, to)| to.is_none())
    }

    /// When it was paused, while paused.
    pub fn paused_since(&self) -> Option<Millis> {
        match self.segments.last() {
            Some((_, Some(to))) => Some(*to),
            _ => None,
        }
    }

    /// Never started (a ticket stored before SLA clocks existed).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.banked == 0
    }

    /// The priority changes at `now`: the time used so far stays what it was in the old
    /// priority's calendar; from now on the new one's counts.
    pub fn rebase(&mut self, policy: &Policy, old: Priority, now: Millis) {
        let used = self.elapsed(policy, old, now);
        let running = self.running();
        let paused_at = self.paused_since();
        self.banked = used;
        self.segments.clear();
        if running {
            self.segments.push((now, None));
        } else if let Some(at) = paused_at {
            // Zero length: keeps when it was paused.
            self.segments.push((at, Some(at)));
        }
    }

    /// Stop counting (pending); a paused clock stays paused.
    pub fn pause(&mut self, at: Millis) {
        if let Some((from, to @ None)) = self.segments.last_mut() {
            *to = Some(at.max(*from));
        }
    }

    /// Count again; a running clock keeps running.
    pub fn resume(&mut self, at: Millis) {
        if !self.running() {
            self.segments.push((at, None));
        }
    }

    /// SLA time spent up to `now` for a ticket of `priority`.
    pub fn elapsed(&self, policy: &Policy, priority: Priority, now: Millis) -> Millis {
        self.banked
            + self
                .segments
                .iter()
                .map(|&(from, to)| policy.sla_elapsed(priority, from, to.unwrap_or(now).min(now)))
                .sum::<Millis>()
    }

    /// Where the clock stands against `target` at `now`.
    pub fn progress(
        &self,
        policy: &Policy,
        priority: Priority,
        target: Millis,
        now: Millis,
    ) -> Progress {
        let elapsed = self.elapsed(policy, priority, now);
        let left = (target - elapsed).max(0);
        let due = if self.running() {
            policy.sla_due(priority, now, left)
        } else {
            None
        };
        let permille = if target <= 0 {
            1000
        } else {
            u32::try_from(elapsed.saturating_mul(1000) / target).unwrap_or(u32::MAX)
        };
        Progress {
            elapsed,
            due,
            permille,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const M: Millis = 60_000;
    const H: Millis = 60 * M;

    fn policy() -> Policy {
        Policy::from_toml_str(
            Path::new("policy.toml"),
            r#"
            [calendar.office]
            timezone = "UTC"
            hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }
            [sla.P1]
            response = "15m"
            resolution = "4h"
            [sla.P3]
            response = "4h"
            resolution = "2d"
            calendar = "office"
            "#,
        )
        .expect("policy")
    }

    /// 2026-11-26, a Thursday, 10:00 UTC.
    const THU_10: Millis = 1_795_687_200_000;

    #[test]
    fn pending_pauses_the_clock_and_resume_restarts_it() {
        let p = policy();
        let mut c = SlaClock::started(THU_10);
        // (minutes after start, event, expected elapsed minutes, expected permille of 4h)
        let table: &[(Millis, &str, Millis, u32)] = &[
            (60, "check", 60, 250),
            (60, "pause", 60, 250),
            (180, "check", 60, 250), // paused: nothing counts
            (180, "resume", 60, 250),
            (240, "check", 120, 500),
            (300, "check", 180, 750),  // the 75% escalation point
            (360, "check", 240, 1000), // breached
        ];
        for &(at, event, want, permille) in table {
            let now = THU_10 + at * M;
            match event {
                "pause" => c.pause(now),
                "resume" => c.resume(now),
                _ => {}
            }
            let pr = c.progress(&p, Priority::P1, 4 * H, now);
            assert_eq!(pr.elapsed, want * M, "at +{at} min ({event})");
            assert_eq!(pr.permille, permille, "at +{at} min ({event})");
        }
        // Paused: no due time.
        c.pause(THU_10 + 400 * M);
        assert_eq!(
            c.progress(&p, Priority::P1, 4 * H, THU_10 + 500 * M).due,
            None
        );
    }

    #[test]
    fn business_hours_clocks_stop_at_night_and_over_the_weekend() {
        let p = policy();
        let c = SlaClock::started(THU_10);
        // P3, 2 days = 48 business hours of an 8-hour day: Thursday 7 h, Friday 8 h, ...
        let at_thu_night = THU_10 + 12 * H; // 22:00
        assert_eq!(c.elapsed(&p, Priority::P3, at_thu_night), 7 * H);
        let monday_9 = THU_10 + 4 * 24 * H - H;
        assert_eq!(c.elapsed(&p, Priority::P3, monday_9), 15 * H);
        let pr = c.progress(&p, Priority::P3, 48 * H, monday_9);
        // 33 business hours left from Monday 09:00: Mon..Thu 8 h each = 32, Friday 10:00.
        assert_eq!(pr.due, Some(monday_9 + 4 * 24 * H + H));
        // P1 counts around the clock.
        assert_eq!(c.elapsed(&p, Priority::P1, at_thu_night), 12 * H);
    }

    #[test]
    fn pausing_twice_or_resuming_a_running_clock_changes_nothing() {
        let mut c = SlaClock::started(0);
        c.resume(10);
        assert_eq!(c, SlaClock::started(0));
        c.pause(20);
        c.pause(30);
        assert_eq!(c.elapsed(&Policy::default(), Priority::P1, 100), 20);
    }
}
