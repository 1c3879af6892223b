//! The retained node status: birth (online, with inventory), last will (offline), clean stop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Node state announced on `tocsin/v1/<site>/<node>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Birth message, published on every (re)connect.
    Online,
    /// Last will, published by the broker when the agent vanished.
    Offline,
    /// Published by the agent itself on a clean shutdown.
    Stopped,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Offline => "offline",
            NodeState::Stopped => "stopped",
        }
    }
}

/// A status payload. Only `v` and `state` are required (the last will carries nothing else).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub v: u32,
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Status {
    /// The last-will payload: `{"v":1,"state":"offline"}`.
    pub fn last_will() -> Self {
        Status {
            v: crate::VERSION,
            state: NodeState::Offline,
            ts: None,
            agent: None,
            inventory: None,
            parents: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// About the agent software that sent a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentInfo {
    pub version: String,
}

/// What a dispatcher needs to know about the environment of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Inventory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// For SNMP devices: sysDescr.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_descr: Option<String>,
    /// For SNMP devices: sysName.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_name: Option<String>,
}
