//! The records the engine keeps and hands to the store: nodes, alerts, incidents, tickets, events.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};
use tocsin_protocol::{Inventory, NodeKind, NodeState};

pub use super::inventory::NodeInventory;
use super::policy::{Level, Priority};
pub use super::report_body::ReportBody;
use super::shared::Shared;
use crate::rules::{AlertTransition, Category, Severity};
use crate::time::Millis;

/// Serialise what an `Arc` points to (serde's `rc` feature stays off).
fn ser_arc<T: ?Sized + Serialize, S: serde::Serializer>(
    v: &Arc<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.as_ref().serialize(s)
}

fn de_arc<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<T>, D::Error> {
    T::deserialize(d).map(Arc::new)
}

fn de_arc_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    String::deserialize(d).map(Arc::from)
}

fn ser_opt_arc<S: serde::Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

fn de_opt_arc<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    Option::<String>::deserialize(d).map(|v| v.map(Arc::from))
}

/// Whether a node's agent is there, as its last status (or report) said. Stored and shown as
/// the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Neither a status nor a report seen yet.
    Unknown,
    Online,
    Offline,
    Stopped,
}

impl Presence {
    /// The state a stored name stands for (`unknown` for a name it does not know).
    pub fn from_name(name: &str) -> Presence {
        match name {
            "online" => Presence::Online,
            "offline" => Presence::Offline,
            "stopped" => Presence::Stopped,
            _ => Presence::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Unknown => "unknown",
            Presence::Online => "online",
            Presence::Offline => "offline",
            Presence::Stopped => "stopped",
        }
    }
}

impl From<NodeState> for Presence {
    fn from(s: NodeState) -> Self {
        match s {
            NodeState::Online => Presence::Online,
            NodeState::Offline => Presence::Offline,
            NodeState::Stopped => Presence::Stopped,
        }
    }
}

impl std::fmt::Display for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node as last seen. The bulky parts are shared (`Arc`): the engine hands a copy of this
/// row to the store with every report, so a copy must be cheap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    /// Shared with the other rows of the site.
    #[serde(serialize_with = "ser_arc", deserialize_with = "de_arc_str")]
    pub site: Arc<str>,
    /// Shared with the node table's key.
    #[serde(serialize_with = "ser_arc", deserialize_with = "de_arc_str")]
    pub node: Arc<str>,
    pub kind: NodeKind,
    /// `online`, `offline`, `stopped`, or `unknown` before the first status.
    pub state: Presence,
    /// Shared between the nodes that run the same version (most of a fleet).
    #[serde(
        serialize_with = "ser_opt_arc",
        deserialize_with = "de_opt_arc",
        default
    )]
    pub agent_version: Option<Arc<str>>,
    #[serde(default)]
    pub inventory: Option<NodeInventory>,
    #[serde(serialize_with = "ser_arc", deserialize_with = "de_arc", default)]
    pub labels: Arc<BTreeMap<String, String>>,
    #[serde(serialize_with = "ser_arc", deserialize_with = "de_arc", default)]
    pub parents: Arc<Vec<String>>,
    pub via: Option<String>,
    pub last_seq: Option<u64>,
    pub last_ts: Option<Millis>,
    pub last_report_at: Option<Millis>,
    /// The report itself, only in the `Node` effect of the report that carried it: the
    /// engine does not keep it (at 50,000 nodes a report each is hundreds of MB), and the
    /// store keeps the stored one when a row comes without it.
    #[serde(default)]
    pub last_report: Option<ReportBody>,
    pub state_changed_at: Millis,
    pub first_seen: Millis,
    pub updated_at: Millis,
}

impl NodeRow {
    pub fn new(site: &str, node: &str, now: Millis) -> Self {
        Self::keyed(Arc::from(site), Arc::from(node), now)
    }

