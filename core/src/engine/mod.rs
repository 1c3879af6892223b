//! The engine: a pure, deterministic state machine from timestamped inputs to effects.
//!
//! It takes [`Input`]s with the time they were received, returns [`Effect`]s
//! (rows to write), does no I/O and never reads the clock. Everything
//! time-based runs on the `now` it is handed, so scenario tests drive it in
//! simulated time and a recorded input stream replays to the same output.

pub mod calendar;
mod commands;
mod correlate;
pub mod desk;
pub mod escalation;
mod flapping;
mod incidents;
mod index;
mod inventory;
pub mod lifecycle;
pub mod maintenance;
pub mod model;
mod operator;
pub mod policy;
pub mod problems;
mod report_body;
pub mod shared;
pub mod sla;
pub mod targets;
mod tickets;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tocsin_protocol::{NodeState, Report, Status};

pub use desk::{ManualTicket, Reporter, TicketAction, TicketKind};
pub use model::{
    AlertRow, Effect, IncidentAlertRow, IncidentRow, IncidentState, MaintenanceRow, NodeInventory,
    NodeRow, Nodes, NotificationRow, Presence, ProblemIncidentRow, ProblemRow, ProblemState,
    ReportBody, TicketEventRow, TicketRow, TicketSla, TicketState,
};
pub use policy::{Level, Policy, Priority};

use crate::rules::{ActiveAlert, AlertTransition, Evaluator, Rule};
use crate::time::Millis;

/// Something that happened, as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A validated report (its topic matched its payload).
    Report(Box<Report>),
    /// A validated status for a node.
    Status {
        site: String,
        node: String,
        status: Box<Status>,
    },
    /// Time passed: pending node alerts and verification periods are due.
    Tick,
}

/// What the store hands back at start so the engine continues where it stopped.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeRow>,
    /// Live (pending or firing) alerts, with the incident each belongs to.
    pub alerts: Vec<(ActiveAlert, Option<i64>)>,
    /// Incidents not yet closed.
    pub incidents: Vec<IncidentRow>,
    /// Tickets of those incidents.
    pub tickets: Vec<TicketRow>,
    /// Problems not yet resolved.
    pub problems: Vec<ProblemRow>,
    /// Incidents opened within the problem window: (signature, incident id, opened at, problem).
    pub recent: Vec<RecentIncident>,
    /// Maintenance windows made through the API that have not ended.
    pub maintenance: Vec<MaintenanceRow>,
    /// Alert links of the incidents not yet closed (who is root, symptom, related).
    pub links: Vec<IncidentAlertRow>,
    /// The log of the tickets not yet closed (for the handover an escalation carries).
    pub ticket_events: Vec<TicketEventRow>,
    /// Closed tickets of recent incidents, newest first, for "similar past incidents".
    pub similar: Vec<SimilarCase>,
    /// When the snapshot was taken (the collector's clock at start).
    pub now: Millis,
    pub next_ids: Ids,
}

/// Past cases kept per signature for "similar past incidents".
pub const SIMILAR_KEPT: usize = 3;

/// A closed ticket of an incident, as a past case for new tickets of the same signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimilarCase {
    pub signature: String,
    pub number: String,
    pub summary: String,
    pub opened_at: Millis,
    pub resolved_at: Option<Millis>,
    /// Resolution notes (`recovered automatically` when monitoring saw it clear).
    pub resolution: Option<String>,
    pub cause_code: Option<String>,
}

/// An incident that counts towards a problem record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentIncident {
    pub signature: String,
    pub incident_id: i64,
    pub opened_at: Millis,
    pub problem_id: Option<i64>,
}

