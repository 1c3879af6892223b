//! The rule evaluator: reports and node statuses in, alert transitions out (pure, no clock).
//!
//! Every (rule, node, labels) series walks inactive -> pending -> firing -> resolved.
//! Threshold and check series are timed by the report's own `ts`, so a backlog
//! flushed after an outage is judged on the timeline it was collected on; node
//! status series are timed by the collector's `now`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tocsin_protocol::{NodeState, Report};

use super::config::{Category, Condition, Rule, Severity, When};
use super::template::format_value;
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
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Pending,
    Firing,
}

#[derive(Debug, Clone)]
struct Series {
    rule: usize,
    site: String,
    node: String,
    labels: BTreeMap<String, String>,
    phase: Phase,
    since: Millis,
}

/// One observation of a series in a report.
struct Sample {
    labels: BTreeMap<String, String>,
    /// The firing condition holds.
    active: bool,
    /// The condition to resolve holds (hysteresis for thresholds).
    clear: bool,
    value: Option<f64>,
    vars: BTreeMap<String, String>,
    detail: String,
}

/// Turns reports and statuses into alert transitions according to the rules.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    series: HashMap<String, Series>,
    /// Live series keys per (site, node), so a report only looks at its own node's series.
    by_node: HashMap<(String, String), BTreeSet<String>>,
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