    fn keyed(site: Arc<str>, node: Arc<str>, now: Millis) -> Self {
        NodeRow {
            site,
            node,
            kind: NodeKind::Host,
            state: Presence::Unknown,
            agent_version: None,
            inventory: None,
            labels: Arc::default(),
            parents: Arc::default(),
            via: None,
            last_seq: None,
            last_ts: None,
            last_report_at: None,
            last_report: None,
            state_changed_at: now,
            first_seen: now,
            updated_at: now,
        }
    }
}

/// The node table, looked up by `&str` without building keys (it is hit once per report;
/// FxHash, as in the rule evaluator: node names are validated and come from agents).
///
/// Label sets and parent lists are shared between rows with equal ones: a fleet has few
/// distinct ones (a `BTreeMap` of 2-3 labels is a 544-byte node of its own, a third of a
/// row's heap at 50,000 nodes). Nodes with equal labels hold one `Arc`. So is the common
/// part of inventories (OS, kernel, CPU...; [`NodeInventory`]).
#[derive(Debug, Clone, Default)]
pub struct Nodes {
    /// Keys shared with the rows' `site` and `node`.
    by_site: FxHashMap<Arc<str>, FxHashMap<Arc<str>, NodeRow>>,
    labels: Shared<BTreeMap<String, String>>,
    parents: Shared<Vec<String>>,
    /// The common part of inventories ([`NodeInventory`]).
    inventories: Shared<String>,
    versions: Shared<str>,
}

impl Nodes {
    /// Set a node's labels and parents (from its birth), shared with rows that have equal ones.
    pub fn set_topology(
        &mut self,
        site: &str,
        node: &str,
        labels: BTreeMap<String, String>,
        parents: Vec<String>,
        now: Millis,
    ) -> &mut NodeRow {
        let labels = self.labels.value(labels);
        let parents = self.parents.value(parents);
        let row = self.get_or_create(site, node, now);
        row.labels = labels;
        row.parents = parents;
        row
    }

    /// An agent version, shared with the nodes that run the same one.
    pub fn version(&mut self, version: &str) -> Arc<str> {
        self.versions.of(version)
    }

    /// A node's inventory, its common part shared with the nodes that have an equal one.
    pub fn inventory(&mut self, inventory: &Inventory) -> NodeInventory {
        let (common, own) = NodeInventory::split(inventory);
        NodeInventory {
            common: self.inventories.value(common),
            own: own.into(),
        }
    }

    pub fn get(&self, site: &str, node: &str) -> Option<&NodeRow> {
        self.by_site.get(site)?.get(node)
    }

    /// Every node, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &NodeRow> {
        self.by_site.values().flat_map(|nodes| nodes.values())
    }

    /// A node by name at any site (the first found, sites in no particular order).
    pub fn find(&self, node: &str) -> Option<&NodeRow> {
        self.by_site.values().find_map(|nodes| nodes.get(node))
    }

    pub fn insert(&mut self, mut row: NodeRow) {
        if let Some((site, _)) = self.by_site.get_key_value(&*row.site) {
            row.site = Arc::clone(site);
        }
        row.labels = self.labels.share(row.labels);
        row.parents = self.parents.share(row.parents);
        if let Some(version) = row.agent_version.take() {
            row.agent_version = Some(self.versions.share(version));
        }
        if let Some(inventory) = row.inventory.as_mut() {
            inventory.common = self.inventories.share(Arc::clone(&inventory.common));
        }
        self.by_site
            .entry(Arc::clone(&row.site))
            .or_default()
            .insert(Arc::clone(&row.node), row);
    }

    /// The node's row, created (state `unknown`) when first seen.
    pub fn get_or_create(&mut self, site: &str, node: &str, now: Millis) -> &mut NodeRow {
        if !self.by_site.get(site).is_some_and(|n| n.contains_key(node)) {
            let site = match self.by_site.get_key_value(site) {
                Some((site, _)) => Arc::clone(site),
                None => Arc::from(site),
            };
            let node: Arc<str> = Arc::from(node);
            let row = NodeRow {
                labels: self.labels.value(BTreeMap::new()),
                parents: self.parents.value(Vec::new()),
                ..NodeRow::keyed(Arc::clone(&site), Arc::clone(&node), now)
            };
            self.by_site.entry(site).or_default().insert(node, row);
        }
        match self.by_site.get_mut(site).and_then(|n| n.get_mut(node)) {
            Some(row) => row,
            None => unreachable!("the node was inserted above"),
        }
    }
}

