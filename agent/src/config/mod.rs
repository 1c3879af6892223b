//! Agent configuration (`/etc/tocsin/agent.toml`): schema, defaults, validation, one-line errors.
//!
//! A config is read with [`AgentConfig::load`] / [`AgentConfig::from_toml_str`], or built in
//! code with [`AgentConfig::new`] (the collector's `quickstart` runs the agent in-process) and
//! then checked with [`AgentConfig::validate`]. Every error displays as one line naming the
//! file (or `config` for a string) and the problem, with the line number when TOML knows it.
//! A file load also reads the drop-ins beside it ([`dropin`]: `/etc/tocsin/agent.d/*.toml`).
//! Credentials files (password, TLS key, SNMP community) go through [`secret`], which refuses
//! files every user may open.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tocsin_protocol::{DEFAULT_TOPIC_ROOT, Status, is_valid_name};

pub mod check;
pub mod device;
pub mod dropin;
pub mod secret;

pub use check::{CheckConfig, CheckKind, FileCheck};
pub use device::{DeviceConfig, FileDevice};
pub use dropin::{Loaded, drop_in_dir};
pub use secret::{ExposedCredentials, SecretError};

/// Where the binary looks for its config unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tocsin/agent.toml";
/// Default broker URL.
pub const DEFAULT_BROKER_URL: &str = "mqtt://127.0.0.1:1883";
/// Default spool directory (holds `state.json`; later the disk spool).
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/tocsin/spool";
/// Default reporting interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default MQTT keep-alive.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default timeout of one check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reporting interval the protocol accepts (`interval_s` up to one day).
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Why a config could not be used. Displays as one line: `<file>: <problem>`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {}", path.display(), describe_io(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The drop-in directory exists but cannot be listed.
    #[error("{}: cannot read the drop-in directory: {}; make it readable by the agent or remove it", path.display(), describe_io(source))]
    DropInDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema.
    #[error("{origin}: {}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Parse {
        origin: String,
        line: Option<usize>,
        message: String,
    },
    /// The values parsed but break a rule (names, ranges, duplicates).
    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: String },
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// The whole agent configuration. Every field is public so callers can build one in code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    /// Site name (`[A-Za-z0-9._-]{1,64}`), part of every topic.
    pub site: String,
    /// Node name (`[A-Za-z0-9._-]{1,64}`); in a file it defaults to the hostname.
    pub node: String,
    /// Time between two reports.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// MQTT topic root (`<root>/v1/<site>/<node>/...`).
    pub topic_root: String,
    /// Nodes this node depends on (its switch, its router...).
    pub parents: Vec<String>,
    /// Free labels announced in the birth status (`criticality`, `service`...).
    pub labels: BTreeMap<String, String>,
    pub broker: BrokerConfig,
    pub spool: SpoolConfig,
    /// `[[check]]` tables.
    #[serde(rename = "check")]
    pub checks: Vec<CheckConfig>,
    /// `[[device]]` tables: network gear this agent probes (ICMP, SNMP).
    #[serde(rename = "device")]
    pub devices: Vec<DeviceConfig>,
}

/// Same schema, defaults and rules as a config file, so an agent config can be embedded in
/// another TOML document (e.g. a collector's quickstart section).
impl<'de> Deserialize<'de> for AgentConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let file = FileConfig::deserialize(d)?;
        AgentConfig::from_file(file).map_err(serde::de::Error::custom)
    }
}

/// `[broker]`: where and how to connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `mqtt://host:port` (port defaults to 1883).
    pub url: BrokerUrl,
    /// MQTT client id; `None` means `tocsin-agent-<site>-<node>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password (first line, trailing newline ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// For `mqtts://`: CA certificates (PEM) to trust instead of the system store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// For `mqtts://`: client certificate chain (PEM), with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// For `mqtts://`: the client certificate's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(
        serialize_with = "ser_duration",
        deserialize_with = "de_duration",
        alias = "keepalive"
    )]
    pub keep_alive: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: BrokerUrl {
                host: "127.0.0.1".to_string(),
                port: 1883,
                tls: false,
            },
            client_id: None,
            username: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }
}

/// `[spool]`: local state kept across restarts and reports waiting for the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of `state.json` (report sequence numbers) and `queue/` (unsent reports).
    pub dir: PathBuf,
    /// Most bytes of unsent reports kept; beyond, the oldest are dropped (`"64MiB"`, `"500KB"`).
    #[serde(
        rename = "max_size",
        serialize_with = "ser_size",
        deserialize_with = "de_size"
    )]
    pub max_bytes: u64,
}

/// Default spool limit: about 5 days of reports of a typical host at a 10 s interval.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from(DEFAULT_SPOOL_DIR),
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

/// Parse a size such as `"64MiB"`, `"500 KB"`, `"1GiB"` or `"4096"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit (examples: \"64MiB\", \"500KB\", \"1GiB\")"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: \"64MiB\", \"500KB\", \"1GiB\")"))?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("invalid size {s:?}"));
    }
    Ok(bytes as u64)
}

/// Format a size the way [`parse_size`] reads it (`"64MiB"`).
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s).map_err(serde::de::Error::custom)
}

