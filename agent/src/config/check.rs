//! `[[check]]` tables: the service checks an agent runs (kind, target, per-check interval and timeout, kind options).
//!
//! A check is read as a flat [`FileCheck`] (every key of every kind, all optional), then
//! [`resolve`]d: defaults filled in, status ranges and regexes parsed. [`CheckConfig::validate`]
//! then refuses keys that do not belong to the kind and values out of range, with a one-line
//! error naming the check (`check "tcp:db": key body_contains applies only to http checks`).
//! Configs built in code go through the same [`CheckConfig::validate`].

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DEFAULT_CHECK_TIMEOUT, de_opt_duration, format_duration, ser_duration};
pub use crate::checks::http::StatusRanges;
pub use crate::checks::process::ProcessPattern;

/// Longest check name the protocol accepts in a report (`<kind>:<name>`).
pub const MAX_CHECK_NAME: usize = 128;
/// `http`: status codes accepted when `expect_status` is not set.
pub const DEFAULT_EXPECT_STATUS: RangeInclusive<u16> = 200..=399;
/// `http`: days of certificate validity left under which the check turns `warning`.
pub const DEFAULT_CERT_WARNING_DAYS: u32 = 14;
/// `http`: days of certificate validity left under which the check turns `critical`.
pub const DEFAULT_CERT_CRITICAL_DAYS: u32 = 3;
/// `process`: fewest matching processes when `min` is not set.
pub const DEFAULT_PROCESS_MIN: u32 = 1;

/// One `[[check]]`. The report names it `<kind>:<name>` (e.g. `tcp:postgres`).
///
/// Kind options are `None` (or empty) when not set; the accessors ([`CheckConfig::expect_status`],
/// [`CheckConfig::tls_verify`]...) give the value in force. [`CheckConfig::validate`] refuses
/// options set on a kind they do not belong to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckConfig {
    pub name: String,
    pub kind: CheckKind,
    /// What to check. `tcp`: `host:port`; `http`: an `http://` or `https://` URL; `process`:
    /// the process name (empty when `pattern` is set); `systemd`: the unit; `command`: empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// How often the check runs; `None`: every agent interval.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub interval: Option<Duration>,
    /// At most the check's interval. In a file it defaults to 5s, or the interval when shorter.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// `http`: accepted status codes (default 200-399).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<StatusRanges>,
    /// `http`: a substring the first 1 MiB of the body must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// `http` with `https://`: extra CA certificates (PEM) trusted besides the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `http` with `https://`: verify the server certificate (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// `http` with `https://`: `warning` when the certificate has fewer days left (default 14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_warning_days: Option<u32>,
    /// `http` with `https://`: `critical` when the certificate has fewer days left (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_critical_days: Option<u32>,
    /// `process`: regex matched against the full command line (instead of `target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<ProcessPattern>,
    /// `process`: fewest matching processes that are fine (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// `process`: most matching processes that are fine (default: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// `command`: the plugin and its arguments; `argv[0]` is an absolute path or a name in PATH.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// A `[[check]]` as written: every key of every kind; [`resolve`] sorts them out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    name: String,
    kind: CheckKind,
    #[serde(default)]
    target: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default)]
    expect_status: Option<RawStatus>,
    #[serde(default)]
    body_contains: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    tls_verify: Option<bool>,
    #[serde(default)]
    cert_warning_days: Option<u32>,
    #[serde(default)]
    cert_critical_days: Option<u32>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    min: Option<u32>,
    #[serde(default)]
    max: Option<u32>,
    #[serde(default)]
    command: Option<Vec<String>>,
}