/// One stored alert transition (the `alerts` table is append-only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub incident_id: Option<i64>,
    /// Name of the maintenance window that suppressed it (no incident, no ticket).
    pub suppressed_by: Option<String>,
    /// The alert changes state too often; notifications about it are held.
    pub flapping: bool,
    #[serde(flatten)]
    pub transition: AlertTransition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Open,
    Resolved,
    Closed,
    /// Folded into another incident (its root cause turned out to be a symptom).
    Merged,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Resolved => "resolved",
            IncidentState::Closed => "closed",
            IncidentState::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(IncidentState::Open),
            "resolved" => Some(IncidentState::Resolved),
            "closed" => Some(IncidentState::Closed),
            "merged" => Some(IncidentState::Merged),
            _ => None,
        }
    }
}

/// One real-world failure: its alerts, its root cause, its ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub state: IncidentState,
    pub title: String,
    pub severity: Severity,
    pub category: Category,
    pub priority: Priority,
    pub impact: Level,
    pub urgency: Level,
    pub site: String,
    pub node: String,
    /// Alert key of the root cause.
    pub root_alert: String,
    /// The root cause in words.
    pub root_cause: String,
    /// Root rule, node and group labels: incidents with one signature are one problem.
    pub signature: String,
    /// `label=value,...` when alerts were grouped by a rule's `group_by` labels.
    pub group_key: Option<String>,
    /// Distinct nodes with alerts in this incident.
    pub nodes_affected: u32,
    /// Alerts linked as symptoms (beneath the root cause in the topology, or joined).
    pub symptoms: u32,
    /// An alert of it is flapping: notifications are held until it settles.
    pub flapping: bool,
    /// Set when merged into another incident.
    pub merged_into: Option<i64>,
    pub problem_id: Option<i64>,
    pub ticket_id: Option<i64>,
    pub opened_at: Millis,
    pub resolved_at: Option<Millis>,
    pub closed_at: Option<Millis>,
    pub updated_at: Millis,
}

/// Link of an alert to an incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentAlertRow {
    pub incident_id: i64,
    pub alert_key: String,
    /// `root`, `symptom` (beneath the root cause in the topology), or `related` (same node or group).
    pub role: String,
    pub node: String,
    pub linked_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    New,
    Acknowledged,
    InProgress,
    /// Waiting on a user or a vendor: the resolution clock pauses.
    Pending,
    Resolved,
    Closed,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::New => "new",
            TicketState::Acknowledged => "acknowledged",
            TicketState::InProgress => "in_progress",
            TicketState::Pending => "pending",
            TicketState::Resolved => "resolved",
            TicketState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "new" => Some(TicketState::New),
            "acknowledged" => Some(TicketState::Acknowledged),
            "in_progress" => Some(TicketState::InProgress),
            "pending" => Some(TicketState::Pending),
            "resolved" => Some(TicketState::Resolved),
            "closed" => Some(TicketState::Closed),
            _ => None,
        }
    }
}

