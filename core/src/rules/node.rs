//! Per-node evaluator state: live series and their state machine, previous samples for
//! `rate()`/`resets()`, staleness clocks; and the rendering of alert transitions.
//!
//! Every (rule, node, labels) series walks inactive -> pending -> firing -> resolved.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use tocsin_protocol::{CheckResult, Metric, NodeState};

use super::alert::{AlertSource, AlertState, AlertTransition};
use super::config::{Condition, Rule, format_duration};
use super::expr::{Expr, Func};
use super::template::format_value;
use crate::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Phase {
    Pending,
    Firing,
}

/// A pending or firing series.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub rule: usize,
    pub site: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub phase: Phase,
    /// When the condition first held for this episode.
    pub since: Millis,
    /// Firing and its clear condition has held since then (for `keep_firing_for`).
    pub clear_since: Option<Millis>,
}

/// The previous sample of one (metric, labels) series of a node.
#[derive(Debug)]
pub(super) struct Prev {
    /// [`series_hash`] of the metric name and labels (the sort key of `NodeData::prev`).
    hash: u64,
    pub metric: String,
    labels: BTreeMap<String, String>,
    value: f64,
    ts: Millis,
}

/// `rate()` and `resets()` of one sample; `None` where the sample gives no value.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Derived {
    rate: Option<f64>,
    resets: Option<f64>,
}

impl Derived {
    /// The value an expression's function yields for this sample.
    pub fn value(&self, func: Func, raw: f64) -> Option<f64> {
        match func {
            Func::Value => Some(raw),
            Func::Rate => self.rate,
            Func::Resets => self.resets,
        }
    }
}

/// Everything the evaluator keeps about one node: 72 bytes, with its live series apart,
/// since most nodes have none (120 bytes with them inline: 9.4 MB of the evaluator's per-node
/// table at 50,000 nodes; BENCHMARKS.md, 2026-12-03 evening).
#[derive(Debug, Default)]
pub(super) struct NodeData {
    /// `None` while nothing is live (most nodes).
    live: Option<Box<Live>>,
    /// Previous samples of the metrics under `rate()`/`resets()`, sorted by hash of (name,
    /// labels). A vector grown by half its length: a node has one or a few such series, and
    /// a hash map of one would take four slots (308 bytes instead of 72).
    pub prev: Vec<Prev>,
    /// Collector time of the last report (or of the first status when none came yet);
    /// `None` when the node is not watched for staleness (never seen, or stopped cleanly).
    pub last_report: Option<Millis>,
    /// Per metric-level absent rule (by ordinal): when a selected sample last arrived.
    pub absent_seen: Box<[Option<Millis>]>,
    /// Report time at which `prev` is next swept of series gone quiet.
    prune_at: Millis,
}

/// A node's pending and firing series.
#[derive(Debug, Default)]
struct Live {
    /// Live series by key (sorted: resolving several at once gives a stable order).
    series: BTreeMap<String, Series>,
    /// Live series per rule index, so a sample without a live series never builds a key:
    /// only as long as the highest live rule.
    per_rule: Vec<u32>,
}

/// What [`NodeData::live`] lends when nothing is live.
static NO_SERIES: BTreeMap<String, Series> = BTreeMap::new();

/// A previous sample older than this (report time) is forgotten: an interface or mount that
/// went away must not be kept forever. A series back after that starts over (no rate for
/// its first sample).
pub(super) const PREV_TTL_MS: Millis = 3_600_000;
const PRUNE_EVERY_MS: Millis = 600_000;

/// What a transition was observed on: fills the template and the detail.
pub(super) enum Obs<'a> {
    Metric {
        metric: &'a Metric,
        value: f64,
        expr: &'a Expr,
        and: Option<&'a Expr>,
    },
    Check(&'a CheckResult),
    Status(NodeState),
    /// Data missing for `age_ms`.
    Absent {
        age_ms: Millis,
    },
    /// No observation: why the series ends (or fires).
    Note(String),
}

/// Hash of a series (name, labels) for the previous-sample table.
fn series_hash(name: &str, labels: &BTreeMap<String, String>) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