impl FileCheck {
    /// `<kind>:<name>`, as the report names the check (for duplicate checks across files).
    pub(crate) fn report_name(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// Fill in the defaults of a check as written (`agent_interval` is the agent's `interval`)
/// and parse its status ranges and regex. The error is one line naming the check.
pub fn resolve(file: FileCheck, agent_interval: Duration) -> Result<CheckConfig, String> {
    let report_name = format!("{}:{}", file.kind.as_str(), file.name);
    let every = file.interval.unwrap_or(agent_interval);
    let expect_status = match file.expect_status {
        Some(raw) => Some(
            StatusRanges::parse_items(&raw.0).map_err(|e| format!("check {report_name:?}: {e}"))?,
        ),
        None => None,
    };
    let pattern = match file.pattern {
        Some(p) => {
            Some(ProcessPattern::new(&p).map_err(|e| format!("check {report_name:?}: {e}"))?)
        }
        None => None,
    };
    let command = match file.command {
        Some(argv) if argv.is_empty() => {
            return Err(format!(
                "check {report_name:?}: command must name a program: command = [\"/path/to/plugin\", \"arg\", ...]"
            ));
        }
        Some(argv) => argv,
        None => Vec::new(),
    };
    Ok(CheckConfig {
        name: file.name,
        kind: file.kind,
        target: file.target.unwrap_or_default(),
        interval: file.interval,
        timeout: file
            .timeout
            .unwrap_or_else(|| DEFAULT_CHECK_TIMEOUT.min(every)),
        expect_status,
        body_contains: file.body_contains,
        ca_file: file.ca_file,
        tls_verify: file.tls_verify,
        cert_warning_days: file.cert_warning_days,
        cert_critical_days: file.cert_critical_days,
        pattern,
        min: file.min,
        max: file.max,
        command,
    })
}

impl CheckConfig {
    /// A check of `kind` on `target` with the default timeout and no options.
    fn base(name: impl Into<String>, kind: CheckKind, target: impl Into<String>) -> Self {
        CheckConfig {
            name: name.into(),
            kind,
            target: target.into(),
            interval: None,
            timeout: DEFAULT_CHECK_TIMEOUT,
            expect_status: None,
            body_contains: None,
            ca_file: None,
            tls_verify: None,
            cert_warning_days: None,
            cert_critical_days: None,
            pattern: None,
            min: None,
            max: None,
            command: Vec::new(),
        }
    }

    /// A TCP connect check with the default timeout.
    pub fn tcp(name: impl Into<String>, target: impl Into<String>) -> Self {
        Self::base(name, CheckKind::Tcp, target)
    }

    /// An HTTP(S) GET of `url` with the default timeout, expecting a status of 200-399.
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::base(name, CheckKind::Http, url)
    }

    /// At least one process whose name is exactly `process_name`.
    pub fn process(name: impl Into<String>, process_name: impl Into<String>) -> Self {
        Self::base(name, CheckKind::Process, process_name)
    }

    /// At least one process whose full command line matches `pattern`.
    pub fn process_matching(name: impl Into<String>, pattern: ProcessPattern) -> Self {
        let mut check = Self::base(name, CheckKind::Process, "");
        check.pattern = Some(pattern);
        check
    }

    /// The state of a systemd unit (`.service` is added when the unit has no suffix).
    pub fn systemd(name: impl Into<String>, unit: impl Into<String>) -> Self {
        Self::base(name, CheckKind::Systemd, unit)
    }

    /// A Nagios/Icinga plugin: `argv[0]` (absolute path or name in PATH) and its arguments.
    pub fn command<I, S>(name: impl Into<String>, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut check = Self::base(name, CheckKind::Command, "");
        check.command = argv.into_iter().map(Into::into).collect();
        check
    }

    /// The check name as it appears in a report: `<kind>:<name>`.
    pub fn report_name(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }

    /// How often this check runs, given the agent's interval.
    pub fn every(&self, agent_interval: Duration) -> Duration {
        self.interval.unwrap_or(agent_interval)
    }

    /// `http`: the accepted status codes (`expect_status`, default 200-399).
    pub fn expect_status(&self) -> StatusRanges {
        self.expect_status
            .clone()
            .unwrap_or_else(|| StatusRanges::from(DEFAULT_EXPECT_STATUS))
    }

    /// `http`: whether the server certificate is verified (`tls_verify`, default true).
    pub fn tls_verify(&self) -> bool {
        self.tls_verify.unwrap_or(true)
    }

    /// `http`: `cert_warning_days`, default 14.
    pub fn cert_warning_days(&self) -> u32 {
        self.cert_warning_days.unwrap_or(DEFAULT_CERT_WARNING_DAYS)
    }

    /// `http`: `cert_critical_days`, default 3.
    pub fn cert_critical_days(&self) -> u32 {
        self.cert_critical_days
            .unwrap_or(DEFAULT_CERT_CRITICAL_DAYS)
    }

    /// `process`: `min`, default 1.
    pub fn process_min(&self) -> u32 {
        self.min.unwrap_or(DEFAULT_PROCESS_MIN)
    }

    /// Check the rules of this check; the error is one line naming it.
    pub fn validate(&self, agent_interval: Duration) -> Result<(), String> {
        let report_name = self.report_name();
        if self.name.is_empty()
            || report_name.len() > MAX_CHECK_NAME
            || self.name.chars().any(char::is_control)
        {
            return Err(format!(
                "check name {:?} must be 1 to {} printable characters",
                self.name,
                MAX_CHECK_NAME - self.kind.as_str().len() - 1
            ));
        }
        self.refuse_foreign_keys()
            .map_err(|e| format!("check {report_name:?}: {e}"))?;
        let every = self.every(agent_interval);
        if every < Duration::from_secs(1) || every > Duration::from_secs(86_400) {
            return Err(format!(
                "check {report_name:?}: interval {} must be between 1s and 1d",
                format_duration(every)
            ));
        }
        if self.timeout.is_zero() || self.timeout > every {
            return Err(format!(
                "check {report_name:?}: timeout {} must be more than 0 and at most the interval ({})",
                format_duration(self.timeout),
                format_duration(every)
            ));
        }
        let kind_rules = match self.kind {
            CheckKind::Tcp => self.validate_tcp(),
            CheckKind::Http => self.validate_http(),
            CheckKind::Process => self.validate_process(),
            CheckKind::Systemd => self.validate_systemd(),
            CheckKind::Command => self.validate_command(),
        };
        kind_rules.map_err(|e| format!("check {report_name:?}: {e}"))
    }

    /// Options set on a kind they do not belong to.
    fn refuse_foreign_keys(&self) -> Result<(), String> {
        use CheckKind::{Command, Http, Process};
        let keys: [(&str, bool, CheckKind); 10] = [
            ("expect_status", self.expect_status.is_some(), Http),
            ("body_contains", self.body_contains.is_some(), Http),
            ("ca_file", self.ca_file.is_some(), Http),
            ("tls_verify", self.tls_verify.is_some(), Http),
            ("cert_warning_days", self.cert_warning_days.is_some(), Http),
            (
                "cert_critical_days",
                self.cert_critical_days.is_some(),
                Http,
            ),
            ("pattern", self.pattern.is_some(), Process),
            ("min", self.min.is_some(), Process),
            ("max", self.max.is_some(), Process),
            ("command", !self.command.is_empty(), Command),
        ];
        for (key, set, owner) in keys {
            if set && self.kind != owner {
                return Err(format!(
                    "key {key} applies only to {} checks",
                    owner.as_str()
                ));
            }
        }
        if self.kind == Command && !self.target.is_empty() {
            return Err(
                "key target does not apply to command checks; put the program in command = [\"/path/to/plugin\", \"arg\", ...]"
                    .to_string(),
            );
        }
        Ok(())
    }

    fn validate_tcp(&self) -> Result<(), String> {
        if self.target.is_empty() {
            return Err("target = \"host:port\" is required".to_string());
        }
        if crate::checks::tcp::split_target(&self.target).is_none() {
            return Err(format!("target {:?} must be host:port", self.target));
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), String> {
        if self.target.is_empty() {
            return Err("target = \"http://...\" or \"https://...\" is required".to_string());
        }
        let url = crate::checks::http::HttpTarget::parse(&self.target)?;
        if !url.https {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("tls_verify", self.tls_verify.is_some()),
                ("cert_warning_days", self.cert_warning_days.is_some()),
                ("cert_critical_days", self.cert_critical_days.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "key {key} applies only to https:// targets, not {:?}",
                        self.target
                    ));
                }
            }
        }
        if self.cert_critical_days() > self.cert_warning_days() {
            return Err(format!(
                "cert_critical_days {} must not be more than cert_warning_days {}",
                self.cert_critical_days(),
                self.cert_warning_days()
            ));
        }
        if let Some(status) = &self.expect_status
            && status.is_empty()
        {
            return Err("expect_status must list at least one status code".to_string());
        }
        if self.body_contains.as_deref() == Some("") {
            return Err("body_contains must not be empty".to_string());
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("ca_file must not be empty".to_string());
        }
        Ok(())
    }

    fn validate_process(&self) -> Result<(), String> {
        match (self.target.is_empty(), &self.pattern) {
            (true, None) => {
                return Err(
                    "set target = \"<process name>\" or pattern = \"<regex on the command line>\""
                        .to_string(),
                );
            }
            (false, Some(_)) => {
                return Err(
                    "set either target (process name) or pattern (regex), not both".to_string(),
                );
            }
            _ => {}
        }
        if let Some(max) = self.max
            && self.process_min() > max
        {
            return Err(format!(
                "min {} must not be more than max {max}",
                self.process_min()
            ));
        }
        Ok(())
    }

    fn validate_systemd(&self) -> Result<(), String> {
        if self.target.is_empty() {
            return Err("target = \"<unit>\" is required (e.g. \"nginx.service\")".to_string());
        }
        if self.target.starts_with('-')
            || self
                .target
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(format!(
                "target {:?} is not a systemd unit name",
                self.target
            ));
        }
        Ok(())
    }

    fn validate_command(&self) -> Result<(), String> {
        let Some(program) = self.command.first() else {
            return Err("command = [\"/path/to/plugin\", \"arg\", ...] is required".to_string());
        };
        if program.is_empty() {
            return Err("command[0] must name a program".to_string());
        }
        if program.contains('/') && !program.starts_with('/') {
            return Err(format!(
                "command[0] {program:?} must be an absolute path or a program name found in PATH"
            ));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err("command arguments must not contain NUL characters".to_string());
        }
        Ok(())
    }
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// The kinds of check this build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// TCP connect to `host:port`.
    Tcp,
    /// HTTP(S) GET of a URL: status, body, certificate expiry.
    Http,
    /// Count of processes by name or command-line regex.
    Process,
    /// State of a systemd unit.
    Systemd,
    /// A Nagios/Icinga plugin (exit code 0/1/2/3).
    Command,
}

