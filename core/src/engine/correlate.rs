//! Correlation: which incident a firing alert belongs to.
//!
//! In order: the incident it already belongs to (a redelivery or a flap); the incident of a
//! down ancestor in the topology (the alert is a symptom); an open incident with the same
//! `group_by` labels or of the same node within the grouping window; the node's resolved
//! incident still in verification (a recurrence reopens it); else a new incident. When a
//! node goes down, open incidents of the nodes beneath it that were raised within the
//! grouping window are merged into its incident: one failure, one incident, one ticket.

use std::collections::{BTreeSet, VecDeque};

use serde_json::json;

use super::flapping::FlapChange;
use super::model::{Effect, IncidentAlertRow, IncidentState};
use super::{Engine, LiveAlert};
use crate::rules::{AlertSource, AlertState, AlertTransition};
use crate::time::Millis;

/// Deepest topology walked (cycles are cut by a visited set as well).
const MAX_DEPTH: usize = 32;

/// How an alert joins an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Root,
    /// Beneath the root cause in the topology.
    Symptom,
    /// Same node or same group.
    Related,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Symptom => "symptom",
            Role::Related => "related",
        }
    }
}

/// Alerts that a down ancestor explains: the node is unreachable, silent or its checks fail.
pub(super) fn explained_by_topology(t: &AlertTransition) -> bool {
    t.node_down
        || matches!(
            t.source,
            AlertSource::Check | AlertSource::Status | AlertSource::Absent
        )
}

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
                self.alerts.insert(t.key.clone(), LiveAlert::pending());
                self.push_alert_row(&t, None, None, effects);
            }
            AlertState::Firing => self.alert_fired(now, t, effects),
            AlertState::Resolved => {
                let live = self.alerts.remove(&t.key);
                let was_firing = live
                    .as_ref()
                    .is_some_and(|l| l.firing && l.suppressed.is_none());
                let incident = live.as_ref().and_then(|l| l.incident);
                self.unmark_down(&t);
                let change = if was_firing {
                    self.note_change(now, &t)
                } else {
                    FlapChange::Steady
                };
                self.push_alert_row(&t, incident, None, effects);
                let Some(id) = incident else {
                    return;
                };
                match change {
                    // Held: the incident stays open until the alert settles.
                    FlapChange::Still => {}
                    FlapChange::Started => self.flapping_started(now, id, &t, effects),
                    FlapChange::Steady => self.alert_cleared(now, id, &t, effects),
                }
            }
        }
    }

    fn alert_fired(&mut self, now: Millis, t: AlertTransition, effects: &mut Vec<Effect>) {
        if let Some(window) = self.suppression(now, &t) {
            self.counters.alerts_suppressed += 1;
            self.alerts.insert(
                t.key.clone(),
                LiveAlert {
                    incident: None,
                    suppressed: Some(window.clone()),
                    firing: true,
                    last: Some(t.clone()),
                },
            );
            self.push_alert_row(&t, None, Some(window), effects);
            return;
        }
        // Changes count towards flapping only while the alert can page.
        let change = self.note_change(now, &t);
        let incident = self.incident_for(now, &t, effects);
        self.alerts.insert(
            t.key.clone(),
            LiveAlert {
                incident: Some(incident),
                suppressed: None,
                firing: true,
                last: Some(t.clone()),
            },
        );
        self.push_alert_row(&t, Some(incident), None, effects);
        if change == FlapChange::Started {
            self.counters.alerts_flapping += 1;
            self.flapping_started(now, incident, &t, effects);
        }
    }

    /// The incident a firing alert belongs to (joining, reopening or opening one).
    pub(super) fn incident_for(
        &mut self,
        now: Millis,
        t: &AlertTransition,
        effects: &mut Vec<Effect>,
    ) -> i64 {
        let id = self.correlate(now, t, effects);
        if t.node_down {
            self.down
                .entry((t.site.clone(), t.node.clone()))
                .or_default()
                .insert(t.key.clone());
            self.merge_beneath(now, id, &t.site, &t.node, effects);
        }
        id
    }

    fn correlate(&mut self, now: Millis, t: &AlertTransition, effects: &mut Vec<Effect>) -> i64 {
        let verify = self.policy.verify_ms();
        let grouping = self.policy.grouping_ms();
        // Already a member: a flap, or a recurrence of the same alert.
        let member = self
            .index
            .with_member(&t.key)
            .next_back()
            .and_then(|id| self.incidents.get(&id))
            .map(|i| (i.row.id, i.row.state, i.row.resolved_at));
        if let Some((id, IncidentState::Open, _)) = member {
            self.join(now, id, t, Role::Related, effects);
            return id;
        }
        // A down ancestor explains it before its own old incident could be reopened.
        if explained_by_topology(t)
            && let Some(id) = self.down_ancestor_incident(&t.site, &t.node)
        {
            self.counters.symptoms_attached += 1;
            self.join(now, id, t, Role::Symptom, effects);
            return id;
        }
        if let Some((id, IncidentState::Resolved, Some(r))) = member
            && now - r <= verify
        {
            self.reopen(now, id, t, effects);
            self.join(now, id, t, Role::Related, effects);
            return id;
        }
        let group_key = self.group_key(t);
        if let Some(key) = &group_key {
            let grouped = self
                .index
                .of_group(key)
                .rev()
                .filter_map(|id| self.incidents.get(&id))
                .find(|i| i.row.state == IncidentState::Open && now - i.row.updated_at <= grouping)
                .map(|i| i.row.id);
            if let Some(id) = grouped {
                self.join(now, id, t, Role::Related, effects);
                return id;
            }
        }
        let same_node = || {
            self.index
                .of_node(&t.site, &t.node)
                .rev()
                .filter_map(|id| self.incidents.get(&id))
        };
        let open = same_node()
            .find(|i| i.row.state == IncidentState::Open && now - i.row.updated_at <= grouping)
            .map(|i| i.row.id);
        if let Some(id) = open {
            self.join(now, id, t, Role::Related, effects);
            return id;
        }
        let recurring = same_node()
            .find(|i| {
                i.row.state == IncidentState::Resolved
                    && i.row.resolved_at.is_some_and(|r| now - r <= verify)
            })
            .map(|i| i.row.id);
        if let Some(id) = recurring {
            self.reopen(now, id, t, effects);
            self.join(now, id, t, Role::Related, effects);
            return id;
        }
        let id = self.open(now, t, group_key, effects);
        self.count_for_problem(now, id, effects);
        id
    }

    /// `label=value,...` of the rule's `group_by` labels (from the alert, else the node);
    /// None when the rule groups by nothing or a label is missing.
    fn group_key(&self, t: &AlertTransition) -> Option<String> {
        if t.group_by.is_empty() {
            return None;
        }
        let node = self.nodes.get(&t.site, &t.node);
        let mut parts = Vec::with_capacity(t.group_by.len());
        for label in &t.group_by {
            let value = t
                .labels
                .get(label)
                .or_else(|| node.and_then(|n| n.labels.get(label)))?;
            parts.push(format!("{label}={value}"));
        }
        Some(parts.join(","))
    }

    pub(super) fn unmark_down(&mut self, t: &AlertTransition) {
        let node = (t.site.clone(), t.node.clone());
        if let Some(keys) = self.down.get_mut(&node) {
            keys.remove(&t.key);
            if keys.is_empty() {
                self.down.remove(&node);
            }
        }
    }

    /// The incident of the nearest ancestor that is down, walking `parents` upwards.
    fn down_ancestor_incident(&self, site: &str, node: &str) -> Option<i64> {
        if self.down.is_empty() {
            return None;
        }
        self.ancestors(site, node).into_iter().find_map(|a| {
            let keys = self.down.get(&(site.to_string(), a))?;
            keys.iter()
                .filter_map(|k| self.alerts.get(k).and_then(|l| l.incident))
                .find(|id| {
                    self.incidents
                        .get(id)
                        .is_some_and(|i| i.row.state == IncidentState::Open)
                })
        })
    }

    /// Every node above `node`, nearest first (cycles and depth are cut).
    pub(super) fn ancestors(&self, site: &str, node: &str) -> Vec<String> {
        let mut seen = BTreeSet::from([node.to_string()]);
        let mut out = Vec::new();
        let mut queue: VecDeque<(String, usize)> = VecDeque::from([(node.to_string(), 0)]);
        while let Some((n, depth)) = queue.pop_front() {
            if depth >= MAX_DEPTH {
                continue;
            }
            let Some(row) = self.nodes.get(site, &n) else {
                continue;
            };
            for p in row.parents.iter() {
                if seen.insert(p.clone()) {
                    out.push(p.clone());
                    queue.push_back((p.clone(), depth + 1));
                }
            }
        }
        out
    }

    /// Is `ancestor` above `node` in the topology?
    fn is_beneath(&self, site: &str, node: &str, ancestor: &str) -> bool {
        self.ancestors(site, node).iter().any(|a| a == ancestor)
    }

    /// Fold open incidents of nodes beneath `node` (raised within the grouping window, and
    /// whose root cause the outage explains) into incident `into`.
    fn merge_beneath(
        &mut self,
        now: Millis,
        into: i64,
        site: &str,
        node: &str,
        effects: &mut Vec<Effect>,
    ) {
        let grouping = self.policy.grouping_ms();
        let candidates: Vec<i64> = self
            .incidents
            .values()
            .filter(|i| {
                i.row.id != into
                    && i.row.state == IncidentState::Open
                    && i.row.site == site
                    && now - i.row.opened_at <= grouping
                    && i.root.as_ref().is_some_and(explained_by_topology)
            })
            .map(|i| (i.row.id, i.row.node.clone()))
            .filter(|(_, n)| self.is_beneath(site, n, node))
            .map(|(id, _)| id)
            .collect();
        for id in candidates {
            self.merge(now, id, into, effects);
        }
    }

    /// Incident `from` becomes part of `into`: its alerts are symptoms there, its ticket closes
    /// with a pointer to the surviving one.
    fn merge(&mut self, now: Millis, from: i64, into: i64, effects: &mut Vec<Effect>) {
        let Some(mut old) = self.incidents.remove(&from) else {
            return;
        };
        self.index.remove(&old);
        self.counters.incidents_merged += 1;
        self.recent.forget(from);
        let into_number = self
            .incidents
            .get(&into)
            .and_then(|i| i.row.ticket_id)
            .and_then(|t| self.tickets.get(&t))
            .map(|t| t.number.clone())
            .unwrap_or_else(|| format!("incident {into}"));
        let root_cause = self
            .incidents
            .get(&into)
            .map(|i| i.row.root_cause.clone())
            .unwrap_or_default();
        old.row.state = IncidentState::Merged;
        old.row.merged_into = Some(into);
        old.row.closed_at = Some(now);
        old.row.updated_at = now;
        effects.push(Effect::Incident(Box::new(old.row.clone())));
        let keys: Vec<String> = old.members.iter().cloned().collect();
        let moved = keys.len();
        for key in keys {
            let (firing, last) = match self.alerts.get_mut(&key) {
                Some(live) => {
                    live.incident = Some(into);
                    (live.firing, live.last.clone())
                }
                None => (false, None),
            };
            self.counters.symptoms_attached += 1;
            match (firing, last) {
                (true, Some(t)) => self.join(now, into, &t, Role::Symptom, effects),
                // Cleared already (linked for the record, it keeps nothing open), or firing
                // but restored from the store without its transition (it keeps it open).
                (firing, _) => {
                    if let Some(inc) = self.incidents.get_mut(&into) {
                        if firing {
                            inc.active.insert(key.clone());
                        }
                        if !inc.members.insert(key.clone()) {
                            continue;
                        }
                        self.index.add_member(&key, into);
                        inc.nodes
                            .insert((old.row.site.clone(), old.row.node.clone()));
                        inc.row.nodes_affected = u32::try_from(inc.nodes.len()).unwrap_or(u32::MAX);
                        inc.row.symptoms += 1;
                        effects.push(Effect::IncidentAlert(IncidentAlertRow {
                            incident_id: into,
                            alert_key: key,
                            role: Role::Symptom.as_str().into(),
                            node: old.row.node.clone(),
                            linked_at: now,
                        }));
                    }
                }
            }
        }
        let old_number = old
            .row
            .ticket_id
            .and_then(|t| self.tickets.get(&t))
            .map(|t| t.number.clone())
            .unwrap_or_else(|| "no ticket".into());
        if let Some(ticket_id) = old.row.ticket_id {
            let msg = format!(
                "merged into {into_number}: this fault is a symptom of {root_cause}; follow {into_number}"
            );
            self.close_ticket(
                now,
                ticket_id,
                "merged",
                super::incidents::MONITORING,
                msg,
                json!({"into_incident": into, "into_ticket": into_number}),
                effects,
            );
        }
        let into_ticket = self.incidents.get(&into).and_then(|i| i.row.ticket_id);
        if let Some(ticket_id) = into_ticket {
            let msg = format!(
                "absorbed incident {from} ({}, {old_number}) on {}: {moved} alert(s) now symptoms of this incident",
                old.row.title, old.row.node
            );
            self.ticket_event(
                now,
                ticket_id,
                "incident_merged",
                msg,
                json!({"incident": from}),
                effects,
            );
        }
    }

    pub(super) fn link_row(
        &self,
        now: Millis,
        id: i64,
        t: &AlertTransition,
        role: Role,
    ) -> IncidentAlertRow {
        IncidentAlertRow {
            incident_id: id,
            alert_key: t.key.clone(),
            role: role.as_str().into(),
            node: t.node.clone(),
            linked_at: now,
        }
    }
}
