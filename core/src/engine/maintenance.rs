//! Maintenance windows: alerts of matching nodes open no incidents while a window lasts.
//!
//! Windows come from policy.toml (`[[maintenance]]`) and from operators through the API.
//! A firing alert inside a window is recorded with `suppressed_by` and opens nothing; if it
//! is still firing when the window ends, it is correlated then like any new fault.

use std::collections::BTreeMap;

use super::model::{AlertRow, Effect, MaintenanceRow};
use super::policy::MaintenancePolicy;
use super::{CommandError, Engine, Reply, take};
use crate::rules::expr::glob_match;
use crate::rules::{AlertState, AlertTransition};
use crate::time::{Millis, millis};

/// The longest one-off window an operator can open (a recurring one repeats instead).
pub const MAX_WINDOW_MS: Millis = 31 * 86_400_000;

/// Match keys a window may use.
fn known_key(key: &str) -> bool {
    matches!(key, "site" | "node") || key.strip_prefix("labels.").is_some_and(|k| !k.is_empty())
}

fn parse_time(what: &str, s: &str) -> Result<Millis, String> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(millis)
        .ok_or_else(|| format!("{what} {s:?} is not an RFC 3339 time like 2026-12-06T02:00:00Z"))
}

/// Check a window's shape; the message names the window.
pub fn validate(row: &MaintenanceRow) -> Result<(), String> {
    let name = &row.name;
    if name.trim().is_empty() || name.len() > 128 {
        return Err("a maintenance window needs a name of 1 to 128 characters".into());
    }
    for key in row.match_.keys() {
        if !known_key(key) {
            return Err(format!(
                "maintenance {name:?}: unknown match key {key:?} (use site, node or labels.<key>)"
            ));
        }
    }
    if row.ends_at <= row.starts_at {
        return Err(format!("maintenance {name:?}: it must end after it starts"));
    }
    let length = row.ends_at - row.starts_at;
    match row.every_ms {
        Some(every) if every < length => {
            return Err(format!(
                "maintenance {name:?}: it repeats more often than it lasts (every must be at least its length)"
            ));
        }
        None if length > MAX_WINDOW_MS => {
            return Err(format!(
                "maintenance {name:?}: a one-off window lasts at most 31 days (use every for a recurring one)"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// A `[[maintenance]]` table of policy.toml as a window.
pub fn window_from_policy(m: &MaintenancePolicy) -> Result<MaintenanceRow, String> {
    let name = &m.name;
    let starts_at = parse_time(&format!("maintenance {name:?}: start"), &m.start)?;
    let ends_at = match (&m.end, m.duration) {
        (Some(end), None) => parse_time(&format!("maintenance {name:?}: end"), end)?,
        (None, Some(d)) => starts_at.saturating_add(millis(d)),
        _ => {
            return Err(format!(
                "maintenance {name:?}: give exactly one of end or duration"
            ));
        }
    };
    let row = MaintenanceRow {
        id: 0,
        name: name.clone(),
        match_: m.match_.clone(),
        starts_at,
        ends_at,
        every_ms: m.every.map(millis),
        reason: m.reason.clone(),
        created_by: "policy".into(),
        created_at: starts_at,
        cancelled_at: None,
    };
    validate(&row)?;
    Ok(row)
}

/// The stored id of a policy window: negative, and stable for its name.
pub fn policy_window_id(name: &str) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    name.hash(&mut h);
    -((h.finish() >> 2) as i64) - 1
}

/// Is the window in force at `now`?
pub fn active(w: &MaintenanceRow, now: Millis) -> bool {
    if w.cancelled_at.is_some_and(|c| c <= now) || now < w.starts_at {
        return false;
    }
    let length = w.ends_at - w.starts_at;
    match w.every_ms {
        Some(every) if every > 0 => (now - w.starts_at) % every < length,
        _ => now < w.ends_at,
    }
}

/// Will the window never be in force again after `now`?
fn over(w: &MaintenanceRow, now: Millis) -> bool {
    w.cancelled_at.is_some_and(|c| c <= now) || (w.every_ms.is_none() && now >= w.ends_at)
}

/// Does the window cover this node?
pub fn covers(
    w: &MaintenanceRow,
    site: &str,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    w.match_.iter().all(|(key, pattern)| {
        let value = match key.as_str() {
            "site" => Some(site),
            "node" => Some(node),
            other => other
                .strip_prefix("labels.")
                .and_then(|k| labels.get(k))
                .map(String::as_str),
        };
        value.is_some_and(|v| glob_match(pattern, v))
    })
}

impl Engine {
    /// The name of a window in force now that covers this node, if any.
    pub(super) fn maintenance_for(&self, now: Millis, site: &str, node: &str) -> Option<String> {
        let labels = self.node_labels(site, node);
        self.policy_windows
            .iter()
            .chain(self.maintenance.values())
            .find(|w| active(w, now) && covers(w, site, node, &labels))
            .map(|w| w.name.clone())
    }

    /// The window that holds this alert back: one covering its node, or, for an alert its
    /// topology explains (offline, unreachable, stale, failing checks), one covering a node
    /// above it (`"<window> (via <ancestor>)"`).
    pub(super) fn suppression(&self, now: Millis, t: &AlertTransition) -> Option<String> {
        if self.policy_windows.is_empty() && self.maintenance.is_empty() {
            return None;
        }
        if let Some(w) = self.maintenance_for(now, &t.site, &t.node) {
            return Some(w);
        }
        if !super::correlate::explained_by_topology(t) {
            return None;
        }
        self.ancestors(&t.site, &t.node).into_iter().find_map(|a| {
            self.maintenance_for(now, &t.site, &a)
                .map(|w| format!("{w} (via {a})"))
        })
    }

    pub(super) fn add_maintenance(
        &mut self,
        now: Millis,
        mut row: MaintenanceRow,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, CommandError> {
        validate(&row).map_err(CommandError::Invalid)?;
        if row.every_ms.is_none() && row.ends_at <= now {
            return Err(CommandError::Invalid(format!(
                "maintenance {:?}: it ends in the past",
                row.name
            )));
        }
        row.id = take(&mut self.ids.maintenance);
        row.created_at = now;
        row.cancelled_at = None;
        effects.push(Effect::Maintenance(Box::new(row.clone())));
        self.maintenance.insert(row.id, row.clone());
        Ok(Reply::Maintenance(Box::new(row)))
    }

    pub(super) fn end_maintenance(
        &mut self,
        now: Millis,
        id: i64,
        actor: &str,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, CommandError> {
        if self.policy_windows.iter().any(|w| w.id == id) {
            return Err(CommandError::Invalid(format!(
                "maintenance window {id} comes from policy.toml: remove it there and reload the rules"
            )));
        }
        let Some(mut row) = self.maintenance.remove(&id) else {
            return Err(CommandError::NotFound(format!(
                "maintenance window {id} does not exist or has already ended"
            )));
        };
        row.cancelled_at = Some(now);
        if !row.reason.is_empty() {
            row.reason.push_str("; ");
        }
        row.reason.push_str(&format!("ended early by {actor}"));
        effects.push(Effect::Maintenance(Box::new(row.clone())));
        // Faults still present now page like new ones.
        self.release_suppressed(now, effects);
        Ok(Reply::Maintenance(Box::new(row)))
    }

    /// Policy windows after a policy load (refused ones were caught when the policy was read).
    /// They are stored too (negative ids, `created_by = "policy"`), so operators see them next
    /// to their own; a window gone from the policy is stored as cancelled at `now`.
    pub(super) fn load_policy_windows(&mut self, now: Millis) {
        let new: Vec<MaintenanceRow> = self
            .policy
            .maintenance
            .iter()
            .filter_map(|m| window_from_policy(m).ok())
            .map(|mut w| {
                w.id = policy_window_id(&w.name);
                w
            })
            .collect();
        for old in &self.policy_windows {
            if !new.iter().any(|w| w.id == old.id) {
                let mut gone = old.clone();
                gone.cancelled_at = Some(now);
                gone.reason = format!("{} (removed from policy.toml)", gone.reason)
                    .trim_start()
                    .to_string();
                self.pending.push(Effect::Maintenance(Box::new(gone)));
            }
        }
        for w in &new {
            if !self.policy_windows.contains(w) {
                self.pending.push(Effect::Maintenance(Box::new(w.clone())));
            }
        }
        self.policy_windows = new;
    }

    /// Suppressed alerts still firing when no window covers them any more are correlated now.
    pub(super) fn release_suppressed(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        self.maintenance.retain(|_, w| !over(w, now));
        // Nodes that are down first, so what they explain beneath them joins their incident
        // instead of opening one of its own.
        let mut due: Vec<(bool, String)> = self
            .alerts
            .iter()
            .filter(|(_, a)| a.suppressed.is_some() && a.firing)
            .map(|(k, a)| (!a.last.as_ref().is_some_and(|t| t.node_down), k.clone()))
            .collect();
        due.sort();
        for (_, key) in due {
            let Some(live) = self.alerts.get(&key) else {
                continue;
            };
            let Some(last) = live.last.clone() else {
                continue;
            };
            if self.suppression(now, &last).is_some() {
                continue;
            }
            let mut t = last;
            t.at = now;
            t.state = AlertState::Firing;
            t.detail = format!("{} (still firing after maintenance ended)", t.detail);
            let incident = self.incident_for(now, &t, effects);
            if let Some(live) = self.alerts.get_mut(&key) {
                live.suppressed = None;
                live.incident = Some(incident);
                live.last = Some(t.clone());
            }
            self.counters.alert_transitions += 1;
            let id = take(&mut self.ids.alert);
            effects.push(Effect::Alert(Box::new(AlertRow {
                id,
                incident_id: Some(incident),
                suppressed_by: None,
                flapping: false,
                transition: t,
            })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: Millis, end: Millis, every: Option<Millis>) -> MaintenanceRow {
        MaintenanceRow {
            id: 1,
            name: "w".into(),
            match_: [("node".to_string(), "web-*".to_string())].into(),
            starts_at: start,
            ends_at: end,
            every_ms: every,
            reason: String::new(),
            created_by: "test".into(),
            created_at: 0,
            cancelled_at: None,
        }
    }

    #[test]
    fn one_off_and_recurring_windows() {
        let w = window(1_000, 2_000, None);
        for (now, want) in [(999, false), (1_000, true), (1_999, true), (2_000, false)] {
            assert_eq!(active(&w, now), want, "{now}");
        }
        let weekly = window(1_000, 2_000, Some(10_000));
        for (now, want) in [(500, false), (1_500, true), (2_500, false), (11_500, true)] {
            assert_eq!(active(&weekly, now), want, "{now}");
        }
        let mut cancelled = w.clone();
        cancelled.cancelled_at = Some(1_500);
        assert!(active(&cancelled, 1_400) && !active(&cancelled, 1_500));
    }

    #[test]
    fn matching_by_node_site_and_labels() {
        let mut w = window(0, 1, None);
        let labels: BTreeMap<String, String> = [("service".to_string(), "pay".to_string())].into();
        assert!(covers(&w, "dc1", "web-01", &labels));
        assert!(!covers(&w, "dc1", "db-01", &labels));
        w.match_.insert("labels.service".into(), "pay*".into());
        w.match_.insert("site".into(), "dc1".into());
        assert!(covers(&w, "dc1", "web-01", &labels));
        assert!(!covers(&w, "dc2", "web-01", &labels));
        assert!(!covers(&w, "dc1", "web-01", &BTreeMap::new()));
    }

    #[test]
    fn refuses_bad_windows() {
        let mut bad_key = window(0, 10, None);
        bad_key.match_.insert("colour".into(), "red".into());
        for w in [
            window(10, 10, None),
            window(0, MAX_WINDOW_MS + 1, None),
            window(0, 10, Some(5)),
            bad_key,
        ] {
            assert!(validate(&w).is_err());
        }
        assert!(validate(&window(0, MAX_WINDOW_MS * 2, Some(MAX_WINDOW_MS * 3))).is_ok());
        let p = MaintenancePolicy {
            name: "patch".into(),
            match_: BTreeMap::new(),
            start: "2026-12-06T02:00:00Z".into(),
            end: None,
            duration: Some(std::time::Duration::from_secs(7200)),
            every: Some(std::time::Duration::from_secs(7 * 86_400)),
            reason: String::new(),
        };
        let w = window_from_policy(&p).expect("valid");
        assert_eq!(w.ends_at - w.starts_at, 7_200_000);
        let mut both = p.clone();
        both.end = Some("2026-12-06T04:00:00Z".into());
        assert!(window_from_policy(&both).is_err());
        let mut bad_time = p;
        bad_time.start = "Sunday".into();
        assert!(window_from_policy(&bad_time).is_err());
    }
}
