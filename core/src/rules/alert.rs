//! What the rule stage hands on: alert transitions, their states and sources, series keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{Category, Condition, Severity};
use crate::time::Millis;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// What kind of condition an alert comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    /// A threshold on a metric (or a function of it).
    Metric,
    /// A check's status.
    Check,
    /// The node's status (its last will).
    Status,
    /// Data that stopped arriving.
    Absent,
    /// Not from a rule: an orphan resolved after its rule was removed.
    Internal,
}

impl AlertSource {
    pub fn of(condition: &Condition) -> AlertSource {
        match condition {
            Condition::Threshold { .. } => AlertSource::Metric,
            Condition::Check { .. } => AlertSource::Check,
            Condition::Status(_) => AlertSource::Status,
            Condition::Absent { .. } => AlertSource::Absent,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Metric => "metric",
            AlertSource::Check => "check",
            AlertSource::Status => "status",
            AlertSource::Absent => "absent",
            AlertSource::Internal => "internal",
        }
    }
}

/// One step of one alert: what the engine consumes and the store appends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTransition {
    /// Stable identity of the series: `rule:site/node{labels}`.
    pub key: String,
    pub rule: String,
    pub site: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub state: AlertState,
    pub severity: Severity,
    pub category: Category,
    pub value: Option<f64>,
    pub summary: String,
    /// The rule's `description`, rendered; empty when the rule has none.
    #[serde(default)]
    pub description: String,
    /// What was observed: the check output or the value against the threshold.
    pub detail: String,
    pub runbook: Option<String>,
    /// What kind of condition raised it (topology decides on it).
    pub source: AlertSource,
    /// The rule's `group_by` labels.
    pub group_by: Vec<String>,
    /// Firing means the node is down or unreachable.
    pub node_down: bool,
    /// When the condition first held for this episode.
    pub started_at: Millis,
    /// When this transition happened.
    pub at: Millis,
}

/// A live series, as restored from the store after a restart.
#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub key: String,
    pub rule: String,
    pub site: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub state: AlertState,
    pub started_at: Millis,
    /// Its latest summary and detail, so the engine can still describe it.
    pub summary: String,
    pub detail: String,
    /// The maintenance window holding it back, if any.
    pub suppressed_by: Option<String>,
}

/// `rule:site/node{k=v,...}`
pub fn alert_key(rule: &str, site: &str, node: &str, labels: &BTreeMap<String, String>) -> String {
    let mut key = format!("{rule}:{site}/{node}");
    if !labels.is_empty() {
        let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        key.push('{');
        key.push_str(&parts.join(","));
        key.push('}');
    }
    key
}
