//! `[[device]]` tables: network gear (switches, routers, firewalls, printers) the agent probes by ICMP and SNMP.
//!
//! Each device is published as its own node (`kind = "network"`, `via` = the agent), with the
//! agent among its `parents`. A device is read as a flat [`FileDevice`], then [`resolve`]d:
//! defaults filled in and the SNMP community read from `snmp_community_file` (so a reload
//! re-reads it). [`DeviceConfig::validate`] checks every rule with a one-line error naming the
//! device. SNMP is on when a community is given; only SNMPv2c is supported by this version.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tocsin_protocol::Status;

use super::secret::{SecretError, read_secret};
use super::{de_opt_duration, describe_io, format_duration};

/// Default time one probe (ICMP echo, SNMP request) may take.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of ICMP echo requests per cycle.
pub const DEFAULT_ICMP_COUNT: u32 = 3;
/// Most ICMP echo requests per cycle.
pub const MAX_ICMP_COUNT: u32 = 20;
/// Default SNMP UDP port.
pub const DEFAULT_SNMP_PORT: u16 = 161;
/// Shortest and longest device interval (like the agent's).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Longest DNS name.
const MAX_HOST_NAME: usize = 253;

/// One `[[device]]`, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// The device's node name (`[A-Za-z0-9._-]{1,64}`).
    pub name: String,
    /// Host name or IP address to probe (IPv6 with or without brackets).
    pub address: String,
    /// Timeout of one probe (one ICMP echo, one SNMP request); at most the device's interval.
    pub timeout: Duration,
    /// How often the device is probed; `None`: every agent interval.
    pub interval: Option<Duration>,
    /// Send ICMP echo requests.
    pub icmp: bool,
    /// ICMP echo requests per cycle (1..=20).
    pub icmp_count: u32,
    /// SNMP polling; `None` when no community is configured.
    pub snmp: Option<SnmpConfig>,
    /// Nodes the device depends on besides the agent (which is always a parent).
    pub parents: Vec<String>,
    /// Labels announced in the device's birth status.
    pub labels: BTreeMap<String, String>,
}

/// SNMP settings of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpConfig {
    /// The community in effect (read from `community_file` at load, or given inline).
    pub community: SnmpCommunity,
    /// Where the community was read from; `None`: inline `snmp_community`.
    pub community_file: Option<PathBuf>,
    /// UDP port (default 161).
    pub port: u16,
    pub version: SnmpVersion,
}

impl SnmpConfig {
    /// SNMPv2c on port 161 with an inline community.
    pub fn v2c(community: impl Into<String>) -> Self {
        SnmpConfig {
            community: SnmpCommunity::new(community),
            community_file: None,
            port: DEFAULT_SNMP_PORT,
            version: SnmpVersion::V2c,
        }
    }
}

/// An SNMP community string. It is a password: `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SnmpCommunity(String);

impl SnmpCommunity {
    pub fn new(community: impl Into<String>) -> Self {
        SnmpCommunity(community.into())
    }

    /// The secret itself, for the SNMP request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SnmpCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnmpCommunity(***)")
    }
}

/// SNMP protocol version. Only v2c is supported by this agent version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnmpVersion {
    #[default]
    V2c,
}

impl SnmpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SnmpVersion::V2c => "2c",
        }
    }

    /// Parse `snmp_version` (`"2c"`); v1 and v3 get an error saying they are not supported.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "2c" | "v2c" => Ok(SnmpVersion::V2c),
            "1" | "v1" => Err(format!(
                "snmp_version {s:?}: SNMPv1 is not supported by this agent version; use \"2c\""
            )),
            "3" | "v3" => Err(format!(
                "snmp_version {s:?}: SNMPv3 is not supported by this agent version yet; use \"2c\""
            )),
            _ => Err(format!(
                "snmp_version {s:?} is unknown; this agent version supports \"2c\""
            )),
        }
    }
}