/// A ticket: everything a dispatcher would have collected at intake, under a unique number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketRow {
    pub id: i64,
    /// `INC-000001`
    pub number: String,
    /// `incident` or `request`.
    pub kind: String,
    pub state: TicketState,
    pub priority: Priority,
    pub impact: Level,
    pub urgency: Level,
    pub category: Category,
    pub assignment_group: String,
    pub summary: String,
    pub description: String,
    /// Who reported it: for monitoring the node, site, agent and rule.
    pub reporter: serde_json::Value,
    /// The environment: inventory, labels, parents.
    pub environment: serde_json::Value,
    pub incident_id: Option<i64>,
    pub site: Option<String>,
    pub node: Option<String>,
    pub runbook: Option<String>,
    /// The problem record this ticket's incident belongs to, and its workaround once known.
    pub problem_id: Option<i64>,
    pub workaround: Option<String>,
    /// The person working on it (None: the assignment group's queue).
    pub assignee: Option<String>,
    /// What is affected: `{"nodes": [...], "services": [...]}`.
    pub affected: serde_json::Value,
    /// Similar past tickets and how they were resolved (newest first).
    pub similar: serde_json::Value,
    /// When the fault was first detected (or, for a person's report, when it started).
    pub detected_at: Millis,
    /// Resolution notes and cause code, from whoever resolved it.
    pub resolution: Option<String>,
    pub cause_code: Option<String>,
    /// SLA targets and clocks.
    pub sla: TicketSla,
    /// Highest escalation level reached (0: not escalated).
    pub escalation_level: u32,
    pub escalated_at: Option<Millis>,
    /// Times it was reopened.
    pub reopened: u32,
    /// Why it waits for an operator to close it instead of closing after verification
    /// (an operator commented on it or reopened it).
    pub close_held: Option<String>,
    pub opened_at: Millis,
    pub acknowledged_at: Option<Millis>,
    pub resolved_at: Option<Millis>,
    pub closed_at: Option<Millis>,
    pub updated_at: Millis,
}

/// A ticket's SLA: its targets (from its priority), the resolution clock (paused while
/// pending), when each target falls due and when it was breached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketSla {
    /// Time to acknowledge and time to resolve, ms of SLA time (None: no target for the priority).
    pub response_target_ms: Option<Millis>,
    pub resolution_target_ms: Option<Millis>,
    /// Calendar the targets count in (None: around the clock).
    pub calendar: Option<String>,
    /// Running stretches of the resolution clock.
    pub clock: super::sla::SlaClock,
    /// When the response target falls due (None once acknowledged).
    pub response_due_at: Option<Millis>,
    /// When 75% of the resolution target is reached (None once passed or while paused).
    pub resolution_warn_at: Option<Millis>,
    /// When the resolution target falls due (None while paused or once resolved).
    pub resolution_due_at: Option<Millis>,
    pub response_breached_at: Option<Millis>,
    pub resolution_warned_at: Option<Millis>,
    pub resolution_breached_at: Option<Millis>,
    /// Resolution time used up to the last pause or resolution, ms of SLA time.
    pub resolution_elapsed_ms: Millis,
    /// An escalation waiting for the next level's delay to pass.
    pub deferred: Option<DeferredEscalation>,
}

/// An escalation asked for before the next level's `after` delay passed since the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredEscalation {
    pub at: Millis,
    pub triggers: Vec<String>,
    pub reason: String,
}

/// A notification written to the durable outbox; the delivery task sends it and marks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRow {
    pub id: i64,
    /// Idempotency key sent with it (`<ticket number>:<event id>:<target>`): a receiver that
    /// sees a key twice (a send whose mark was lost in a crash) can drop the repeat.
    pub key: String,
    /// `webhook`, `email` or `mqtt`.
    pub channel: String,
    /// Name of the target in the policy's `[notify.<channel>.<name>]`.
    pub target: String,
    /// `ticket.escalated`, `ticket.opened`, ...
    pub event: String,
    pub ticket_id: Option<i64>,
    /// What is sent (for an escalation: the handover, the ticket's full record).
    pub payload: serde_json::Value,
    pub created_at: Millis,
}

/// One line of a ticket's audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketEventRow {
    pub id: i64,
    pub ticket_id: i64,
    pub at: Millis,
    /// `opened`, `alert_added`, `alert_cleared`, `priority_changed`, `resolved`, `reopened`, `closed`, ...
    pub kind: String,
    pub actor: String,
    pub message: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemState {
    Open,
    KnownError,
    Resolved,
}

impl ProblemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemState::Open => "open",
            ProblemState::KnownError => "known_error",
            ProblemState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ProblemState::Open),
            "known_error" => Some(ProblemState::KnownError),
            "resolved" => Some(ProblemState::Resolved),
            _ => None,
        }
    }
}