impl NodeData {
    pub fn new(absent: usize) -> Self {
        NodeData {
            absent_seen: vec![None; absent].into_boxed_slice(),
            ..NodeData::default()
        }
    }

    /// Nothing left worth keeping: no live series, not watched.
    pub fn is_idle(&self) -> bool {
        self.live.is_none() && self.last_report.is_none() && self.prev.is_empty()
    }

    /// The live series by key (sorted).
    pub fn live(&self) -> &BTreeMap<String, Series> {
        self.live.as_ref().map_or(&NO_SERIES, |l| &l.series)
    }

    /// The live series, to change them in place.
    pub fn live_mut(&mut self) -> impl Iterator<Item = (&String, &mut Series)> {
        self.live.iter_mut().flat_map(|l| l.series.iter_mut())
    }

    pub fn is_live(&self, rule: usize) -> bool {
        self.live
            .as_ref()
            .and_then(|l| l.per_rule.get(rule))
            .is_some_and(|n| *n > 0)
    }

    pub fn insert(&mut self, key: String, s: Series) {
        let rule = s.rule;
        let live = self.live.get_or_insert_default();
        if live.series.insert(key, s).is_none() {
            if live.per_rule.len() <= rule {
                live.per_rule.resize(rule + 1, 0);
            }
            live.per_rule[rule] += 1;
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Series> {
        let live = self.live.as_mut()?;
        let s = live.series.remove(key)?;
        if live.series.is_empty() {
            self.live = None;
        } else if let Some(n) = live.per_rule.get_mut(s.rule) {
            *n = n.saturating_sub(1);
        }
        Some(s)
    }

    /// Take every live series out (the per-rule counts start over).
    pub fn take_live(&mut self) -> BTreeMap<String, Series> {
        self.live.take().map(|l| l.series).unwrap_or_default()
    }

    /// Forget previous samples not updated for [`PREV_TTL_MS`] (checked every ten minutes
    /// of report time).
    pub fn prune(&mut self, ts: Millis) {
        if ts < self.prune_at || self.prev.is_empty() {
            return;
        }
        self.prev.retain(|p| p.ts >= ts - PREV_TTL_MS);
        if self.prev.len() < self.prev.capacity() / 2 {
            self.prev.shrink_to_fit();
        }
        self.prune_at = ts + PRUNE_EVERY_MS;
    }

    /// Update the previous sample of `m` and derive `rate()` and `resets()` from it.
    /// A sample not newer than the previous one changes nothing and yields nothing.
    pub fn derive(&mut self, m: &Metric, ts: Millis) -> Derived {
        let h = series_hash(&m.name, &m.labels);
        let found = self.prev.binary_search_by_key(&h, |p| p.hash);
        match found.map(|i| &mut self.prev[i]) {
            Ok(p) if p.metric == m.name && p.labels == m.labels => {
                if ts <= p.ts {
                    return Derived::default();
                }
                let went_down = m.value < p.value;
                let secs = (ts - p.ts) as f64 / 1000.0;
                let rate = (!went_down)
                    .then(|| (m.value - p.value) / secs)
                    .filter(|r| r.is_finite());
                p.value = m.value;
                p.ts = ts;
                Derived {
                    rate,
                    resets: Some(if went_down { 1.0 } else { 0.0 }),
                }
            }
            _ => {
                // First sample of the series (or a hash collision: start over).
                let p = Prev {
                    hash: h,
                    metric: m.name.clone(),
                    labels: m.labels.clone(),
                    value: m.value,
                    ts,
                };
                match found {
                    Ok(i) => self.prev[i] = p,
                    Err(i) => {
                        if self.prev.len() == self.prev.capacity() {
                            self.prev.reserve_exact(self.prev.len() / 2 + 1);
                        }
                        self.prev.insert(i, p);
                    }
                }
                Derived {
                    rate: None,
                    resets: Some(0.0),
                }
            }
        }
    }

    /// Move a series along for one observation. `active`: the firing condition holds;
    /// `clear`: the resolving condition holds.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        rules: &[Rule],
        r: usize,
        key: &str,
        (site, node): (&str, &str),
        labels: &BTreeMap<String, String>,
        at: Millis,
        (active, clear): (bool, bool),
        obs: &Obs,
    ) -> Option<AlertTransition> {
        let rule = &rules[r];
        let Some(s) = self.live.as_mut().and_then(|l| l.series.get_mut(key)) else {
            if !active {
                return None;
            }
            let phase = if rule.for_ms == 0 {
                Phase::Firing
            } else {
                Phase::Pending
            };
            let s = Series {
                rule: r,
                site: site.to_string(),
                node: node.to_string(),
                labels: labels.clone(),
                phase,
                since: at,
                clear_since: None,
            };
            let state = match phase {
                Phase::Firing => AlertState::Firing,
                Phase::Pending => AlertState::Pending,
            };
            let t = transition(rule, key, &s, state, at, obs);
            self.insert(key.to_string(), s);
            return Some(t);
        };
        match s.phase {
            Phase::Pending if active => {
                if at - s.since < rule.for_ms - for_slack(rule.for_ms) {
                    return None;
                }
                s.phase = Phase::Firing;
                Some(transition(rule, key, s, AlertState::Firing, at, obs))
            }
            // The episode ends without ever firing.
            Phase::Pending => self.resolve(rules, key, at, obs),
            Phase::Firing if active || !clear => {
                // Active again, or inside the hysteresis band: the clear clock starts over.
                s.clear_since = None;
                None
            }
            Phase::Firing => {
                let keep = rule.keep_firing_for_ms;
                let since = *s.clear_since.get_or_insert(at);
                if keep > 0 && at - since < keep {
                    return None;
                }
                self.resolve(rules, key, at, obs)
            }
        }
    }

    /// End a live series now.
    pub fn resolve(
        &mut self,
        rules: &[Rule],
        key: &str,
        at: Millis,
        obs: &Obs,
    ) -> Option<AlertTransition> {
        let s = self.remove(key)?;
        Some(transition(
            &rules[s.rule],
            key,
            &s,
            AlertState::Resolved,
            at,
            obs,
        ))
    }
}

/// How much earlier than `for` a series judged at report timestamps may fire: a tenth of
/// `for`, at most a second. Agents stamp a report when they collect it and that moment
/// jitters by milliseconds, so samples 10 s apart span 59.99 s after six intervals; without
/// the slack a `for = "60s"` series checked every 10 s would wait for a seventh (70 s).
pub(super) fn for_slack(for_ms: Millis) -> Millis {
    (for_ms / 10).min(1_000)
}

/// The transition record; templates are rendered here, only for transitions that happen.
pub(super) fn transition(
    rule: &Rule,
    key: &str,
    s: &Series,
    state: AlertState,
    at: Millis,
    obs: &Obs,
) -> AlertTransition {
    let value = match obs {
        Obs::Metric { value, .. } => Some(*value),
        Obs::Check(c) => Some(f64::from(c.status.exit_code())),
        Obs::Absent { age_ms } => Some(*age_ms as f64 / 1000.0),
        Obs::Status(_) | Obs::Note(_) => None,
    };
    let lookup = |name: &str| -> Option<String> {
        Some(match name {
            "node" => s.node.clone(),
            "site" => s.site.clone(),
            "rule" => rule.name.clone(),
            "severity" => rule.severity.as_str().to_string(),
            "category" => rule.category.as_str().to_string(),
            "for" => format_duration(rule.for_ms),
            "keep_firing_for" => format_duration(rule.keep_firing_for_ms),
            "value" => format_value(value?),
            "absent_for" => match &rule.condition {
                Condition::Absent { after_ms, .. } => format_duration(*after_ms),
                _ => return None,
            },
            "threshold" => match &rule.condition {
                Condition::Threshold { expr, .. } => format_value(expr.threshold),
                _ => return None,
            },
            "metric" => match &rule.condition {
                Condition::Threshold { expr, .. } => expr.metric().to_string(),
                Condition::Absent {
                    metric: Some(sel), ..
                } => sel.to_string(),
                _ => return None,
            },
            "check" => match obs {
                Obs::Check(c) => c.name.clone(),
                _ => s.labels.get("check")?.clone(),
            },
            "status" => match obs {
                Obs::Check(c) => c.status.as_str().to_string(),
                _ => return None,
            },
            "output" => match obs {
                Obs::Check(c) => c.output.clone(),
                _ => return None,
            },
            other => s.labels.get(other.strip_prefix("labels.")?)?.clone(),
        })
    };
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
        summary: rule.summary.render_with(lookup),
        description: rule
            .description
            .as_ref()
            .map(|d| d.render_with(lookup))
            .unwrap_or_default(),
        detail: detail(rule, s, obs),
        runbook: rule.runbook.clone(),
        source: AlertSource::of(&rule.condition),
        group_by: rule.group_by.clone(),
        node_down: rule.node_down,
        started_at: s.since,
        at,
    }
}

