//! Network devices (`[[device]]`) probed by the agent: one [`DeviceProber`] per device turns ICMP and SNMP answers into the device's own report and birth status.
//!
//! A device is its own node: reports with `kind = "network"` and `via` = the agent, a birth
//! status with the agent first among its parents. Each cycle resolves the address (host names
//! every cycle, bounded by the timeout), then runs ICMP ([`icmp`]) and SNMP ([`snmp`]) side by
//! side. The report always carries a `reachability` check: ok when either answered, critical
//! when neither did, unknown when nothing could be probed; with SNMP configured, an `snmp`
//! check says how SNMP fared. Interface rates ([`interfaces`]) are computed between cycles.
//!
//! ```no_run
//! # async fn demo(agent: &tocsin_agent::AgentConfig) {
//! use tocsin_agent::devices::DeviceProber;
//! let pinger = tocsin_agent::devices::IcmpPinger::new(); // one ICMP socket for every device
//! let mut probers: Vec<DeviceProber> = agent
//!     .devices
//!     .iter()
//!     .map(|d| DeviceProber::new(d.clone(), agent).with_icmp(pinger.clone()))
//!     .collect();
//! for p in &mut probers {
//!     let report = p.probe(1).await; // publish on <root>/v1/<site>/<device>/report
//!     if p.inventory_changed() {
//!         let birth = p.birth(); // republish, retained, on <root>/v1/<site>/<device>/status
//!     }
//! }
//! # }
//! ```

pub mod icmp;
pub mod interfaces;
pub mod snmp;

use std::net::IpAddr;
use std::time::Duration;

use tocsin_protocol::{
    AgentInfo, CheckResult, CheckStatus, Inventory, MAX_PAYLOAD_BYTES, Metric, NodeKind, NodeState,
    Report, Status, VERSION,
};

pub use icmp::{IcmpOutcome, IcmpPinger, IcmpUnavailable};
use interfaces::{Sample, interface_metrics};
pub use snmp::{SnmpError, SnmpPoll, SnmpPoller};

use crate::collect::{now_ms, round2};
use crate::config::{AgentConfig, DeviceConfig, format_duration};

/// Every metric name a device report can carry (docs/METRICS.md lists them).
pub const DEVICE_METRICS: &[&str] = &[
    "icmp.loss_pct",
    "icmp.rtt_ms",
    "icmp.rtt_max_ms",
    "snmp.uptime_s",
    "snmp.response_ms",
    "if.admin_up",
    "if.oper_up",
    "if.speed_bps",
    "if.rx_bytes_per_s",
    "if.tx_bytes_per_s",
    "if.rx_errors_per_s",
    "if.tx_errors_per_s",
    "if.rx_discards_per_s",
    "if.tx_discards_per_s",
];
/// Name of the check every device report carries.
pub const REACHABILITY_CHECK: &str = "reachability";
/// Name of the SNMP check (devices with SNMP configured).
pub const SNMP_CHECK: &str = "snmp";
/// Room kept free in a report for everything but interface metrics.
const PAYLOAD_MARGIN: usize = 4 * 1024;

/// What ICMP gave in one cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum IcmpState {
    /// `icmp = false`.
    Off,
    /// No ICMP socket could be opened (the reason says how to fix it).
    Unavailable(String),
    Done(IcmpOutcome),
}

/// What SNMP gave in one cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpState {
    /// No community configured.
    Off,
    Answered {
        response_ms: f64,
        uptime_ticks: Option<u32>,
        interfaces: usize,
        /// The interface walk stopped early, or interfaces were left out of the report.
        problem: Option<String>,
    },
    Failed(String),
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn icmp_text(o: &IcmpOutcome) -> String {
    let (sent, got) = (o.sent, o.received());
    let mut text = match o.rtt_avg_ms() {
        None => format!("no answer to {}", plural(sent, "ICMP echo", "ICMP echoes")),
        Some(avg) if got >= sent => format!("{got}/{sent} ICMP echoes answered, rtt {avg} ms"),
        Some(avg) => format!(
            "{got}/{sent} ICMP echoes answered ({}% loss), rtt {avg} ms",
            o.loss_pct()
        ),
    };
    if let Some(e) = &o.send_error {
        text.push_str(&format!(" (send failed: {e})"));
    }
    text
}