/// An operator's request, from the API; applied in order with the other inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open a maintenance window (`id` is assigned by the engine).
    AddMaintenance(MaintenanceRow),
    /// End a window now.
    EndMaintenance { id: i64, actor: String },
    /// Change a problem's state and/or workaround.
    UpdateProblem {
        id: i64,
        state: Option<ProblemState>,
        workaround: Option<String>,
        actor: String,
    },
    /// An operator's action on a ticket. `stored` is the ticket as the store has it, handed
    /// in by the API for a closed ticket (the engine lets go of closed tickets; reopen needs it).
    Ticket {
        id: i64,
        action: TicketAction,
        actor: String,
        stored: Option<Box<TicketRow>>,
        /// The stored ticket's log, with `stored` (the handover of a reopen carries it).
        history: Vec<TicketEventRow>,
    },
    /// A ticket opened by a person.
    OpenTicket {
        ticket: Box<ManualTicket>,
        actor: String,
    },
}

/// What a command produced, for the API's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Reply {
    Maintenance(Box<MaintenanceRow>),
    Problem(Box<ProblemRow>),
    Ticket(Box<TicketRow>),
}

/// Why a command was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The ticket's state does not allow it (the API answers 409).
    #[error("{0}")]
    Conflict(String),
}

/// Next free identifiers; persisted implicitly as the maxima of the stored rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub alert: i64,
    pub incident: i64,
    pub ticket: i64,
    pub ticket_event: i64,
    /// Running number of `INC-` tickets.
    pub incident_number: i64,
    pub problem: i64,
    pub maintenance: i64,
    /// Running number of `REQ-` tickets.
    pub request_number: i64,
    pub notification: i64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            alert: 1,
            incident: 1,
            ticket: 1,
            ticket_event: 1,
            incident_number: 1,
            problem: 1,
            maintenance: 1,
            request_number: 1,
            notification: 1,
        }
    }
}

fn take(id: &mut i64) -> i64 {
    let v = *id;
    *id += 1;
    v
}

/// What one input did, beyond its effects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    /// The report was a redelivery (same node, `seq` and `ts` not newer) and changed nothing.
    pub duplicate: bool,
}

/// Running totals for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub reports: u64,
    pub duplicates: u64,
    pub statuses: u64,
    pub alert_transitions: u64,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    pub incidents_closed: u64,
    pub incidents_reopened: u64,
    /// Incidents folded into their root cause's incident.
    pub incidents_merged: u64,
    /// Alerts attached to an ancestor's incident as topology symptoms.
    pub symptoms_attached: u64,
    /// Firing alerts that opened nothing because of a maintenance window.
    pub alerts_suppressed: u64,
    pub alerts_flapping: u64,
    pub problems_opened: u64,
    pub priority_raised: u64,
    pub tickets_opened: u64,
}

/// An alert that is pending or firing.
#[derive(Debug, Clone)]
struct LiveAlert {
    incident: Option<i64>,
    /// The maintenance window that holds it back.
    suppressed: Option<String>,
    /// Firing (not pending).
    firing: bool,
    /// Its latest transition (None for alerts restored from the store).
    last: Option<AlertTransition>,
}

impl LiveAlert {
    fn pending() -> LiveAlert {
        LiveAlert {
            incident: None,
            suppressed: None,
            firing: false,
            last: None,
        }
    }
}

/// An incident not yet closed, with its live alerts.
#[derive(Debug, Clone)]
struct Incident {
    row: IncidentRow,
    /// Firing alerts that keep it open.
    active: BTreeSet<String>,
    /// Every alert ever linked.
    members: BTreeSet<String>,
    /// Nodes with alerts in it.
    nodes: BTreeSet<(String, String)>,
    /// The root alert's transition (None when restored from the store).
    root: Option<AlertTransition>,
}

