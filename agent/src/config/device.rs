//! `[[device]]` tables: network gear (switches, routers, firewalls, printers) the agent probes by ICMP and SNMP.
//!
//! Each device is published as its own node (`kind = "network"`, `via` = the agent), with the
//! agent among its `parents`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_opt_duration, format_duration, ser_duration};

/// Default time one probe (ICMP echo, SNMP request) may take.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(2);

/// One `[[device]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceConfig {
    /// The device's node name (`[A-Za-z0-9._-]{1,64}`).
    pub name: String,
    /// Host name or IP address to probe.
    pub address: String,
    /// Timeout of one probe.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Nodes the device depends on besides the agent (which is always a parent).
    pub parents: Vec<String>,
    /// Labels announced in the device's birth status.
    pub labels: BTreeMap<String, String>,
}

/// A `[[device]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDevice {
    name: String,
    address: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Fill in the defaults of a device as written (`agent_interval` is the agent's `interval`).
pub fn resolve(file: FileDevice, agent_interval: Duration) -> Result<DeviceConfig, String> {
    Ok(DeviceConfig {
        name: file.name,
        address: file.address,
        timeout: file
            .timeout
            .unwrap_or_else(|| DEFAULT_DEVICE_TIMEOUT.min(agent_interval)),
        parents: file.parents,
        labels: file.labels,
    })
}

impl DeviceConfig {
    /// Check the rules of this device; the error is one line naming it.
    pub fn validate(&self, agent_interval: Duration) -> Result<(), String> {
        if !tocsin_protocol::is_valid_name(&self.name) {
            return Err(format!(
                "device name {:?} must match [A-Za-z0-9._-]{{1,64}}",
                self.name
            ));
        }
        if self.address.trim().is_empty() {
            return Err(format!("device {:?}: address must not be empty", self.name));
        }
        if self.timeout.is_zero() || self.timeout > agent_interval {
            return Err(format!(
                "device {:?}: timeout {} must be more than 0 and at most the interval ({})",
                self.name,
                format_duration(self.timeout),
                format_duration(agent_interval)
            ));
        }
        Ok(())
    }
}