/// What was observed, for people.
fn detail(rule: &Rule, s: &Series, obs: &Obs) -> String {
    match obs {
        Obs::Metric {
            metric,
            value,
            expr,
            and,
        } => {
            let observed = match expr.func {
                Func::Value => format!("{} = {}", metric.name, format_value(*value)),
                Func::Rate => format!("rate({}) = {}/s", metric.name, format_value(*value)),
                Func::Resets => format!("resets({}) = {}", metric.name, format_value(*value)),
            };
            match and {
                Some(and) => format!("{observed} (rule: {expr} and {and})"),
                None => format!("{observed} (rule: {expr})"),
            }
        }
        Obs::Check(c) => {
            let latency = c
                .latency_ms
                .map(|l| format!(" ({} ms)", format_value(l)))
                .unwrap_or_default();
            format!(
                "check {} is {}: {}{latency}",
                c.name,
                c.status.as_str(),
                c.output
            )
        }
        Obs::Status(NodeState::Offline) => {
            "the agent's connection was lost (MQTT last will)".to_string()
        }
        Obs::Status(NodeState::Online) => "the agent is back online".to_string(),
        Obs::Status(NodeState::Stopped) => "the agent stopped cleanly".to_string(),
        Obs::Absent { age_ms } => match &rule.condition {
            Condition::Absent {
                metric: Some(sel),
                after_ms,
            } => format!(
                "no {sel} sample from {} for {} while it still reports (absent_for {})",
                s.node,
                crate::time::human(*age_ms),
                format_duration(*after_ms)
            ),
            Condition::Absent { after_ms, .. } => format!(
                "no report from {} for {} (absent_for {}), judged on the collector's clock",
                s.node,
                crate::time::human(*age_ms),
                format_duration(*after_ms)
            ),
            _ => format!("no data for {}", crate::time::human(*age_ms)),
        },
        Obs::Note(text) => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rule: usize) -> Series {
        Series {
            rule,
            site: "dc1".into(),
            node: "web-01".into(),
            labels: BTreeMap::new(),
            phase: Phase::Pending,
            since: 0,
            clear_since: None,
        }
    }

    /// Live series are kept apart and dropped with the last of them: a node with none is as
    /// small as the table needs it to be.
    #[test]
    fn live_series_are_counted_per_rule_and_dropped_with_the_last() {
        assert_eq!(std::mem::size_of::<NodeData>(), 72);
        let mut n = NodeData::new(2);
        assert!(n.live().is_empty() && !n.is_live(3));
        n.insert("a".into(), series(3));
        n.insert("b".into(), series(3));
        n.insert("b".into(), series(3)); // the same key again: still two
        n.insert("c".into(), series(1));
        assert_eq!(n.live().len(), 3);
        assert!(n.is_live(3) && n.is_live(1) && !n.is_live(0) && !n.is_live(7));
        for (_, s) in n.live_mut() {
            s.phase = Phase::Firing;
        }
        assert!(n.live().values().all(|s| s.phase == Phase::Firing));

        assert!(n.remove("a").is_some());
        assert!(n.remove("a").is_none());
        assert!(n.is_live(3), "b is still live");
        assert!(n.remove("b").is_some());
        assert!(!n.is_live(3));
        assert!(n.remove("c").is_some());
        assert!(n.live.is_none(), "the last series gone: nothing kept");
        assert!(n.is_idle());

        n.insert("d".into(), series(0));
        let taken = n.take_live();
        assert_eq!(taken.keys().collect::<Vec<_>>(), ["d"]);
        assert!(n.live.is_none() && !n.is_live(0));
        assert_eq!(n.absent_seen.len(), 2);
    }
}