impl Serialize for SnmpVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SnmpVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Number(n) => n.to_string(),
        };
        SnmpVersion::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A `[[device]]` as written; [`resolve`] fills in the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDevice {
    name: String,
    address: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    interval: Option<Duration>,
    #[serde(default)]
    icmp: Option<bool>,
    #[serde(default)]
    icmp_count: Option<u32>,
    #[serde(default)]
    snmp_community_file: Option<PathBuf>,
    #[serde(default)]
    snmp_community: Option<SnmpCommunity>,
    #[serde(default)]
    snmp_port: Option<u16>,
    #[serde(default)]
    snmp_version: Option<SnmpVersion>,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl FileDevice {
    /// The device's name as written (for duplicate checks across config files).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Fill in the defaults of a device as written (`agent_interval` is the agent's `interval`)
/// and read its community file. Errors are one line naming the device.
pub fn resolve(file: FileDevice, agent_interval: Duration) -> Result<DeviceConfig, String> {
    let name = file.name;
    let every = file.interval.unwrap_or(agent_interval);
    let community = match (file.snmp_community_file, file.snmp_community) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "device {name:?}: set snmp_community_file or snmp_community, not both"
            ));
        }
        (Some(path), None) => Some((read_community_file(&name, &path)?, Some(path))),
        (None, Some(inline)) => Some((inline, None)),
        (None, None) => None,
    };
    let snmp = match community {
        Some((community, community_file)) => Some(SnmpConfig {
            community,
            community_file,
            port: file.snmp_port.unwrap_or(DEFAULT_SNMP_PORT),
            version: file.snmp_version.unwrap_or_default(),
        }),
        None => {
            if file.snmp_port.is_some() || file.snmp_version.is_some() {
                return Err(format!(
                    "device {name:?}: snmp_port / snmp_version are set but SNMP is off; set snmp_community_file to poll it"
                ));
            }
            None
        }
    };
    Ok(DeviceConfig {
        address: file.address,
        timeout: file
            .timeout
            .unwrap_or_else(|| DEFAULT_DEVICE_TIMEOUT.min(every)),
        interval: file.interval,
        icmp: file.icmp.unwrap_or(true),
        icmp_count: file.icmp_count.unwrap_or(DEFAULT_ICMP_COUNT),
        snmp,
        parents: file.parents,
        labels: file.labels,
        name,
    })
}

/// The community is the first line of the file (trailing `\r\n` ignored). The file is a
/// credential: one every user may open is refused ([`read_secret`]).
fn read_community_file(device: &str, path: &std::path::Path) -> Result<SnmpCommunity, String> {
    let bytes = read_secret(path).map_err(|e| match e {
        SecretError::Read { source, .. } => format!(
            "device {device:?}: snmp_community_file {}: {}",
            path.display(),
            describe_io(&source)
        ),
        SecretError::Exposed(e) => format!("device {device:?}: snmp_community_file {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!(
            "device {device:?}: snmp_community_file {}: not UTF-8 text",
            path.display()
        )
    })?;
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if first.is_empty() {
        return Err(format!(
            "device {device:?}: snmp_community_file {}: the first line (the community) is empty",
            path.display()
        ));
    }
    Ok(SnmpCommunity::new(first))
}

impl DeviceConfig {
    /// A device probed by ICMP only, every default (3 echoes, 2s timeout, agent interval).
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        DeviceConfig {
            name: name.into(),
            address: address.into(),
            timeout: DEFAULT_DEVICE_TIMEOUT,
            interval: None,
            icmp: true,
            icmp_count: DEFAULT_ICMP_COUNT,
            snmp: None,
            parents: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    /// How often this device is probed, given the agent's interval.
    pub fn every(&self, agent_interval: Duration) -> Duration {
        self.interval.unwrap_or(agent_interval)
    }

    /// The address without IPv6 brackets (`[::1]` -> `::1`), trimmed.
    pub fn host(&self) -> &str {
        let a = self.address.trim();
        a.strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(a)
    }

    /// The address as an IP when it is one (not a host name).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host().parse().ok()
    }

