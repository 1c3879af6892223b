//! `[[check]]` tables: the service checks an agent runs (kind, target, per-check interval and timeout).
//!
//! A check is read as a flat [`FileCheck`] (every key of every kind, all optional), then
//! [`resolve`]d: defaults filled in and keys that do not belong to the kind refused with a
//! one-line error naming the check.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DEFAULT_CHECK_TIMEOUT, de_opt_duration, format_duration, ser_duration};

/// Longest check name the protocol accepts in a report (`<kind>:<name>`).
pub const MAX_CHECK_NAME: usize = 128;

/// One `[[check]]`. The report names it `<kind>:<name>` (e.g. `tcp:postgres`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckConfig {
    pub name: String,
    pub kind: CheckKind,
    /// What to check; for `tcp`: `host:port`.
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
}

/// A `[[check]]` as written: every key of every kind; [`resolve`] sorts them out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    name: String,
    kind: CheckKind,
    target: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
}

/// Fill in the defaults of a check as written (`agent_interval` is the agent's `interval`).
pub fn resolve(file: FileCheck, agent_interval: Duration) -> Result<CheckConfig, String> {
    let every = file.interval.unwrap_or(agent_interval);
    Ok(CheckConfig {
        name: file.name,
        kind: file.kind,
        target: file.target,
        interval: file.interval,
        timeout: file
            .timeout
            .unwrap_or_else(|| DEFAULT_CHECK_TIMEOUT.min(every)),
    })
}

impl CheckConfig {
    /// A TCP connect check with the default timeout.
    pub fn tcp(name: impl Into<String>, target: impl Into<String>) -> Self {
        CheckConfig {
            name: name.into(),
            kind: CheckKind::Tcp,
            target: target.into(),
            interval: None,
            timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// The check name as it appears in a report: `<kind>:<name>`.
    pub fn report_name(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }

    /// How often this check runs, given the agent's interval.
    pub fn every(&self, agent_interval: Duration) -> Duration {
        self.interval.unwrap_or(agent_interval)
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
        let every = self.every(agent_interval);
        if every < Duration::from_secs(1) || every > Duration::from_secs(86_400) {
            return Err(format!(
                "check {report_name:?}: interval {} must be between 1s and 1d",
                format_duration(every)
            ));
        }
        if self.timeout.is_zero() || self.timeout > every {
            return Err(format!(
                "check {report_name:?}: timeout {} must be more than 0 and at most the check's interval ({})",
                format_duration(self.timeout),
                format_duration(every)
            ));
        }
        match self.kind {
            CheckKind::Tcp => {
                if crate::checks::tcp::split_target(&self.target).is_none() {
                    return Err(format!(
                        "check {report_name:?}: target {:?} must be host:port",
                        self.target
                    ));
                }
            }
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
}

/// Kinds named in the design that later versions add; refused with a clearer message.
const PLANNED_CHECK_KINDS: &[&str] = &["http", "process", "systemd", "command"];

impl CheckKind {
    pub const ALL: &'static [CheckKind] = &[CheckKind::Tcp];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
        }
    }

    /// Parse a kind name; the error is a one-line explanation.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(CheckKind::Tcp),
            other => {
                let supported = CheckKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                if PLANNED_CHECK_KINDS.contains(&other) {
                    Err(format!(
                        "check kind {other:?} is not supported by this agent version yet (supported: {supported})"
                    ))
                } else {
                    Err(format!(
                        "unknown check kind {other:?} (supported: {supported})"
                    ))
                }
            }
        }
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