/// The underlying cause of recurring incidents of one signature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemRow {
    pub id: i64,
    /// `PRB-000001`
    pub number: String,
    pub state: ProblemState,
    pub signature: String,
    pub rule: String,
    pub site: String,
    pub node: String,
    pub group_key: Option<String>,
    pub title: String,
    pub category: Category,
    /// Knowledge-base reference (the rule's runbook).
    pub kb: Option<String>,
    pub workaround: Option<String>,
    pub incident_count: u32,
    pub opened_at: Millis,
    pub last_incident_at: Millis,
    pub known_error_at: Option<Millis>,
    pub resolved_at: Option<Millis>,
    pub updated_at: Millis,
}

/// Link of an incident to its problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemIncidentRow {
    pub problem_id: i64,
    pub incident_id: i64,
    pub linked_at: Millis,
}

/// A maintenance window: alerts of matching nodes open no incidents while it lasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRow {
    pub id: i64,
    pub name: String,
    /// Keys `site`, `node`, `labels.<key>` (values may use `*`); empty matches every node.
    #[serde(rename = "match")]
    pub match_: BTreeMap<String, String>,
    pub starts_at: Millis,
    pub ends_at: Millis,
    /// Repeats every this many ms from `starts_at` (e.g. weekly), when set.
    pub every_ms: Option<Millis>,
    pub reason: String,
    /// `policy` or who asked for it through the API.
    pub created_by: String,
    pub created_at: Millis,
    /// Set when ended early by an operator.
    pub cancelled_at: Option<Millis>,
}