fn ser_size<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_size(*bytes))
}

/// A parsed broker URL: `mqtt://host[:1883]` or, with TLS, `mqtts://host[:8883]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS to the broker.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parse `mqtt://host[:port]` (IPv6 as `mqtt://[::1]:1883`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "broker url {url:?} must look like mqtt://host:port"
            ));
        };
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" | "tls" => true,
            other => {
                return Err(format!(
                    "broker url {url:?}: unsupported scheme {other:?}; use mqtt://host:port or mqtts://host:port"
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(format!(
                "broker url {url:?}: put credentials in [broker] username and password_file, not in the url"
            ));
        }
        if rest.contains('/') || rest.contains('?') {
            return Err(format!(
                "broker url {url:?} must not have a path or query; use mqtt://host:port"
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(format!(
                    "broker url {url:?}: missing ']' after IPv6 address"
                ));
            };
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(format!("broker url {url:?}: bad port")),
                },
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("broker url {url:?} has no host"));
        }
        let port = match port {
            None if tls => 8883,
            None => 1883,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(format!(
                        "broker url {url:?}: port {p:?} must be a number from 1 to 65535"
                    ));
                }
            },
        };
        Ok(BrokerUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for BrokerUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BrokerUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Parse a duration such as `"500ms"`, `"10s"`, `"5m"`, `"1h 30m"`, `"3d"` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!(
            "invalid duration {s:?}: {e} (examples: \"500ms\", \"10s\", \"5m\", \"4h\", \"3d\")"
        )
    })
}

/// Format a duration the way [`parse_duration`] reads it (`"10s"`, `"1m 30s"`, `"250ms"`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    humantime::format_duration(d).to_string()
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// The file shape: like [`AgentConfig`] but `node` may be absent (then: the hostname), and
/// so may `site` in one file of several (a drop-in may set it; the merged config needs it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default = "default_interval", deserialize_with = "de_duration")]
    interval: Duration,
    #[serde(default = "default_topic_root")]
    topic_root: String,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    broker: BrokerConfig,
    #[serde(default)]
    spool: SpoolConfig,
    #[serde(default, rename = "check")]
    checks: Vec<FileCheck>,
    #[serde(default, rename = "device")]
    devices: Vec<FileDevice>,
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

fn default_topic_root() -> String {
    DEFAULT_TOPIC_ROOT.to_string()
}

/// The machine's hostname, as the default node name.
pub fn hostname() -> Option<String> {
    sysinfo::System::host_name().filter(|h| !h.is_empty())
}

impl AgentConfig {
    /// A config with every default: the given site and node, nothing to check.
    pub fn new(site: impl Into<String>, node: impl Into<String>) -> Self {
        AgentConfig {
            site: site.into(),
            node: node.into(),
            interval: DEFAULT_INTERVAL,
            topic_root: DEFAULT_TOPIC_ROOT.to_string(),
            parents: Vec::new(),
            labels: BTreeMap::new(),
            broker: BrokerConfig::default(),
            spool: SpoolConfig::default(),
            checks: Vec::new(),
            devices: Vec::new(),
        }
    }