impl Evaluator {
    pub fn new(rules: Vec<Rule>) -> Self {
        Evaluator {
            rules,
            series: HashMap::new(),
            by_node: HashMap::new(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of pending or firing series.
    pub fn active_series(&self) -> usize {
        self.series.len()
    }

    /// Take back pending and firing series after a restart; alerts of rules that no longer exist are dropped.
    pub fn restore(&mut self, active: &[ActiveAlert]) -> Vec<String> {
        let mut dropped = Vec::new();
        for a in active {
            let Some(rule) = self.rules.iter().position(|r| r.name == a.rule) else {
                dropped.push(a.key.clone());
                continue;
            };
            let phase = match a.state {
                AlertState::Pending => Phase::Pending,
                AlertState::Firing => Phase::Firing,
                AlertState::Resolved => continue,
            };
            self.insert_series(
                a.key.clone(),
                Series {
                    rule,
                    site: a.site.clone(),
                    node: a.node.clone(),
                    labels: a.labels.clone(),
                    phase,
                    since: a.started_at,
                },
            );
        }
        dropped
    }

    /// Evaluate every threshold and check rule against one report.
    pub fn on_report(&mut self, report: &Report) -> Vec<AlertTransition> {
        let at = report.ts;
        let mut out = Vec::new();
        for idx in 0..self.rules.len() {
            let samples = match &self.rules[idx].condition {
                Condition::Threshold { expr, clear } => report
                    .metrics
                    .iter()
                    .filter(|m| expr.selects(&m.name, &m.labels))
                    .map(|m| {
                        let active = expr.holds(m.value);
                        let clear = match clear {
                            Some(c) => c.holds(m.value),
                            None => !active,
                        };
                        let mut vars = BTreeMap::new();
                        vars.insert("value".to_string(), format_value(m.value));
                        vars.insert("threshold".to_string(), format_value(expr.threshold));
                        for (k, v) in &m.labels {
                            vars.insert(format!("labels.{k}"), v.clone());
                        }
                        Sample {
                            labels: m.labels.clone(),
                            active,
                            clear,
                            value: Some(m.value),
                            detail: format!(
                                "{} = {} (rule: {expr})",
                                m.name,
                                format_value(m.value)
                            ),
                            vars,
                        }
                    })
                    .collect::<Vec<_>>(),
                Condition::Check { pattern, statuses } => report
                    .checks
                    .iter()
                    .filter(|c| super::expr::glob_match(pattern, &c.name))
                    .map(|c| {
                        let active = statuses.contains(&c.status);
                        let labels: BTreeMap<String, String> =
                            [("check".to_string(), c.name.clone())].into();
                        let mut vars = BTreeMap::new();
                        vars.insert("check".to_string(), c.name.clone());
                        vars.insert("status".to_string(), c.status.as_str().to_string());
                        vars.insert("output".to_string(), c.output.clone());
                        vars.insert("labels.check".to_string(), c.name.clone());
                        let latency = c
                            .latency_ms
                            .map(|l| format!(" ({} ms)", format_value(l)))
                            .unwrap_or_default();
                        Sample {
                            labels,
                            active,
                            clear: !active,
                            value: Some(f64::from(c.status.exit_code())),
                            detail: format!(
                                "check {} is {}: {}{latency}",
                                c.name,
                                c.status.as_str(),
                                c.output
                            ),
                            vars,
                        }
                    })
                    .collect(),
                Condition::Status(_) => continue,
            };
            let mut seen = Vec::with_capacity(samples.len());
            for sample in samples {
                let key = alert_key(
                    &self.rules[idx].name,
                    &report.site,
                    &report.node,
                    &sample.labels,
                );
                seen.push(key.clone());
                if let Some(t) = self.step(idx, &key, &report.site, &report.node, at, sample) {
                    out.push(t);
                }
            }
            // A live series of this rule and node that the report no longer carries resolves.
            // (A BTreeSet: sorted, so a replay gives the same ids.)
            let gone: Vec<String> = self
                .by_node
                .get(&(report.site.clone(), report.node.clone()))
                .into_iter()
                .flatten()
                .filter(|k| !seen.contains(k) && self.series.get(*k).is_some_and(|s| s.rule == idx))
                .cloned()
                .collect();
            for key in gone {
                if let Some(t) = self.resolve(&key, at, "no longer reported by the agent") {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Evaluate node-status rules for a status change.
    pub fn on_status(
        &mut self,
        now: Millis,
        site: &str,
        node: &str,
        state: NodeState,
    ) -> Vec<AlertTransition> {
        let mut out = Vec::new();
        for idx in 0..self.rules.len() {
            let Condition::Status(When::Offline) = self.rules[idx].condition else {
                continue;
            };
            let labels = BTreeMap::new();
            let key = alert_key(&self.rules[idx].name, site, node, &labels);
            let active = state == NodeState::Offline;
            let sample = Sample {
                labels,
                active,
                clear: !active,
                value: None,
                vars: BTreeMap::new(),
                detail: match state {
                    NodeState::Offline => {
                        "the agent's connection was lost (MQTT last will)".to_string()
                    }
                    NodeState::Online => "the agent is back online".to_string(),
                    NodeState::Stopped => "the agent stopped cleanly".to_string(),
                },
            };
            if let Some(t) = self.step(idx, &key, site, node, now, sample) {
                out.push(t);
            }
        }
        out
    }

    /// Promote node-status series whose `for` elapsed; nothing else depends on the clock.
    pub fn tick(&mut self, now: Millis) -> Vec<AlertTransition> {
        let mut due: Vec<String> = self
            .series
            .iter()
            .filter(|(_, s)| {
                s.phase == Phase::Pending
                    && matches!(self.rules[s.rule].condition, Condition::Status(_))
                    && now - s.since >= self.rules[s.rule].for_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        due.sort();
        for key in due {
            if let Some(s) = self.series.get_mut(&key) {
                s.phase = Phase::Firing;
                let s = s.clone();
                let detail = "the agent's connection was lost (MQTT last will)".to_string();
                out.push(self.transition(
                    &key,
                    &s,
                    AlertState::Firing,
                    now,
                    None,
                    BTreeMap::new(),
                    detail,
                ));
            }
        }
        out
    }

    fn insert_series(&mut self, key: String, s: Series) {
        self.by_node
            .entry((s.site.clone(), s.node.clone()))
            .or_default()
            .insert(key.clone());
        self.series.insert(key, s);
    }

    fn remove_series(&mut self, key: &str) -> Option<Series> {
        let s = self.series.remove(key)?;
        let node = (s.site.clone(), s.node.clone());
        if let Some(keys) = self.by_node.get_mut(&node) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(s)
    }

    fn step(
        &mut self,
        idx: usize,
        key: &str,
        site: &str,
        node: &str,
        at: Millis,
        sample: Sample,
    ) -> Option<AlertTransition> {
        let for_ms = self.rules[idx].for_ms;
        match self.series.get(key).map(|s| s.phase) {
            None if sample.active => {
                let phase = if for_ms == 0 {
                    Phase::Firing
                } else {
                    Phase::Pending
                };
                let s = Series {
                    rule: idx,
                    site: site.to_string(),
                    node: node.to_string(),
                    labels: sample.labels,
                    phase,
                    since: at,
                };
                self.insert_series(key.to_string(), s.clone());
                let state = if phase == Phase::Firing {
                    AlertState::Firing
                } else {
                    AlertState::Pending
                };
                Some(self.transition(key, &s, state, at, sample.value, sample.vars, sample.detail))
            }
            None => None,
            Some(Phase::Pending) if sample.active => {
                let s = self.series.get_mut(key)?;
                if at - s.since >= for_ms {
                    s.phase = Phase::Firing;
                    let s = s.clone();
                    Some(self.transition(
                        key,
                        &s,
                        AlertState::Firing,
                        at,
                        sample.value,
                        sample.vars,
                        sample.detail,
                    ))
                } else {
                    None
                }
            }
            // Pending but no longer active: the episode ends without ever firing.
            // Firing and the clear condition holds: resolved.
            Some(phase) if phase == Phase::Pending || (sample.clear && !sample.active) => {
                let s = self.remove_series(key)?;
                Some(self.transition(
                    key,
                    &s,
                    AlertState::Resolved,
                    at,
                    sample.value,
                    sample.vars,
                    sample.detail,
                ))
            }
            Some(_) => None,
        }
    }

    fn resolve(&mut self, key: &str, at: Millis, why: &str) -> Option<AlertTransition> {
        let s = self.remove_series(key)?;
        let mut vars = BTreeMap::new();
        for (k, v) in &s.labels {
            vars.insert(format!("labels.{k}"), v.clone());
            if k == "check" {
                vars.insert("check".into(), v.clone());
            }
        }
        Some(self.transition(
            key,
            &s,
            AlertState::Resolved,
            at,
            None,
            vars,
            why.to_string(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        key: &str,
        s: &Series,
        state: AlertState,
        at: Millis,
        value: Option<f64>,
        mut vars: BTreeMap<String, String>,
        detail: String,
    ) -> AlertTransition {
        let rule = &self.rules[s.rule];
        vars.insert("node".into(), s.node.clone());
        vars.insert("site".into(), s.site.clone());
        vars.insert("rule".into(), rule.name.clone());
        vars.insert("severity".into(), rule.severity.as_str().into());
        AlertTransition {
            key: key.to_string(),
            rule: rule.name.clone(),
            site: s.site.clone(),
            node: s.node.clone(),
            labels: s.labels.clone(),
            state,
            severity: rule.severity,
            category: rule.category,
            value,
            summary: rule.summary.render(&vars),
            detail,
            runbook: rule.runbook.clone(),
            source: AlertSource::of(&rule.condition),
            group_by: rule.group_by.clone(),
            node_down: rule.node_down,
            started_at: s.since,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::config::parse_rules;
    use tocsin_protocol::{CheckResult, CheckStatus, Metric, NodeKind};

    const RULES: &str = r#"
        [[rule]]
        name = "fs_full"
        expr = "fs.used_pct > 90"
        for = "20s"
        clear = "fs.used_pct < 85"
        severity = "warning"
        category = "hardware"
        summary = "{{node}}: {{labels.mount}} is {{value}}% full"

        [[rule]]
        name = "check_critical"
        check = "*"
        severity = "critical"
        category = "software"
        summary = "{{node}}: {{check}} is {{status}}: {{output}}"

        [[rule]]
        name = "node_offline"
        when = "offline"
        for = "30s"
        severity = "critical"
        category = "network"
        summary = "{{node}} is offline"
    "#;

    fn evaluator() -> Evaluator {
        Evaluator::new(parse_rules("t", RULES).expect("rules"))
    }

    fn report(ts: Millis, fs: &[(&str, f64)], checks: &[(&str, CheckStatus)]) -> Report {
        Report {
            v: 1,
            node: "web-01".into(),
            site: "dc1".into(),
            kind: NodeKind::Host,
            seq: (ts / 1000) as u64,
            ts,
            interval_s: 10,
            via: None,
            metrics: fs
                .iter()
                .map(|(m, v)| Metric::new("fs.used_pct", *v).with_label("mount", *m))
                .collect(),
            checks: checks
                .iter()
                .map(|(n, s)| CheckResult {
                    name: n.to_string(),
                    status: *s,
                    output: "connect refused".into(),
                    latency_ms: None,
                })
                .collect(),
        }
    }

    /// (ts, fs value on "/", expected transition state or None)
    #[test]
    fn threshold_with_for_and_hysteresis() {
        let table: &[(Millis, f64, Option<AlertState>)] = &[
            (0, 50.0, None),
            (10_000, 95.0, Some(AlertState::Pending)),
            (20_000, 96.0, None),
            (30_000, 97.0, Some(AlertState::Firing)),
            (40_000, 88.0, None), // below threshold but above clear: still firing
            (50_000, 80.0, Some(AlertState::Resolved)),
            (60_000, 95.0, Some(AlertState::Pending)),
            (70_000, 50.0, Some(AlertState::Resolved)), // pending episode cancelled
        ];
        let mut ev = evaluator();
        for (ts, value, want) in table {
            let out = ev.on_report(&report(*ts, &[("/", *value)], &[]));
            assert_eq!(out.first().map(|t| t.state), *want, "at {ts}");
            assert!(out.len() <= 1);
            if let Some(t) = out.first() {
                assert_eq!(t.key, "fs_full:dc1/web-01{mount=/}");
                assert_eq!(t.at, *ts);
                if t.state == AlertState::Firing {
                    assert_eq!(t.summary, "web-01: / is 97% full");
                    assert_eq!(t.started_at, 10_000);
                }
            }
        }
        assert_eq!(ev.active_series(), 0);
    }

    #[test]
    fn checks_fire_at_once_and_resolve() {
        let mut ev = evaluator();
        let out = ev.on_report(&report(
            1_000,
            &[],
            &[
                ("tcp:pg", CheckStatus::Critical),
                ("tcp:web", CheckStatus::Ok),
            ],
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, AlertState::Firing);
        assert_eq!(
            out[0].summary,
            "web-01: tcp:pg is critical: connect refused"
        );
        assert_eq!(
            out[0].labels.get("check").map(String::as_str),
            Some("tcp:pg")
        );
        assert!(
            ev.on_report(&report(2_000, &[], &[("tcp:pg", CheckStatus::Critical)]))
                .is_empty()
        );
        let out = ev.on_report(&report(3_000, &[], &[("tcp:pg", CheckStatus::Ok)]));
        assert_eq!(out[0].state, AlertState::Resolved);
        assert_eq!(out[0].started_at, 1_000);
    }

    #[test]
    fn vanished_series_resolve() {
        let mut ev = evaluator();
        ev.on_report(&report(1_000, &[], &[("tcp:pg", CheckStatus::Critical)]));
        let out = ev.on_report(&report(2_000, &[], &[]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, AlertState::Resolved);
        assert!(out[0].detail.contains("no longer reported"));
    }

    #[test]
    fn a_report_only_resolves_its_own_nodes_vanished_series() {
        let mut ev = evaluator();
        let mut other = report(1_000, &[], &[("tcp:pg", CheckStatus::Critical)]);
        other.node = "db-01".into();
        assert_eq!(ev.on_report(&other).len(), 1);
        ev.on_report(&report(1_000, &[], &[("tcp:pg", CheckStatus::Critical)]));
        // web-01 stops reporting its check: only web-01's alert resolves.
        let out = ev.on_report(&report(2_000, &[], &[]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].node, "web-01");
        assert_eq!(ev.active_series(), 1);
    }

    #[test]
    fn offline_pends_then_fires_on_tick_and_online_resolves() {
        let mut ev = evaluator();
        let out = ev.on_status(1_000, "dc1", "web-01", NodeState::Offline);
        assert_eq!(out[0].state, AlertState::Pending);
        assert!(ev.tick(20_000).is_empty());
        let out = ev.tick(31_000);
        assert_eq!(out[0].state, AlertState::Firing);
        assert_eq!(out[0].summary, "web-01 is offline");
        let out = ev.on_status(40_000, "dc1", "web-01", NodeState::Online);
        assert_eq!(out[0].state, AlertState::Resolved);
        // A clean stop never raises anything.
        assert!(
            ev.on_status(50_000, "dc1", "web-01", NodeState::Stopped)
                .is_empty()
        );
    }

    #[test]
    fn restore_resumes_series() {
        let mut ev = evaluator();
        let dropped = ev.restore(&[
            ActiveAlert {
                key: "check_critical:dc1/web-01{check=tcp:pg}".into(),
                rule: "check_critical".into(),
                site: "dc1".into(),
                node: "web-01".into(),
                labels: [("check".to_string(), "tcp:pg".to_string())].into(),
                state: AlertState::Firing,
                started_at: 500,
            },
            ActiveAlert {
                key: "gone:dc1/web-01".into(),
                rule: "gone".into(),
                site: "dc1".into(),
                node: "web-01".into(),
                labels: BTreeMap::new(),
                state: AlertState::Firing,
                started_at: 500,
            },
        ]);
        assert_eq!(dropped, vec!["gone:dc1/web-01".to_string()]);
        // Still critical: no new firing transition.
        assert!(
            ev.on_report(&report(1_000, &[], &[("tcp:pg", CheckStatus::Critical)]))
                .is_empty()
        );
        let out = ev.on_report(&report(2_000, &[], &[("tcp:pg", CheckStatus::Ok)]));
        assert_eq!(out[0].state, AlertState::Resolved);
        assert_eq!(out[0].started_at, 500);
    }
}