/// The state machine.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    rules: Evaluator,
    nodes: Nodes,
    alerts: HashMap<String, LiveAlert>,
    incidents: BTreeMap<i64, Incident>,
    /// Correlation's lookups into `incidents` (kept in step with it).
    index: index::IncidentIndex,
    tickets: BTreeMap<i64, TicketRow>,
    ids: Ids,
    counters: Counters,
    /// Latest `now` seen: time never runs backwards inside the engine.
    clock: Millis,
    /// Live alerts restored from the store whose rule no longer exists; resolved on the first input.
    orphans: Vec<ActiveAlert>,
    /// Nodes with a firing `node_down` alert: node -> those alert keys.
    down: HashMap<(String, String), BTreeSet<String>>,
    /// Problems not yet resolved.
    problems: BTreeMap<i64, ProblemRow>,
    /// Incidents per signature within the problem window.
    recent: problems::Recent,
    /// Maintenance windows from the API (policy ones are in `policy_windows`).
    maintenance: BTreeMap<i64, MaintenanceRow>,
    policy_windows: Vec<MaintenanceRow>,
    flaps: HashMap<String, flapping::Flap>,
    /// Incidents restored open with nothing firing; resolved on the first input.
    unheld: Vec<i64>,
    /// Effects made outside an input (at start); handed out with the next outcome.
    pending: Vec<Effect>,
    /// The log of each open ticket (bounded), for the handover an escalation carries.
    journal: HashMap<i64, Vec<TicketEventRow>>,
    /// Past cases per incident signature, newest first.
    similar: HashMap<String, Vec<SimilarCase>>,
}