/// The `reachability` check: ok when ICMP or SNMP answered, critical when what was probed
/// stayed silent, unknown when nothing could be probed.
pub fn reachability(icmp: &IcmpState, snmp: &SnmpState) -> CheckResult {
    let icmp_answered = matches!(icmp, IcmpState::Done(o) if o.received() > 0);
    let snmp_answered = matches!(snmp, SnmpState::Answered { .. });
    let probed = matches!(icmp, IcmpState::Done(_)) || !matches!(snmp, SnmpState::Off);
    let status = if icmp_answered || snmp_answered {
        CheckStatus::Ok
    } else if probed {
        CheckStatus::Critical
    } else {
        CheckStatus::Unknown
    };
    let mut parts = Vec::new();
    if let IcmpState::Done(o) = icmp {
        parts.push(icmp_text(o));
    }
    match snmp {
        SnmpState::Answered { response_ms, .. } => {
            parts.push(format!("SNMP answered in {response_ms} ms"));
        }
        SnmpState::Failed(reason) => parts.push(reason.clone()),
        SnmpState::Off => {}
    }
    let joint = if status == CheckStatus::Critical {
        " and "
    } else {
        "; "
    };
    let mut output = parts.join(joint);
    if let IcmpState::Unavailable(reason) = icmp {
        if !output.is_empty() {
            output.push_str("; ");
        }
        output.push_str(reason);
    }
    let latency_ms = match (icmp, snmp) {
        (IcmpState::Done(o), _) if o.received() > 0 => o.rtt_avg_ms(),
        (_, SnmpState::Answered { response_ms, .. }) => Some(*response_ms),
        _ => None,
    };
    CheckResult {
        name: REACHABILITY_CHECK.to_string(),
        status,
        output,
        latency_ms,
    }
}

/// The `snmp` check (none when SNMP is off): ok when answered, warning when the interface
/// walk was incomplete, critical with the reason when SNMP failed.
pub fn snmp_check(snmp: &SnmpState) -> Option<CheckResult> {
    let (status, output, latency_ms) = match snmp {
        SnmpState::Off => return None,
        SnmpState::Failed(reason) => (CheckStatus::Critical, reason.clone(), None),
        SnmpState::Answered {
            response_ms,
            uptime_ticks,
            interfaces,
            problem,
        } => {
            let uptime = uptime_ticks
                .map(|t| {
                    format!(
                        "sysUpTime {}",
                        format_duration(Duration::from_secs(u64::from(t) / 100))
                    )
                })
                .unwrap_or_else(|| "no sysUpTime".to_string());
            let mut text = format!("{uptime}, {interfaces} interfaces");
            let status = match problem {
                Some(p) => {
                    text = format!("{p} ({text})");
                    CheckStatus::Warning
                }
                None => CheckStatus::Ok,
            };
            (status, text, Some(*response_ms))
        }
    };
    Some(CheckResult {
        name: SNMP_CHECK.to_string(),
        status,
        output,
        latency_ms,
    })
}

/// Keep whole interfaces, in order, while the report stays under the payload limit.
/// Returns the metrics kept and how many interfaces were left out.
pub fn fit_interfaces(base_size: usize, groups: Vec<Vec<Metric>>) -> (Vec<Metric>, usize) {
    let budget = MAX_PAYLOAD_BYTES.saturating_sub(PAYLOAD_MARGIN);
    let mut size = base_size;
    let mut kept = Vec::new();
    let mut left_out = 0;
    for group in groups {
        let cost: usize = group
            .iter()
            .map(|m| serde_json::to_string(m).map(|s| s.len() + 1).unwrap_or(0))
            .sum();
        if left_out > 0 || size + cost > budget {
            left_out += 1;
            continue;
        }
        size += cost;
        kept.extend(group);
    }
    (kept, left_out)
}

/// How long SNMP may take per cycle: three timeouts, never more than the interval.
pub fn snmp_budget(every: Duration, timeout: Duration) -> Duration {
    (timeout * 3).min(every)
}

/// Probes one device; keep it for the whole run (it holds the previous counters).
#[derive(Debug)]
pub struct DeviceProber {
    device: DeviceConfig,
    site: String,
    agent_node: String,
    every: Duration,
    icmp: IcmpPinger,
    snmp: Option<SnmpPoller>,
    prev: Option<Sample>,
    resolved: Option<IpAddr>,
    sys_name: Option<String>,
    sys_descr: Option<String>,
    inventory_changed: bool,
}

