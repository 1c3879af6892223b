//! The periodic health report an agent publishes for itself or a probed device.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of thing a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A host running the agent.
    #[default]
    Host,
    /// A network device probed by an agent (ICMP, SNMP).
    Network,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Host => "host",
            NodeKind::Network => "network",
        }
    }
}

/// One health report: `tocsin/v1/<site>/<node>/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Protocol version, always [`crate::VERSION`] when built by this crate.
    pub v: u32,
    pub node: String,
    pub site: String,
    #[serde(default)]
    pub kind: NodeKind,
    /// Grows by one per report per node, across agent restarts.
    pub seq: u64,
    /// Milliseconds since the Unix epoch at collection.
    pub ts: i64,
    /// The agent's reporting interval in seconds.
    #[serde(default)]
    pub interval_s: u32,
    /// For a probed device: the agent node that probes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
}

/// One sample: dotted lower-case name with the unit last, a finite value, optional labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Metric {
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Metric {
            name: name.into(),
            value,
            labels: BTreeMap::new(),
        }
    }

    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Result of one check, Nagios plugin convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl CheckStatus {
    /// Nagios exit code: 0 ok, 1 warning, 2 critical, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Warning => 1,
            CheckStatus::Critical => 2,
            CheckStatus::Unknown => 3,
        }
    }

    /// Inverse of [`CheckStatus::exit_code`]; any other code is `Unknown`.
    pub fn from_exit_code(code: i32) -> Self {
        match code {
            0 => CheckStatus::Ok,
            1 => CheckStatus::Warning,
            2 => CheckStatus::Critical,
            _ => CheckStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Unknown => "unknown",
        }
    }

    /// Parse the lower-case name (`ok|warning|critical|unknown`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(CheckStatus::Ok),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            "unknown" => Some(CheckStatus::Unknown),
            _ => None,
        }
    }
}

/// One check outcome inside a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    #[serde(default)]
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}