impl Engine {
    /// A fresh engine, or one resumed from the store's snapshot.
    pub fn new(policy: Policy, rules: Vec<Rule>, snapshot: Snapshot) -> Engine {
        let mut evaluator = Evaluator::new(rules);
        for n in &snapshot.nodes {
            if let (Some(at), false) = (n.last_report_at, n.state == Presence::Stopped) {
                evaluator.seed(&n.site, &n.node, at);
            }
        }
        let active: Vec<ActiveAlert> = snapshot.alerts.iter().map(|(a, _)| a.clone()).collect();
        let dropped = evaluator.restore(&active);
        let mut engine = Engine {
            policy,
            rules: evaluator,
            nodes: {
                let mut nodes = Nodes::default();
                for n in snapshot.nodes {
                    nodes.insert(n);
                }
                nodes
            },
            alerts: HashMap::new(),
            incidents: BTreeMap::new(),
            index: index::IncidentIndex::default(),
            tickets: snapshot.tickets.into_iter().map(|t| (t.id, t)).collect(),
            ids: snapshot.next_ids,
            counters: Counters::default(),
            clock: 0,
            orphans: Vec::new(),
            down: HashMap::new(),
            problems: snapshot
                .problems
                .iter()
                .map(|p| (p.id, p.clone()))
                .collect(),
            // Incidents of a problem that was resolved meanwhile count towards nothing.
            recent: problems::Recent::restore(
                &snapshot
                    .recent
                    .iter()
                    .filter(|r| {
                        r.problem_id
                            .is_none_or(|p| snapshot.problems.iter().any(|x| x.id == p))
                    })
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            maintenance: snapshot
                .maintenance
                .into_iter()
                .map(|m| (m.id, m))
                .collect(),
            policy_windows: Vec::new(),
            flaps: HashMap::new(),
            unheld: Vec::new(),
            pending: Vec::new(),
            journal: HashMap::new(),
            similar: HashMap::new(),
        };
        for ev in snapshot.ticket_events {
            if engine.tickets.contains_key(&ev.ticket_id) {
                engine.remember_line(ev);
            }
        }
        // SLA due times from the policy in force now (it may have changed while stopped);
        // tickets stored before SLA clocks existed start theirs at their opening.
        for t in engine.tickets.values_mut() {
            if t.sla.clock.is_empty()
                && !matches!(t.state, TicketState::Resolved | TicketState::Closed)
            {
                t.sla.clock = sla::SlaClock::started(t.opened_at);
                if t.state == TicketState::Pending {
                    t.sla.clock.pause(t.updated_at);
                }
            }
            escalation::refresh_sla(&engine.policy, t, snapshot.now);
        }
        for case in snapshot.similar {
            let cases = engine.similar.entry(case.signature.clone()).or_default();
            if cases.len() < SIMILAR_KEPT {
                cases.push(case);
            }
        }
        // Policy windows are the policy's: stored rows of ones no longer in it are cancelled.
        let stored_policy: Vec<MaintenanceRow> = engine
            .maintenance
            .values()
            .filter(|m| m.id < 0)
            .cloned()
            .collect();
        engine.maintenance.retain(|id, _| *id >= 0);
        engine.policy_windows = stored_policy;
        engine.load_policy_windows(snapshot.now);
        for row in snapshot.incidents {
            engine.incidents.insert(
                row.id,
                Incident {
                    nodes: [(row.site.clone(), row.node.clone())].into(),
                    row,
                    active: BTreeSet::new(),
                    members: BTreeSet::new(),
                    root: None,
                },
            );
        }
        for link in snapshot.links {
            if let Some(inc) = engine.incidents.get_mut(&link.incident_id) {
                inc.nodes.insert((inc.row.site.clone(), link.node.clone()));
                inc.members.insert(link.alert_key);
            }
        }
        for (alert, incident) in snapshot.alerts {
            if dropped.contains(&alert.key) {
                engine.orphans.push(alert.clone());
            }
            let firing = alert.state == crate::rules::AlertState::Firing;
            let last = engine.describe(&alert);
            if let (Some(inc), Some(t)) =
                (incident.and_then(|id| engine.incidents.get_mut(&id)), &last)
                && inc.row.root_alert == alert.key
            {
                inc.root = Some(t.clone());
            }
            if let Some(inc) = incident.and_then(|id| engine.incidents.get_mut(&id)) {
                inc.members.insert(alert.key.clone());
                inc.nodes.insert((alert.site.clone(), alert.node.clone()));
                if firing {
                    inc.active.insert(alert.key.clone());
                }
            }
            let node_down = engine
                .rules
                .rules()
                .iter()
                .any(|r| r.name == alert.rule && r.node_down);
            if firing && node_down && incident.is_some() {
                engine
                    .down
                    .entry((alert.site.clone(), alert.node.clone()))
                    .or_default()
                    .insert(alert.key.clone());
            }
            engine.alerts.insert(
                alert.key,
                LiveAlert {
                    incident,
                    suppressed: alert.suppressed_by,
                    firing,
                    last: last.filter(|_| firing),
                },
            );
        }
        // An incident open with nothing firing (its alerts cleared while the collector was
        // down, or a flapping alert held it open) resolves on the first input.
        engine.unheld = engine
            .incidents
            .values()
            .filter(|i| i.row.state == IncidentState::Open && i.active.is_empty())
            .map(|i| i.row.id)
            .collect();
        engine.index = index::IncidentIndex::build(&engine.incidents);
        engine
    }

    /// Rebuild a live alert's firing transition from what the store kept and its rule.
    fn describe(&self, a: &ActiveAlert) -> Option<AlertTransition> {
        let rule = self.rules.rules().iter().find(|r| r.name == a.rule)?;
        Some(AlertTransition {
            key: a.key.clone(),
            rule: a.rule.clone(),
            site: a.site.clone(),
            node: a.node.clone(),
            labels: a.labels.clone(),
            state: a.state,
            severity: rule.severity,
            category: rule.category,
            value: None,
            summary: a.summary.clone(),
            description: String::new(),
            detail: a.detail.clone(),
            runbook: rule.runbook.clone(),
            source: crate::rules::AlertSource::of(&rule.condition),
            group_by: rule.group_by.clone(),
            node_down: rule.node_down,
            started_at: a.started_at,
            at: a.started_at,
        })
    }

    /// Resolve the incidents `new` found open with nothing firing.
    fn resolve_unheld(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        for id in std::mem::take(&mut self.unheld) {
            let Some(inc) = self.incidents.get(&id) else {
                continue;
            };
            if !inc.active.is_empty() || inc.row.state != IncidentState::Open {
                continue;
            }
            let t = AlertTransition {
                key: String::new(),
                summary: "nothing is firing any more".into(),
                detail: "its alerts cleared while tocsin was not running, or a flapping alert held it open across a restart".into(),
                ..inc.root.clone().unwrap_or_else(|| AlertTransition {
                    key: String::new(),
                    rule: String::new(),
                    site: inc.row.site.clone(),
                    node: inc.row.node.clone(),
                    labels: BTreeMap::new(),
                    state: crate::rules::AlertState::Resolved,
                    severity: inc.row.severity,
                    category: inc.row.category,
                    value: None,
                    summary: String::new(),
                    description: String::new(),
                    detail: String::new(),
                    runbook: None,
                    source: crate::rules::AlertSource::Internal,
                    group_by: Vec::new(),
                    node_down: false,
                    started_at: now,
                    at: now,
                })
            };
            self.alert_cleared(now, id, &t, effects);
        }
    }

    /// Resolve alerts whose rule was removed while the collector was down, so their
    /// incidents do not stay open forever.
    fn resolve_orphans(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        for a in std::mem::take(&mut self.orphans) {
            let t = AlertTransition {
                summary: format!("{} on {}: rule removed", a.rule, a.node),
                description: String::new(),
                detail: format!("rule {} no longer exists in the rule files", a.rule),
                key: a.key,
                rule: a.rule,
                site: a.site,
                node: a.node,
                labels: a.labels,
                state: crate::rules::AlertState::Resolved,
                severity: crate::rules::Severity::Info,
                category: crate::rules::Category::Configuration,
                value: None,
                runbook: None,
                source: crate::rules::AlertSource::Internal,
                group_by: Vec::new(),
                node_down: false,
                started_at: a.started_at,
                at: now,
            };
            self.apply_alert(now, t, effects);
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn rules(&self) -> &[Rule] {
        self.rules.rules()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Incidents not yet closed.
    pub fn open_incidents(&self) -> usize {
        self.incidents.len()
    }

    /// Alerts pending or firing.
    pub fn live_alerts(&self) -> usize {
        self.alerts.len()
    }

    /// The earliest time a [`Input::Tick`] has work that cannot wait for the next regular
    /// tick: a node-status alert's `for` running out. The collector ticks then, so a node
    /// that went offline opens its ticket at `for`, not up to a tick later.
    pub fn next_due(&self) -> Option<Millis> {
        self.rules.next_due()
    }

    /// Test invariant: correlation's index matches the incidents it indexes.
    #[cfg(test)]
    pub(crate) fn assert_index_consistent(&self) {
        assert_eq!(
            self.index,
            index::IncidentIndex::build(&self.incidents),
            "the incident index drifted from the incidents"
        );
    }

    /// Every node's row as a `Node` effect, without its report. The collector writes them at
    /// shutdown: its writer skips a report's row that brings nothing new, so the stored
    /// sequences and times may be behind the engine's until then.
    pub fn node_rows(&self) -> Vec<Effect> {
        self.nodes
            .iter()
            .map(|n| Effect::Node(Box::new(n.clone())))
            .collect()
    }

    /// Every node as the engine has it now, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRow> {
        self.nodes.iter()
    }

    /// Problems not yet resolved.
    pub fn open_problems(&self) -> usize {
        self.problems.len()
    }

    /// Move the engine's clock: time never runs backwards inside it.
    fn advance(&mut self, now: Millis) -> Millis {
        let now = now.max(self.clock);
        self.clock = now;
        now
    }

    /// Feed one input received at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) -> Outcome {
        let now = self.advance(now);
        let mut out = Outcome::default();
        if !self.orphans.is_empty() {
            self.resolve_orphans(now, &mut out.effects);
        }
        out.effects.append(&mut self.pending);
        if !self.unheld.is_empty() {
            self.resolve_unheld(now, &mut out.effects);
        }
        match input {
            Input::Report(report) => {
                let report: Arc<Report> = Arc::from(report);
                if !self.observe_report(now, &report, &mut out.effects) {
                    self.counters.duplicates += 1;
                    out.duplicate = true;
                    return out;
                }
                self.counters.reports += 1;
                for t in self.rules.on_report(&report, now) {
                    self.apply_alert(now, t, &mut out.effects);
                }
            }
            Input::Status { site, node, status } => {
                self.counters.statuses += 1;
                let state = status.state;
                self.observe_status(now, &site, &node, *status, &mut out.effects);
                for t in self.rules.on_status(now, &site, &node, state) {
                    self.apply_alert(now, t, &mut out.effects);
                }
            }
            Input::Tick => {
                for t in self.rules.tick(now) {
                    self.apply_alert(now, t, &mut out.effects);
                }
                self.release_suppressed(now, &mut out.effects);
                self.settle_flaps(now, &mut out.effects);
                self.close_verified(now, &mut out.effects);
                self.sla_tick(now, &mut out.effects);
                self.recent
                    .prune(now, crate::time::millis(self.policy.problem.window));
            }
        }
        out
    }

    /// Record a report on its node; false when it is a redelivered duplicate.
    fn observe_report(
        &mut self,
        now: Millis,
        report: &Arc<Report>,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let node = self.nodes.get_or_create(&report.site, &report.node, now);
        // A redelivery repeats seq and ts. An agent that lost its state file restarts
        // seq at 1 but with a newer ts, and is accepted.
        if let (Some(seq), Some(ts)) = (node.last_seq, node.last_ts)
            && report.seq <= seq
            && report.ts <= ts
        {
            return false;
        }
        node.kind = report.kind;
        node.via = report.via.clone();
        node.last_seq = Some(report.seq);
        node.last_ts = Some(report.ts);
        node.last_report_at = Some(now);
        if node.state != Presence::Online {
            node.state = Presence::Online;
            node.state_changed_at = now;
        }
        node.updated_at = now;
        // The report goes to the store with the row; the engine does not keep it.
        let row = NodeRow {
            last_report: Some(ReportBody::Decoded(Arc::clone(report))),
            ..node.clone()
        };
        effects.push(Effect::Node(Box::new(row)));
        true
    }

    fn observe_status(
        &mut self,
        now: Millis,
        site: &str,
        node: &str,
        status: Status,
        effects: &mut Vec<Effect>,
    ) {
        let row = if status.state == NodeState::Online {
            // Labels, parents and the common part of the inventory are shared with the nodes
            // that have equal ones.
            let inventory = status.inventory.as_ref().map(|i| self.nodes.inventory(i));
            let version = status.agent.map(|a| self.nodes.version(&a.version));
            let row = self
                .nodes
                .set_topology(site, node, status.labels, status.parents, now);
            if version.is_some() {
                row.agent_version = version;
            }
            // An equal inventory (a restarted agent's birth) keeps the node's texts, so the
            // store's writer does not rewrite the node's wide columns for it.
            if let Some(inventory) = inventory
                && row.inventory.as_ref() != Some(&inventory)
            {
                row.inventory = Some(inventory);
            }
            row
        } else {
            self.nodes.get_or_create(site, node, now)
        };
        let state = Presence::from(status.state);
        if row.state != state {
            row.state = state;
            row.state_changed_at = now;
        }
        row.updated_at = now;
        effects.push(Effect::Node(Box::new(row.clone())));
    }

    fn node_labels(&self, site: &str, node: &str) -> Arc<BTreeMap<String, String>> {
        self.nodes
            .get(site, node)
            .map(|n| n.labels.clone())
            .unwrap_or_default()
    }

    fn push_alert_row(
        &mut self,
        t: &AlertTransition,
        incident: Option<i64>,
        suppressed_by: Option<String>,
        effects: &mut Vec<Effect>,
    ) {
        self.counters.alert_transitions += 1;
        let id = take(&mut self.ids.alert);
        let flapping = self.is_flapping(&t.key);
        effects.push(Effect::Alert(Box::new(AlertRow {
            id,
            incident_id: incident,
            suppressed_by,
            flapping,
            transition: t.clone(),
        })));
    }
}