impl CheckKind {
    pub const ALL: &'static [CheckKind] = &[
        CheckKind::Tcp,
        CheckKind::Http,
        CheckKind::Process,
        CheckKind::Systemd,
        CheckKind::Command,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Process => "process",
            CheckKind::Systemd => "systemd",
            CheckKind::Command => "command",
        }
    }

    /// Parse a kind name; the error is a one-line explanation listing the supported kinds.
    pub fn parse(s: &str) -> Result<Self, String> {
        CheckKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let supported = CheckKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("unknown check kind {s:?} (supported: {supported})")
            })
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CheckKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CheckKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CheckKind::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `expect_status` as written: a number, a string, or a list of numbers and strings.
#[derive(Debug)]
struct RawStatus(Vec<String>);

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        const EXPECTING: &str = "a status code (200), a range (\"200-399\") or a list of those";
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTING)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawStatus, E> {
                Ok(RawStatus(vec![v.to_string()]))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawStatus, E> {
                Ok(RawStatus(vec![v.to_string()]))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStatus, E> {
                Ok(RawStatus(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawStatus, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<RawStatus>()? {
                    items.extend(item.0);
                }
                Ok(RawStatus(items))
            }
        }
        d.deserialize_any(Visit)
    }
}

#[cfg(test)]
mod tests;