impl DeviceProber {
    /// A prober for `device` run by the agent `agent` (site, node, interval). Opens nothing yet.
    pub fn new(device: DeviceConfig, agent: &AgentConfig) -> Self {
        let snmp = device
            .snmp
            .as_ref()
            .map(|s| SnmpPoller::new(s, device.timeout));
        DeviceProber {
            every: device.every(agent.interval),
            site: agent.site.clone(),
            agent_node: agent.node.clone(),
            icmp: IcmpPinger::new(),
            snmp,
            prev: None,
            resolved: None,
            sys_name: None,
            sys_descr: None,
            inventory_changed: false,
            device,
        }
    }

    /// Share one ICMP pinger (one socket per address family) between all devices.
    pub fn with_icmp(mut self, pinger: IcmpPinger) -> Self {
        self.icmp = pinger;
        self
    }

    /// The device's node name.
    pub fn name(&self) -> &str {
        &self.device.name
    }

    /// How often to call [`DeviceProber::probe`] (the device's interval or the agent's).
    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.device
    }

    fn interval_s(&self) -> u32 {
        u32::try_from(self.every.as_secs_f64().round() as u64).unwrap_or(u32::MAX)
    }

    /// The address to probe this cycle: the configured IP, or the host name resolved now.
    async fn resolve(&mut self) -> Result<IpAddr, String> {
        if let Some(ip) = self.device.ip() {
            return Ok(ip);
        }
        let host = self.device.host().to_string();
        let timeout = self.device.timeout;
        let found = match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), 0)))
            .await
        {
            Ok(Ok(mut addrs)) => addrs
                .next()
                .map(|a| a.ip())
                .ok_or_else(|| format!("cannot resolve {host}: no address")),
            Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
            Err(_) => Err(format!(
                "cannot resolve {host}: no answer within {}",
                format_duration(timeout)
            )),
        };
        if let Ok(ip) = found {
            self.resolved = Some(ip);
        }
        found
    }

    /// One probe cycle: the device's report (kind network, via the agent node, the given `seq`,
    /// `interval_s` = the device's interval), always with a `reachability` check. Takes at
    /// most about the timeout (name resolution) plus three timeouts (SNMP), ICMP running
    /// alongside.
    pub async fn probe(&mut self, seq: u64) -> Report {
        let ts = now_ms();
        let mut metrics = Vec::new();
        let mut checks = Vec::new();
        let ip = match self.resolve().await {
            Ok(ip) => ip,
            Err(reason) => {
                checks.push(CheckResult {
                    name: REACHABILITY_CHECK.to_string(),
                    status: CheckStatus::Unknown,
                    output: reason.clone(),
                    latency_ms: None,
                });
                if self.snmp.is_some() {
                    checks.push(CheckResult {
                        name: SNMP_CHECK.to_string(),
                        status: CheckStatus::Unknown,
                        output: format!("not probed: {reason}"),
                        latency_ms: None,
                    });
                }
                return self.report(seq, ts, metrics, checks);
            }
        };

        let device = &self.device;
        let pinger = &self.icmp;
        let spacing = icmp::spacing(self.every, device.timeout, device.icmp_count);
        let icmp_run = async {
            if !device.icmp {
                return IcmpState::Off;
            }
            match pinger
                .probe(ip, device.icmp_count, device.timeout, spacing)
                .await
            {
                Ok(outcome) => IcmpState::Done(outcome),
                Err(e) => IcmpState::Unavailable(e.0),
            }
        };
        let budget = snmp_budget(self.every, device.timeout);
        let poller = self.snmp.as_mut();
        let snmp_run = async move {
            match poller {
                Some(poller) => Some(poller.poll(ip, budget).await),
                None => None,
            }
        };
        let (icmp_state, snmp_result) = tokio::join!(icmp_run, snmp_run);

        if let IcmpState::Done(o) = &icmp_state {
            metrics.push(Metric::new("icmp.loss_pct", o.loss_pct()));
            if let (Some(avg), Some(max)) = (o.rtt_avg_ms(), o.rtt_max_ms()) {
                metrics.push(Metric::new("icmp.rtt_ms", avg));
                metrics.push(Metric::new("icmp.rtt_max_ms", max));
            }
        }
        let mut if_groups = Vec::new();
        let mut snmp_state = match snmp_result {
            None => SnmpState::Off,
            Some(Err(e)) => SnmpState::Failed(e.to_string()),
            Some(Ok(poll)) => {
                let response_ms = round2(poll.response.as_secs_f64() * 1000.0);
                if let Some(ticks) = poll.system.uptime_ticks {
                    metrics.push(Metric::new("snmp.uptime_s", f64::from(ticks) / 100.0));
                }
                metrics.push(Metric::new("snmp.response_ms", response_ms));
                self.learn(poll.system.sys_name.clone(), poll.system.sys_descr.clone());
                let sample = Sample::of(&poll.interfaces, poll.system.uptime_ticks, poll.at);
                if_groups = interface_metrics(&poll.interfaces, self.prev.as_ref(), &sample);
                self.prev = Some(sample);
                SnmpState::Answered {
                    response_ms,
                    uptime_ticks: poll.system.uptime_ticks,
                    interfaces: poll.interfaces.len(),
                    problem: poll.walk_problem,
                }
            }
        };

        // Interfaces go last, as many as the payload limit allows.
        let base = self.report(seq, ts, metrics.clone(), Vec::new());
        let base_size = serde_json::to_vec(&base).map(|b| b.len()).unwrap_or(0);
        let (if_metrics, left_out) = fit_interfaces(base_size, if_groups);
        if left_out > 0
            && let SnmpState::Answered { problem, .. } = &mut snmp_state
        {
            let note = format!(
                "{left_out} interfaces left out to keep the report under {} KiB",
                MAX_PAYLOAD_BYTES / 1024
            );
            *problem = Some(match problem.take() {
                Some(p) => format!("{p}; {note}"),
                None => note,
            });
        }
        metrics.extend(if_metrics);
        checks.push(reachability(&icmp_state, &snmp_state));
        checks.extend(snmp_check(&snmp_state));
        self.report(seq, ts, metrics, checks)
    }

    fn report(&self, seq: u64, ts: i64, metrics: Vec<Metric>, checks: Vec<CheckResult>) -> Report {
        Report {
            v: VERSION,
            node: self.device.name.clone(),
            site: self.site.clone(),
            kind: NodeKind::Network,
            seq,
            ts,
            interval_s: self.interval_s(),
            via: Some(self.agent_node.clone()),
            metrics: metrics
                .into_iter()
                .filter(|m| m.value.is_finite())
                .collect(),
            checks,
        }
    }

    /// Remember sysName / sysDescr; a change (or first answer) asks for a new birth.
    fn learn(&mut self, sys_name: Option<String>, sys_descr: Option<String>) {
        if sys_name.is_some() && sys_name != self.sys_name {
            self.sys_name = sys_name;
            self.inventory_changed = true;
        }
        if sys_descr.is_some() && sys_descr != self.sys_descr {
            self.sys_descr = sys_descr;
            self.inventory_changed = true;
        }
    }

    fn inventory(&self) -> Inventory {
        let ip = self.device.ip().or(self.resolved);
        let dns_name = self
            .device
            .ip()
            .is_none()
            .then(|| self.device.host().to_string());
        Inventory {
            hostname: self.sys_name.clone().or(dns_name),
            ip_addresses: ip.map(|ip| ip.to_string()).into_iter().collect(),
            sys_descr: self.sys_descr.clone(),
            sys_name: self.sys_name.clone(),
            ..Inventory::default()
        }
    }

    /// The device's birth status: online, now, the agent node first among the parents, then
    /// the configured ones; the configured labels; inventory from the last SNMP answer.
    pub fn birth(&self) -> Status {
        let mut parents = vec![self.agent_node.clone()];
        for p in &self.device.parents {
            if !parents.contains(p) {
                parents.push(p.clone());
            }
        }
        Status {
            v: VERSION,
            state: NodeState::Online,
            ts: Some(now_ms()),
            agent: Some(AgentInfo {
                version: crate::AGENT_VERSION.to_string(),
            }),
            inventory: Some(self.inventory()),
            parents,
            labels: self.device.labels.clone(),
        }
    }

    /// True once after a probe learnt a new sysName / sysDescr: republish [`DeviceProber::birth`].
    pub fn inventory_changed(&mut self) -> bool {
        std::mem::take(&mut self.inventory_changed)
    }
}

#[cfg(test)]
mod tests;
