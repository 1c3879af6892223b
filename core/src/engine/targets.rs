//! Notification targets in the policy: `[notify.webhook.<name>]`, `[notify.email.<name>]`,
//! `[notify.mqtt.<name>]`, the targets every ticket event goes to, and per-group targets.
//!
//! Escalation levels and `[notify] events` name targets as `<channel>:<name>`; the word
//! `group` stands for the targets of the ticket's assignment group (`[group.<name>] notify`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// A JSON POST to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Extra request headers (e.g. an authorization token).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest one attempt may take.
    #[serde(default = "d_10s", with = "humantime_serde")]
    pub timeout: Duration,
}

/// An e-mail to these addresses (the SMTP server is the collector's `[smtp]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    pub to: Vec<String>,
    /// Put before the subject, e.g. `"[tocsin]"`.
    #[serde(default)]
    pub subject_prefix: Option<String>,
}

/// A message on the broker, under `<topic root>/v1/events/<topic>/...`, for other systems.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTarget {
    /// Topic segment after `events/` (default `tickets`).
    #[serde(default = "d_topic")]
    pub topic: String,
    #[serde(default = "d_qos")]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
}

/// `[notify]`: the named targets, and which of them hear every ticket event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyPolicy {
    #[serde(default)]
    pub webhook: BTreeMap<String, Webhook>,
    #[serde(default)]
    pub email: BTreeMap<String, EmailTarget>,
    #[serde(default)]
    pub mqtt: BTreeMap<String, MqttTarget>,
    /// Targets told of every ticket event (opened, acknowledged, escalated, resolved, ...).
    #[serde(default)]
    pub events: Vec<String>,
}

/// `[group.<name>]`: an assignment group's own targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    #[serde(default)]
    pub notify: Vec<String>,
}

fn d_10s() -> Duration {
    Duration::from_secs(10)
}
fn d_topic() -> String {
    "tickets".into()
}
fn d_qos() -> u8 {
    1
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    Webhook,
    Email,
    Mqtt,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Mqtt => "mqtt",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "email" => Some(Channel::Email),
            "mqtt" => Some(Channel::Mqtt),
            _ => None,
        }
    }
}

/// One `<channel>:<name>` target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub channel: Channel,
    pub name: String,
}

impl NotifyPolicy {
    /// Parse `<channel>:<name>` and check that the target is defined.
    pub fn target(&self, spec: &str) -> Result<Target, String> {
        let Some((channel, name)) = spec.split_once(':') else {
            return Err(format!(
                "target {spec:?} is not <channel>:<name> (channels: webhook, email, mqtt)"
            ));
        };
        let Some(channel) = Channel::parse(channel) else {
            return Err(format!(
                "target {spec:?}: unknown channel {channel:?} (use webhook, email or mqtt)"
            ));
        };
        let defined = match channel {
            Channel::Webhook => self.webhook.contains_key(name),
            Channel::Email => self.email.contains_key(name),
            Channel::Mqtt => self.mqtt.contains_key(name),
        };
        if !defined {
            return Err(format!(
                "target {spec:?}: [notify.{}.{name}] is not defined",
                channel.as_str()
            ));
        }
        Ok(Target {
            channel,
            name: name.to_string(),
        })
    }

    /// Check every target a policy names; the first problem, in words.
    pub fn validate(
        &self,
        levels: &[(String, Vec<String>)],
        groups: &BTreeMap<String, GroupPolicy>,
    ) -> Result<(), String> {
        for spec in &self.events {
            self.target(spec)
                .map_err(|e| format!("[notify] events: {e}"))?;
        }
        for (level, targets) in levels {
            for spec in targets.iter().filter(|s| s.as_str() != "group") {
                self.target(spec)
                    .map_err(|e| format!("escalation {level:?}: {e}"))?;
            }
        }
        for (group, g) in groups {
            for spec in &g.notify {
                self.target(spec)
                    .map_err(|e| format!("[group.{group}] notify: {e}"))?;
            }
        }
        for (name, m) in &self.mqtt {
            if m.qos > 2 {
                return Err(format!("[notify.mqtt.{name}] qos must be 0, 1 or 2"));
            }
            if m.topic.is_empty() || m.topic.contains(['+', '#']) {
                return Err(format!(
                    "[notify.mqtt.{name}] topic {:?} must be a plain topic segment",
                    m.topic
                ));
            }
        }
        for (name, w) in &self.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!(
                    "[notify.webhook.{name}] url {:?} must start with http:// or https://",
                    w.url
                ));
            }
        }
        for (name, e) in &self.email {
            if e.to.is_empty() || e.to.iter().any(|a| !a.contains('@')) {
                return Err(format!(
                    "[notify.email.{name}] to must list e-mail addresses"
                ));
            }
        }
        Ok(())
    }

    /// The targets of `specs`, with `group` expanded to the assignment group's targets;
    /// unknown names are skipped (the policy was validated when loaded).
    pub fn expand(
        &self,
        specs: &[String],
        group: &str,
        groups: &BTreeMap<String, GroupPolicy>,
    ) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for spec in specs {
            if spec == "group" {
                if let Some(g) = groups.get(group) {
                    out.extend(g.notify.iter().filter_map(|s| self.target(s).ok()));
                }
            } else if let Ok(t) = self.target(spec) {
                out.push(t);
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify() -> NotifyPolicy {
        toml::from_str(
            r#"
            events = ["mqtt:bus"]
            [webhook.oncall]
            url = "http://127.0.0.1:9000/hook"
            [email.managers]
            to = ["boss@example.com"]
            [mqtt.bus]
            "#,
        )
        .expect("parse")
    }

    #[test]
    fn targets_parse_and_refuse_with_a_reason() {
        let n = notify();
        assert_eq!(
            n.target("webhook:oncall").expect("ok"),
            Target {
                channel: Channel::Webhook,
                name: "oncall".into()
            }
        );
        assert_eq!(n.mqtt["bus"].topic, "tickets");
        assert!(
            n.target("webhook:nope")
                .expect_err("refused")
                .contains("[notify.webhook.nope]")
        );
        assert!(
            n.target("sms:x")
                .expect_err("refused")
                .contains("unknown channel")
        );
        assert!(
            n.target("oncall")
                .expect_err("refused")
                .contains("<channel>:<name>")
        );
        let levels = vec![("senior".to_string(), vec!["email:nobody".to_string()])];
        let err = n.validate(&levels, &BTreeMap::new()).expect_err("refused");
        assert!(
            err.contains("escalation \"senior\"") && err.contains("email.nobody"),
            "{err}"
        );
    }

    #[test]
    fn group_expands_to_the_assignment_groups_targets() {
        let n = notify();
        let groups: BTreeMap<String, GroupPolicy> = [(
            "network".to_string(),
            GroupPolicy {
                notify: vec!["email:managers".into()],
            },
        )]
        .into();
        let got = n.expand(
            &[
                "group".into(),
                "webhook:oncall".into(),
                "email:managers".into(),
            ],
            "network",
            &groups,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(n.expand(&["group".into()], "other", &groups).is_empty());
    }
}