    /// Check the rules of this device; the error is one line naming it.
    pub fn validate(&self, agent_interval: Duration) -> Result<(), String> {
        if !tocsin_protocol::is_valid_name(&self.name) {
            return Err(format!(
                "device name {:?} must match [A-Za-z0-9._-]{{1,64}}",
                self.name
            ));
        }
        let name = &self.name;
        if self.address.trim().is_empty() {
            return Err(format!("device {name:?}: address must not be empty"));
        }
        if self.ip().is_none() && !is_host_name(self.host()) {
            return Err(format!(
                "device {name:?}: address {:?} must be an IP address or a host name (no port, no scheme)",
                self.address
            ));
        }
        let every = self.every(agent_interval);
        if let Some(interval) = self.interval
            && !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval)
        {
            return Err(format!(
                "device {name:?}: interval {} must be between 1s and 1d",
                format_duration(interval)
            ));
        }
        if self.timeout.is_zero() || self.timeout > every {
            return Err(format!(
                "device {name:?}: timeout {} must be more than 0 and at most the interval ({})",
                format_duration(self.timeout),
                format_duration(every)
            ));
        }
        if !(1..=MAX_ICMP_COUNT).contains(&self.icmp_count) {
            return Err(format!(
                "device {name:?}: icmp_count {} must be from 1 to {MAX_ICMP_COUNT}",
                self.icmp_count
            ));
        }
        match &self.snmp {
            None if !self.icmp => {
                return Err(format!(
                    "device {name:?}: nothing to probe: icmp = false and no SNMP community (set snmp_community_file)"
                ));
            }
            None => {}
            Some(snmp) => {
                if snmp.port == 0 {
                    return Err(format!(
                        "device {name:?}: snmp_port must be from 1 to 65535"
                    ));
                }
                if snmp.community.expose().is_empty() {
                    return Err(format!("device {name:?}: the SNMP community is empty"));
                }
            }
        }
        if self.parents.iter().any(|p| p == name) {
            return Err(format!(
                "device {name:?}: a device cannot be its own parent"
            ));
        }
        // Parents and labels follow the status payload rules; let the protocol say so.
        let probe = Status {
            parents: self.parents.clone(),
            labels: self.labels.clone(),
            ..Status::last_will()
        };
        probe
            .validate()
            .map_err(|e| format!("device {name:?}: {e}"))
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= MAX_HOST_NAME
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Written back as the keys a file uses; a community read from a file is not written out.
impl Serialize for DeviceConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            name: &'a str,
            address: &'a str,
            timeout: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            interval: Option<String>,
            icmp: bool,
            icmp_count: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            snmp_community_file: Option<&'a PathBuf>,
            #[serde(skip_serializing_if = "Option::is_none")]
            snmp_community: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            snmp_port: Option<u16>,
            #[serde(skip_serializing_if = "Option::is_none")]
            snmp_version: Option<SnmpVersion>,
            parents: &'a [String],
            labels: &'a BTreeMap<String, String>,
        }
        let snmp = self.snmp.as_ref();
        Out {
            name: &self.name,
            address: &self.address,
            timeout: format_duration(self.timeout),
            interval: self.interval.map(format_duration),
            icmp: self.icmp,
            icmp_count: self.icmp_count,
            snmp_community_file: snmp.and_then(|c| c.community_file.as_ref()),
            snmp_community: snmp
                .filter(|c| c.community_file.is_none())
                .map(|c| c.community.expose()),
            snmp_port: snmp.map(|c| c.port),
            snmp_version: snmp.map(|c| c.version),
            parents: &self.parents,
            labels: &self.labels,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentConfig;
    use crate::config::secret::tests::write_with_mode;

    const HEAD: &str = "site = \"dc1\"\nnode = \"agent-1\"\n";

    fn load(devices: &str) -> Result<AgentConfig, String> {
        AgentConfig::from_toml_str(&format!("{HEAD}{devices}")).map_err(|e| e.to_string())
    }

    fn device(toml: &str) -> DeviceConfig {
        let mut c = load(toml).expect("valid config");
        assert_eq!(c.devices.len(), 1);
        c.devices.remove(0)
    }

    fn refused(toml: &str, want: &str) {
        let e = load(toml).expect_err("config should be refused");
        assert!(e.contains(want), "{toml:?}\n  got:  {e}\n  want: {want}");
        assert!(!e.contains('\n'), "error is not one line: {e:?}");
    }

    fn community_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_with_mode(dir.path(), "community", text, 0o640);
        (dir, path)
    }

    #[test]
    fn defaults_are_icmp_only() {
        let d = device("[[device]]\nname = \"core-sw-1\"\naddress = \"10.0.0.1\"\n");
        assert_eq!(d.timeout, Duration::from_secs(2));
        assert_eq!(d.interval, None);
        assert_eq!(d.every(Duration::from_secs(10)), Duration::from_secs(10));
        assert!(d.icmp);
        assert_eq!(d.icmp_count, 3);
        assert_eq!(d.snmp, None);
        assert!(d.parents.is_empty() && d.labels.is_empty());
        assert_eq!(d.ip(), Some("10.0.0.1".parse().expect("ip")));
        assert_eq!(d, DeviceConfig::new("core-sw-1", "10.0.0.1"));
    }

    #[test]
    fn design_example_reads_the_community_file() {
        let (_dir, path) = community_file("s3cret\nignored second line\n");
        let d = device(&format!(
            "[[device]]\nname = \"core-sw-1\"\naddress = \"10.0.0.1\"\nsnmp_community_file = {:?}\n",
            path.display().to_string()
        ));
        let snmp = d.snmp.as_ref().expect("SNMP is on");
        assert_eq!(snmp.community.expose(), "s3cret");
        assert_eq!(snmp.community_file.as_deref(), Some(path.as_path()));
        assert_eq!((snmp.port, snmp.version), (161, SnmpVersion::V2c));
        // The secret never shows in debug output.
        assert!(!format!("{d:?}").contains("s3cret"));
        // CRLF files work too.
        let (_dir2, crlf) = community_file("windows\r\n");
        assert_eq!(
            read_community_file("x", &crlf).expect("readable").expose(),
            "windows"
        );
    }

    #[test]
    fn every_key_parses_and_round_trips() {
        let (_dir, path) = community_file("filecomm");
        let c = load(&format!(
            r#"
[[device]]
name = "core-sw-1"
address = "core-sw-1.example.net"
timeout = "500ms"
interval = "30s"
icmp = true
icmp_count = 5
snmp_community_file = {:?}
snmp_port = 1161
snmp_version = "2c"
parents = ["core-rtr"]
labels = {{ role = "core" }}
[[device]]
name = "printer"
address = "[2001:db8::7]"
icmp = false
snmp_community = "public"
snmp_version = "v2c"
"#,
            path.display().to_string()
        ))
        .expect("valid");
        let sw = &c.devices[0];
        assert_eq!(sw.timeout, Duration::from_millis(500));
        assert_eq!(sw.every(c.interval), Duration::from_secs(30));
        assert_eq!(sw.icmp_count, 5);
        assert_eq!(sw.ip(), None);
        assert_eq!(sw.host(), "core-sw-1.example.net");
        assert_eq!(sw.snmp.as_ref().map(|s| s.port), Some(1161));
        assert_eq!(sw.parents, vec!["core-rtr".to_string()]);
        assert_eq!(sw.labels["role"], "core");
        let printer = &c.devices[1];
        assert!(!printer.icmp);
        assert_eq!(printer.ip(), Some("2001:db8::7".parse().expect("ip")));
        assert_eq!(
            printer.snmp.as_ref().map(|s| s.community.expose()),
            Some("public")
        );

        // What we write, we read back; a community from a file is not written out.
        let text = c.to_toml_string();
        assert!(!text.contains("filecomm"), "{text}");
        let again = AgentConfig::from_toml_str(&text).expect("round trip");
        assert_eq!(again, c);
    }

    #[test]
    fn default_timeout_never_exceeds_the_interval() {
        let d = device("[[device]]\nname = \"d\"\naddress = \"h\"\ninterval = \"1s\"\n");
        assert_eq!(d.timeout, Duration::from_secs(1));
        let c =
            load("interval = \"1s\"\n[[device]]\nname = \"d\"\naddress = \"h\"\n").expect("valid");
        assert_eq!(c.devices[0].timeout, Duration::from_secs(1));
    }

    #[test]
    fn every_bad_device_has_its_one_line_error() {
        let d = "[[device]]\nname = \"sw\"\naddress = \"10.0.0.1\"\n";
        let cases: &[(String, &str)] = &[
            (
                "[[device]]\nname = \"bad name\"\naddress = \"h\"\n".into(),
                "device name \"bad name\" must match",
            ),
            (
                "[[device]]\nname = \"sw\"\naddress = \" \"\n".into(),
                "device \"sw\": address must not be empty",
            ),
            (
                "[[device]]\nname = \"sw\"\naddress = \"10.0.0.1:161\"\n".into(),
                "address \"10.0.0.1:161\" must be an IP address or a host name",
            ),
            (
                "[[device]]\nname = \"sw\"\naddress = \"udp://sw\"\n".into(),
                "must be an IP address or a host name",
            ),
            (
                format!("{d}timeout = \"20s\"\n"),
                "device \"sw\": timeout 20s must be more than 0 and at most the interval (10s)",
            ),
            (
                format!("{d}interval = \"5s\"\ntimeout = \"6s\"\n"),
                "timeout 6s must be more than 0 and at most the interval (5s)",
            ),
            (
                format!("{d}timeout = \"0s\"\n"),
                "timeout 0s must be more than 0",
            ),
            (
                format!("{d}interval = \"500ms\"\ntimeout = \"100ms\"\n"),
                "interval 500ms must be between 1s and 1d",
            ),
            (
                format!("{d}icmp_count = 0\n"),
                "icmp_count 0 must be from 1 to 20",
            ),
            (
                format!("{d}icmp_count = 21\n"),
                "icmp_count 21 must be from 1 to 20",
            ),
            (
                format!("{d}icmp = false\n"),
                "device \"sw\": nothing to probe: icmp = false and no SNMP community",
            ),
            (
                format!("{d}snmp_community = \"a\"\nsnmp_community_file = \"/x\"\n"),
                "set snmp_community_file or snmp_community, not both",
            ),
            (
                format!("{d}snmp_community_file = \"/nonexistent/tocsin-community\"\n"),
                "device \"sw\": snmp_community_file /nonexistent/tocsin-community: no such file",
            ),
            (
                format!("{d}snmp_community = \"\"\n"),
                "device \"sw\": the SNMP community is empty",
            ),
            (
                format!("{d}snmp_community = \"c\"\nsnmp_port = 0\n"),
                "snmp_port must be from 1 to 65535",
            ),
            (
                format!("{d}snmp_port = 1161\n"),
                "snmp_port / snmp_version are set but SNMP is off",
            ),
            (
                format!("{d}snmp_community = \"c\"\nsnmp_version = \"3\"\n"),
                "SNMPv3 is not supported by this agent version yet; use \"2c\"",
            ),
            (
                format!("{d}snmp_community = \"c\"\nsnmp_version = 1\n"),
                "SNMPv1 is not supported by this agent version; use \"2c\"",
            ),
            (
                format!("{d}snmp_community = \"c\"\nsnmp_version = \"2\"\n"),
                "snmp_version \"2\" is unknown",
            ),
            (
                format!("{d}parents = [\"sw\"]\n"),
                "a device cannot be its own parent",
            ),
            (
                format!("{d}parents = [\"bad parent\"]\n"),
                "device \"sw\": invalid parents",
            ),
            (
                format!("{d}labels = {{ \"bad key\" = \"x\" }}\n"),
                "device \"sw\": invalid labels",
            ),
            (
                format!("{d}community = \"c\"\n"),
                "unknown field `community`",
            ),
            (
                "[[device]]\nname = \"agent-1\"\naddress = \"h\"\n".into(),
                "device \"agent-1\": the name is already used",
            ),
            (format!("{d}{d}"), "device \"sw\": the name is already used"),
        ];
        for (toml, want) in cases {
            refused(toml, want);
        }
    }

    #[test]
    fn empty_community_file_is_refused() {
        let (_dir, path) = community_file("\nsecond\n");
        refused(
            &format!(
                "[[device]]\nname = \"sw\"\naddress = \"h\"\nsnmp_community_file = {:?}\n",
                path.display().to_string()
            ),
            "the first line (the community) is empty",
        );
    }

    #[test]
    fn world_readable_community_file_is_refused() {
        let (dir, _) = community_file("unused");
        let line = |path: &std::path::Path| {
            format!(
                "[[device]]\nname = \"sw\"\naddress = \"h\"\nsnmp_community_file = {:?}\n",
                path.display().to_string()
            )
        };
        let open = write_with_mode(dir.path(), "open", "public\n", 0o644);
        refused(
            &line(&open),
            &format!(
                "device \"sw\": snmp_community_file {}: readable by every user (mode 0644); the agent refuses world-readable credentials: chmod 0640 {}",
                open.display(),
                open.display()
            ),
        );
        for mode in [0o640, 0o600] {
            let private = write_with_mode(dir.path(), "private", "c0mm\n", mode);
            let d = device(&line(&private));
            assert_eq!(
                d.snmp.as_ref().map(|s| s.community.expose()),
                Some("c0mm"),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn host_names_and_addresses() {
        for ok in [
            "sw1",
            "sw-1.example.net",
            "sw_1.lan.",
            "10.0.0.1",
            "::1",
            "[fe80::1]",
        ] {
            let d = DeviceConfig::new("d", ok);
            assert!(d.validate(Duration::from_secs(10)).is_ok(), "{ok}");
        }
        for bad in ["-sw", "a..b", "sw 1", "h:1", "[::1]:161", "a/b"] {
            let d = DeviceConfig::new("d", bad);
            assert!(d.validate(Duration::from_secs(10)).is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_built_in_code_are_validated() {
        let mut d = DeviceConfig::new("sw", "127.0.0.1");
        d.snmp = Some(SnmpConfig::v2c("public"));
        d.validate(Duration::from_secs(10)).expect("valid");
        d.icmp = false;
        d.validate(Duration::from_secs(10))
            .expect("SNMP alone is enough");
        d.snmp = None;
        assert!(d.validate(Duration::from_secs(10)).is_err());
    }
}