/// What the engine asks the edges to do. Rows are upserts by primary key, except alerts and
/// ticket events, which are appended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Node(Box<NodeRow>),
    Alert(Box<AlertRow>),
    Incident(Box<IncidentRow>),
    IncidentAlert(IncidentAlertRow),
    Ticket(Box<TicketRow>),
    TicketEvent(TicketEventRow),
    Problem(Box<ProblemRow>),
    ProblemIncident(ProblemIncidentRow),
    Maintenance(Box<MaintenanceRow>),
    Notification(Box<NotificationRow>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equal_labels_and_parents_are_shared_between_rows() {
        let mut nodes = Nodes::default();
        let web = labels(&[("criticality", "high"), ("service", "web")]);
        nodes.set_topology("s", "a", web.clone(), vec!["sw-1".into()], 1);
        nodes.set_topology("s", "b", web.clone(), vec!["sw-1".into()], 1);
        nodes.set_topology("s", "c", labels(&[("service", "db")]), vec![], 1);
        let row = |nodes: &Nodes, n: &str| nodes.get("s", n).cloned().expect("row");
        let (a, b, c) = (row(&nodes, "a"), row(&nodes, "b"), row(&nodes, "c"));
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(Arc::ptr_eq(&a.parents, &b.parents));
        assert!(!Arc::ptr_eq(&a.labels, &c.labels));
        assert_eq!(*a.labels, web);
        assert_eq!(*c.labels, labels(&[("service", "db")]));
        assert!(c.parents.is_empty());

        // A row restored from the store joins the shared values too.
        let mut restored = NodeRow::new("s", "d", 1);
        restored.labels = Arc::new(web.clone());
        nodes.insert(restored);
        assert!(Arc::ptr_eq(&row(&nodes, "d").labels, &a.labels));
        // A node first seen without labels shares the empty set.
        nodes.get_or_create("s", "e", 1);
        assert!(Arc::ptr_eq(&row(&nodes, "e").parents, &c.parents));
        // The rows of a site hold one site name, restored ones too; another site its own.
        for n in ["b", "c", "d", "e"] {
            assert!(Arc::ptr_eq(&row(&nodes, n).site, &a.site), "{n}");
        }
        nodes.get_or_create("t", "a", 1);
        let other = nodes.get("t", "a").expect("t/a");
        assert!(!Arc::ptr_eq(&other.site, &a.site));
        assert_eq!((&*other.site, &*other.node), ("t", "a"));
        assert_eq!(nodes.iter().count(), 6);
    }

    #[test]
    fn label_sets_no_row_holds_are_swept() {
        let mut nodes = Nodes::default();
        // One node relabelled many times: the old sets go once the set has grown enough.
        for i in 0..1_000 {
            nodes.set_topology("s", "a", labels(&[("build", &i.to_string())]), vec![], 1);
        }
        assert!(nodes.labels.len() < 200, "{}", nodes.labels.len());
        let a = nodes.get("s", "a").expect("row");
        assert_eq!(a.labels.get("build").map(String::as_str), Some("999"));
    }

    /// The common part (OS, CPU...) is one text for every node that has it; the node's own
    /// part is its own. Rows restored from the store join the shared texts too.
    #[test]
    fn inventories_share_their_common_part_between_nodes() {
        let mut nodes = Nodes::default();
        let host = |name: &str, ip: &str| Inventory {
            hostname: Some(name.into()),
            ip_addresses: vec![ip.into()],
            ..super::super::inventory::tests::host_inventory()
        };
        let a = nodes.inventory(&host("a", "10.0.0.1"));
        let b = nodes.inventory(&host("b", "10.0.0.2"));
        assert!(Arc::ptr_eq(&a.common, &b.common));
        assert!(!Arc::ptr_eq(&a.own, &b.own));
        assert_eq!(b.decode(), host("b", "10.0.0.2"));
        let other = nodes.inventory(&Inventory {
            kernel: Some("6.12.0".into()),
            ..host("c", "10.0.0.3")
        });
        assert!(!Arc::ptr_eq(&a.common, &other.common));
        assert_eq!(other.decode().kernel.as_deref(), Some("6.12.0"));

        let mut restored = NodeRow::new("s", "d", 1);
        restored.inventory = Some(NodeInventory::new(&host("d", "10.0.0.4")));
        nodes.insert(restored);
        let d = nodes.get("s", "d").and_then(|n| n.inventory.clone());
        let d = d.expect("d's inventory");
        assert!(Arc::ptr_eq(&d.common, &a.common));
        assert_eq!(d.decode(), host("d", "10.0.0.4"));
    }

    /// The agent version is one `Arc` for the nodes that run it (rows restored from the store
    /// join it); state and version serialise as the texts snapshots and the store have always
    /// held, and rows serialised before read back.
    #[test]
    fn versions_are_shared_and_state_and_version_serialise_as_texts() {
        let mut nodes = Nodes::default();
        let v = nodes.version("0.1.0");
        assert!(Arc::ptr_eq(&v, &nodes.version("0.1.0")));
        assert!(!Arc::ptr_eq(&v, &nodes.version("0.2.0")));
        let mut restored = NodeRow::new("s", "d", 1);
        restored.agent_version = Some(Arc::from("0.1.0"));
        restored.state = Presence::Stopped;
        nodes.insert(restored);
        let d = nodes.get("s", "d").expect("row");
        assert!(d.agent_version.as_ref().is_some_and(|r| Arc::ptr_eq(r, &v)));

        let json = serde_json::to_value(d).expect("serialise");
        assert_eq!(json["state"], "stopped");
        assert_eq!(json["agent_version"], "0.1.0");
        for (name, state) in [
            ("unknown", Presence::Unknown),
            ("online", Presence::Online),
            ("offline", Presence::Offline),
            ("stopped", Presence::Stopped),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(Presence::from_name(name), state);
            let mut old = json.clone();
            old["state"] = name.into();
            old["agent_version"] = serde_json::Value::Null;
            let back: NodeRow = serde_json::from_value(old).expect("a row as snapshots hold it");
            assert_eq!((back.state, back.agent_version), (state, None));
        }
        assert_eq!(Presence::from_name("rebooting"), Presence::Unknown);
        let bad = serde_json::json!({"state": "rebooting"});
        assert!(serde_json::from_value::<Presence>(bad["state"].clone()).is_err());
    }
}