    /// Read and validate a config file and its drop-ins (`agent.d/*.toml` beside
    /// `agent.toml`; see [`dropin`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Ok(Self::load_with_drop_ins(path)?.config)
    }

    /// [`AgentConfig::load`], also saying which drop-ins were read.
    pub fn load_with_drop_ins(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
        dropin::load(path.as_ref())
    }

    /// Parse and validate a config held in a string (errors name it `config`; no drop-ins).
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(s, "config")
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        Self::from_file(file).map_err(|problem| ConfigError::Invalid {
            origin: origin.to_string(),
            problem,
        })
    }

    /// Fill in the defaults that depend on other values, then check every rule.
    fn from_file(file: FileConfig) -> Result<Self, String> {
        let Some(site) = file.site else {
            return Err(
                "site is not set; set site = \"...\" (the site's name, [A-Za-z0-9._-]{1,64})"
                    .to_string(),
            );
        };
        let node = match file.node {
            Some(node) => node,
            None => {
                let host = hostname().ok_or_else(|| {
                    "node is not set and the hostname is unknown; set node = \"...\"".to_string()
                })?;
                if !is_valid_name(&host) {
                    return Err(format!(
                        "node is not set and the hostname {host:?} is not a valid node name ([A-Za-z0-9._-]{{1,64}}); set node = \"...\""
                    ));
                }
                host
            }
        };
        let interval = file.interval;
        let config = AgentConfig {
            site,
            node,
            interval,
            topic_root: file.topic_root,
            parents: file.parents,
            labels: file.labels,
            broker: file.broker,
            spool: file.spool,
            checks: file
                .checks
                .into_iter()
                .map(|c| check::resolve(c, interval))
                .collect::<Result<_, _>>()?,
            devices: file
                .devices
                .into_iter()
                .map(|d| device::resolve(d, interval))
                .collect::<Result<_, _>>()?,
        };
        config.check()?;
        Ok(config)
    }

    /// Check the rules a file load also checks (for configs built in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|problem| ConfigError::Invalid {
            origin: "config".to_string(),
            problem,
        })
    }

    fn check(&self) -> Result<(), String> {
        const NAME_RULE: &str = "must match [A-Za-z0-9._-]{1,64}";
        if !is_valid_name(&self.site) {
            return Err(format!("site {:?} {NAME_RULE}", self.site));
        }
        if !is_valid_name(&self.node) {
            return Err(format!("node {:?} {NAME_RULE}", self.node));
        }
        if self.interval < Duration::from_secs(1) || self.interval > MAX_INTERVAL {
            return Err(format!(
                "interval {} must be between 1s and 1d",
                format_duration(self.interval)
            ));
        }
        if self.topic_root.is_empty()
            || self.topic_root.starts_with('/')
            || self.topic_root.ends_with('/')
            || self.topic_root.contains(['+', '#', '\0'])
        {
            return Err(format!(
                "topic_root {:?} must be non-empty, without wildcards (+, #) or a leading/trailing '/'",
                self.topic_root
            ));
        }
        // Parents and labels follow the status payload rules; let the protocol say so.
        let probe = Status {
            parents: self.parents.clone(),
            labels: self.labels.clone(),
            ..Status::last_will()
        };
        if let Err(e) = probe.validate() {
            return Err(e.to_string());
        }
        if self.broker.keep_alive < Duration::from_secs(1)
            || self.broker.keep_alive > Duration::from_secs(u64::from(u16::MAX))
        {
            return Err(format!(
                "[broker] keep_alive {} must be between 1s and 18h",
                format_duration(self.broker.keep_alive)
            ));
        }
        if self.broker.url.host.is_empty() || self.broker.url.port == 0 {
            return Err(format!("[broker] url {} is incomplete", self.broker.url));
        }
        if let Some(id) = &self.broker.client_id
            && (id.is_empty() || id.len() > 256)
        {
            return Err("[broker] client_id must be 1 to 256 bytes".to_string());
        }
        let tls_files = [
            ("ca_file", &self.broker.ca_file),
            ("cert_file", &self.broker.cert_file),
            ("key_file", &self.broker.key_file),
        ];
        if !self.broker.url.tls
            && let Some((key, _)) = tls_files.iter().find(|(_, v)| v.is_some())
        {
            return Err(format!(
                "[broker] {key} is set but url {} does not use TLS; use mqtts://",
                self.broker.url
            ));
        }
        if self.broker.cert_file.is_some() != self.broker.key_file.is_some() {
            return Err("[broker] cert_file and key_file must be set together".to_string());
        }
        if self.broker.password_file.is_some() && self.broker.username.is_none() {
            return Err("[broker] password_file is set without username".to_string());
        }
        if self.spool.dir.as_os_str().is_empty() {
            return Err("[spool] dir must not be empty".to_string());
        }
        if self.spool.max_bytes < 64 * 1024 {
            return Err(format!(
                "[spool] max_size {} must be at least 64KiB",
                format_size(self.spool.max_bytes)
            ));
        }
        let mut seen = HashSet::new();
        for check in &self.checks {
            check.validate(self.interval)?;
            if !seen.insert(check.report_name()) {
                return Err(format!("check {:?} is defined twice", check.report_name()));
            }
        }
        let mut names = HashSet::new();
        names.insert(self.node.as_str());
        for device in &self.devices {
            device.validate(self.interval)?;
            if !names.insert(device.name.as_str()) {
                return Err(format!(
                    "device {:?}: the name is already used by the agent's node or another device",
                    device.name
                ));
            }
        }
        Ok(())
    }

    /// The MQTT client id: `[broker] client_id` or `tocsin-agent-<site>-<node>`.
    pub fn client_id(&self) -> String {
        self.broker
            .client_id
            .clone()
            .unwrap_or_else(|| format!("tocsin-agent-{}-{}", self.site, self.node))
    }

    /// `<topic_root>/v1/<site>/<node>/status`
    pub fn status_topic(&self) -> String {
        tocsin_protocol::status_topic(&self.topic_root, &self.site, &self.node)
    }

    /// `<topic_root>/v1/<site>/<node>/report`
    pub fn report_topic(&self) -> String {
        tocsin_protocol::report_topic(&self.topic_root, &self.site, &self.node)
    }

    /// `interval` in whole seconds, as reported in `interval_s`.
    pub fn interval_s(&self) -> u32 {
        u32::try_from(self.interval.as_secs_f64().round() as u64).unwrap_or(u32::MAX)
    }

    /// Path of the sequence-number state file.
    pub fn state_path(&self) -> PathBuf {
        self.spool.dir.join(crate::state::STATE_FILE)
    }

    /// This config as TOML (what [`AgentConfig::from_toml_str`] reads back).
    pub fn to_toml_string(&self) -> String {
        // Serialising plain strings, numbers, tables and arrays cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

/// A TOML syntax or schema error of `text` (read from `origin`), with its line when known.
fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::Parse {
        origin: origin.to_string(),
        line: e.span().map(|span| line_of(text, span.start)),
        message: one_line(e.message()),
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
