//! The rule evaluator: reports and node statuses in, alert transitions out (pure, no clock).
//!
//! Threshold and check series are timed by the report's own `ts`, so a backlog flushed
//! after an outage is judged on the timeline it was collected on. Node status and absent
//! series are timed by the collector's `now` (passed in), never by agent clocks.
//!
//! `on_report` is the hot path: rules are indexed by metric name so a sample only meets
//! the rules of its name, a sample that changes nothing allocates nothing (keys are built
//! only for active samples or where the node has a live series of that rule), and
//! templates are rendered only for transitions that happen.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use tocsin_protocol::{Metric, NodeState, Report};

pub use super::alert::{ActiveAlert, AlertSource, AlertState, AlertTransition, alert_key};
use super::config::{Condition, Rule, When};
use super::expr::{Expr, Func};
use super::node::{NodeData, Obs, Phase, Series, transition};
use crate::time::Millis;

/// Fast hashing (rustc's FxHash) for metric names (the rule index), node names and
/// previous-sample hashes: SipHash would cost more than the rest of a sample's evaluation.
/// Node names come from authenticated agents and are validated (`[A-Za-z0-9._-]{1,64}`), so
/// the weaker flooding resistance is an accepted trade.
pub(super) type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

type Nodes = FxMap<String, FxMap<String, NodeData>>;

/// The rules that look at one metric name.
#[derive(Debug, Default)]
struct MetricRules {
    rules: Vec<usize>,
    /// Some rule applies `rate()` or `resets()` to it: keep its previous samples.
    derive: bool,
}

/// Rule indexes by what they look at; rebuilt on reload.
#[derive(Debug, Default)]
struct Index {
    by_metric: FxMap<String, MetricRules>,
    checks: Vec<usize>,
    statuses: Vec<usize>,
    /// Node-level absent rules (no report for absent_for).
    stale: Vec<usize>,
    /// Metric-level absent rules; the position is the rule's ordinal in `absent_seen`.
    absent: Vec<usize>,
    /// Rule index -> ordinal in `absent`.
    absent_ord: HashMap<usize, usize>,
    /// Metric names some `and` compares.
    and_metrics: Vec<String>,
}

impl Index {
    fn build(rules: &[Rule]) -> Index {
        let mut ix = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.condition {
                Condition::Threshold { expr, and, .. } => {
                    let e = ix.by_metric.entry(expr.metric().to_string()).or_default();
                    e.rules.push(i);
                    e.derive |= expr.func != Func::Value;
                    if let Some(a) = and
                        && !ix.and_metrics.iter().any(|m| m == a.metric())
                    {
                        ix.and_metrics.push(a.metric().to_string());
                    }
                }
                Condition::Check { .. } => ix.checks.push(i),
                Condition::Status(_) => ix.statuses.push(i),
                Condition::Absent { metric: None, .. } => ix.stale.push(i),
                Condition::Absent {
                    metric: Some(sel), ..
                } => {
                    ix.absent_ord.insert(i, ix.absent.len());
                    ix.absent.push(i);
                    ix.by_metric
                        .entry(sel.metric.clone())
                        .or_default()
                        .rules
                        .push(i);
                }
            }
        }
        ix
    }

    fn derives(&self, metric: &str) -> bool {
        self.by_metric.get(metric).is_some_and(|e| e.derive)
    }
}

/// Turns reports and statuses into alert transitions according to the rules.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    index: Index,
    /// site -> node -> state (nested so a report looks its node up without allocating).
    /// Fx-hashed: names are short, validated (`[A-Za-z0-9._-]{1,64}`) and come from the
    /// topics of authenticated agents; SipHash here cost more than a report's rules.
    nodes: Nodes,
    /// When pending node-status series are due to fire (`since + for`), earliest first, so
    /// the collector ticks then instead of up to a second late. An entry whose node came back
    /// meanwhile only causes a tick that does nothing.
    due: BinaryHeap<Reverse<Millis>>,
}

/// Same-labelled samples of the `and` metrics of one report, built on first need.
type AndSamples<'a> = HashMap<(&'a str, &'a BTreeMap<String, String>), f64>;

fn and_holds<'a>(
    and: &Expr,
    m: &'a Metric,
    report: &'a Report,
    and_metrics: &[String],
    cache: &mut Option<AndSamples<'a>>,
) -> bool {
    let samples = cache.get_or_insert_with(|| {
        report
            .metrics
            .iter()
            .filter(|x| and_metrics.contains(&x.name))
            .map(|x| ((x.name.as_str(), &x.labels), x.value))
            .collect()
    });
    samples
        .get(&(and.metric(), &m.labels))
        .is_some_and(|v| and.selector.matches_labels(&m.labels) && and.holds(*v))
}

impl Evaluator {
    pub fn new(rules: Vec<Rule>) -> Self {
        Evaluator {
            index: Index::build(&rules),
            rules,
            nodes: Nodes::default(),
            due: BinaryHeap::new(),
        }
    }

    /// The earliest time a pending node-status series is due to fire, if any.
    pub fn next_due(&self) -> Option<Millis> {
        self.due.peek().map(|Reverse(t)| *t)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of pending or firing series.
    pub fn active_series(&self) -> usize {
        self.nodes
            .values()
            .flat_map(|n| n.values())
            .map(|n| n.live().len())
            .sum()
    }

    fn node_mut(&mut self, site: &str, node: &str) -> &mut NodeData {
        let absent = self.index.absent.len();
        node_entry(&mut self.nodes, site, node, absent)
    }

    /// Forget a node that has nothing live and is not watched.
    fn drop_if_idle(&mut self, site: &str, node: &str) {
        if let Some(nodes) = self.nodes.get_mut(site) {
            if nodes.get(node).is_some_and(NodeData::is_idle) {
                nodes.remove(node);
            }
            if nodes.is_empty() {
                self.nodes.remove(site);
            }
        }
    }

    /// Take back pending and firing series after a restart; alerts of rules that no longer
    /// exist are dropped (their keys are returned).
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
            self.node_mut(&a.site, &a.node).insert(
                a.key.clone(),
                Series {
                    rule,
                    site: a.site.clone(),
                    node: a.node.clone(),
                    labels: a.labels.clone(),
                    phase,
                    since: a.started_at,
                    clear_since: None,
                },
            );
            let r = &self.rules[rule];
            if phase == Phase::Pending && matches!(r.condition, Condition::Status(_)) {
                self.due.push(Reverse(a.started_at + r.for_ms));
            }
        }
        dropped
    }

    /// Evaluate one report received at `now` (collector clock) against every threshold,
    /// check and absent rule.
    pub fn on_report(&mut self, report: &Report, now: Millis) -> Vec<AlertTransition> {
        let absent_len = self.index.absent.len();
        let Evaluator {
            rules,
            index,
            nodes,
            ..
        } = self;
        let rules: &[Rule] = rules;
        let node = node_entry(nodes, &report.site, &report.node, absent_len);
        let (site, name) = (report.site.as_str(), report.node.as_str());
        let at = report.ts;
        let mut out = Vec::new();
        let empty = BTreeMap::new();

        // Reports arrive: stale series resolve, the stale clock restarts.
        let gap = node.last_report.map(|t| now - t);
        node.last_report = Some(now);
        for &r in &index.stale {
            if node.is_live(r) {
                let key = alert_key(&rules[r].name, site, name, &empty);
                let why = match gap {
                    Some(g) => format!("reports arrive again after {}", crate::time::human(g)),
                    None => "reports arrive again".to_string(),
                };
                out.extend(node.resolve(rules, &key, now, &Obs::Note(why)));
            }
        }

        // Keys of live series this report carries; the rest of this node's threshold and
        // check series resolve below.
        let mut seen: Vec<String> = Vec::new();
        let mut and_cache = None;
        for m in &report.metrics {
            let Some(entry) = index.by_metric.get(m.name.as_str()) else {
                continue;
            };
            let derived = if entry.derive {
                node.derive(m, report.ts)
            } else {
                Default::default()
            };
            for &r in &entry.rules {
                let rule = &rules[r];
                match &rule.condition {
                    Condition::Threshold { expr, clear, and } => {
                        // Cheapest test first: most samples are below their threshold and
                        // their node has no live series of the rule, so their labels (globs,
                        // regexes) are never looked at.
                        let live = node.is_live(r);
                        let Some(value) = derived.value(expr.func, m.value) else {
                            // No rate for this sample (first one, reset): a live series
                            // keeps its state.
                            if live && expr.selector.matches_labels(&m.labels) {
                                let key = alert_key(&rule.name, site, name, &m.labels);
                                if node.live().contains_key(&key) {
                                    seen.push(key);
                                }
                            }
                            continue;
                        };
                        let hit = expr.holds(value);
                        if (!hit && !live) || !expr.selector.matches_labels(&m.labels) {
                            continue;
                        }
                        let and_ok = and.as_ref().is_none_or(|a| {
                            and_holds(a, m, report, &index.and_metrics, &mut and_cache)
                        });
                        let active = hit && and_ok;
                        if !active && !live {
                            continue;
                        }
                        let clear_ok = !and_ok
                            || match clear {
                                Some(c) => c.holds(value),
                                None => !hit,
                            };
                        let key = alert_key(&rule.name, site, name, &m.labels);
                        if !active && !node.live().contains_key(&key) {
                            continue;
                        }
                        let obs = Obs::Metric {
                            metric: m,
                            value,
                            expr,
                            and: and.as_ref(),
                        };
                        let step = (active, clear_ok);
                        out.extend(node.step(
                            rules,
                            r,
                            &key,
                            (site, name),
                            &m.labels,
                            at,
                            step,
                            &obs,
                        ));
                        seen.push(key);
                    }
                    Condition::Absent {
                        metric: Some(sel), ..
                    } => {
                        if !sel.matches_labels(&m.labels) {
                            continue;
                        }
                        let Some(&ord) = index.absent_ord.get(&r) else {
                            continue;
                        };
                        let last = node.absent_seen[ord].replace(now);
                        if node.is_live(r) {
                            let key = alert_key(&rule.name, site, name, &empty);
                            let why = format!(
                                "{sel} samples arrive again after {}",
                                crate::time::human(last.map_or(0, |t| now - t))
                            );
                            out.extend(node.resolve(rules, &key, now, &Obs::Note(why)));
                        }
                    }
                    _ => {}
                }
            }
        }

        for c in &report.checks {
            for &r in &index.checks {
                let Condition::Check { pattern, statuses } = &rules[r].condition else {
                    continue;
                };
                if !pattern.matches(&c.name) {
                    continue;
                }
                let active = statuses.contains(&c.status);
                if !active && !node.is_live(r) {
                    continue;
                }
                let labels: BTreeMap<String, String> =
                    [("check".to_string(), c.name.clone())].into();
                let key = alert_key(&rules[r].name, site, name, &labels);
                if !active && !node.live().contains_key(&key) {
                    continue;
                }
                out.extend(node.step(
                    rules,
                    r,
                    &key,
                    (site, name),
                    &labels,
                    at,
                    (active, !active),
                    &Obs::Check(c),
                ));
                seen.push(key);
            }
        }

        node.prune(report.ts);

        // Live threshold and check series the report no longer carries resolve.
        if !node.live().is_empty() {
            seen.sort_unstable();
            let gone: Vec<String> = node
                .live()
                .iter()
                .filter(|(k, s)| {
                    matches!(
                        rules[s.rule].condition,
                        Condition::Threshold { .. } | Condition::Check { .. }
                    ) && seen.binary_search(k).is_err()
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in gone {
                let why = Obs::Note("no longer reported by the agent".into());
                out.extend(node.resolve(rules, &key, at, &why));
            }
        }

        // Metric-level absence: the node reports, but not the selected samples.
        for (ord, &r) in index.absent.iter().enumerate() {
            let Condition::Absent { after_ms, .. } = rules[r].condition else {
                continue;
            };
            let Some(last) = node.absent_seen[ord] else {
                continue;
            };
            if now - last >= after_ms && !node.is_live(r) {
                out.push(fire_absent(rules, node, r, site, name, last, now));
            }
        }
        out
    }

    /// Evaluate node-status rules for a status change received at `now`; a clean stop also
    /// ends the node's absent alerts and stops watching it until it reports again.
    pub fn on_status(
        &mut self,
        now: Millis,
        site: &str,
        node: &str,
        state: NodeState,
    ) -> Vec<AlertTransition> {
        let known = self.nodes.get(site).is_some_and(|n| n.contains_key(node));
        if !known && state == NodeState::Stopped {
            return Vec::new();
        }
        let absent_len = self.index.absent.len();
        let Evaluator {
            rules,
            index,
            nodes,
            due,
        } = self;
        let rules: &[Rule] = rules;
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        let n = node_entry(nodes, site, node, absent_len);
        for &r in &index.statuses {
            let Condition::Status(When::Offline) = rules[r].condition else {
                continue;
            };
            let key = alert_key(&rules[r].name, site, node, &empty);
            let active = state == NodeState::Offline;
            if active && rules[r].for_ms > 0 && !n.is_live(r) {
                due.push(Reverse(now + rules[r].for_ms));
            }
            out.extend(n.step(
                rules,
                r,
                &key,
                (site, node),
                &empty,
                now,
                (active, !active),
                &Obs::Status(state),
            ));
        }
        match state {
            NodeState::Online | NodeState::Offline => {
                if n.last_report.is_none() {
                    n.last_report = Some(now);
                }
            }
            NodeState::Stopped => {
                for &r in index.stale.iter().chain(&index.absent) {
                    if n.is_live(r) {
                        let key = alert_key(&rules[r].name, site, node, &empty);
                        let why = Obs::Note(
                            "the agent stopped cleanly: no data is expected until it reports again"
                                .into(),
                        );
                        out.extend(n.resolve(rules, &key, now, &why));
                    }
                }
                n.last_report = None;
                n.prev.clear();
                n.absent_seen.fill(None);
            }
        }
        self.drop_if_idle(site, node);
        out
    }

    /// After a restart: the node last reported at `last_report` (collector clock), so a node
    /// that fell silent while the collector was down still goes stale.
    pub fn seed(&mut self, site: &str, node: &str, last_report: Millis) {
        let absent = self.index.absent.len();
        let n = node_entry(&mut self.nodes, site, node, absent);
        if n.last_report.is_none() {
            n.last_report = Some(last_report);
        }
    }

    /// Promote node-status series whose `for` elapsed and fire node-level absent rules
    /// whose nodes sent nothing for `absent_for`, at the collector's `now`.
    pub fn tick(&mut self, now: Millis) -> Vec<AlertTransition> {
        let Evaluator {
            rules,
            index,
            nodes,
            due,
        } = self;
        let rules: &[Rule] = rules;
        while due.peek().is_some_and(|Reverse(t)| *t <= now) {
            due.pop();
        }
        let mut out = Vec::new();
        for (site, site_nodes) in nodes.iter_mut() {
            for (name, node) in site_nodes.iter_mut() {
                for (key, s) in node.live_mut() {
                    let rule = &rules[s.rule];
                    if s.phase == Phase::Pending
                        && matches!(rule.condition, Condition::Status(_))
                        && now - s.since >= rule.for_ms
                    {
                        s.phase = Phase::Firing;
                        let obs = Obs::Status(NodeState::Offline);
                        out.push(transition(rule, key, s, AlertState::Firing, now, &obs));
                    }
                }
                let Some(last) = node.last_report else {
                    continue;
                };
                for &r in &index.stale {
                    let Condition::Absent { after_ms, .. } = rules[r].condition else {
                        continue;
                    };
                    if now - last >= after_ms && !node.is_live(r) {
                        out.push(fire_absent(rules, node, r, site, name, last, now));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Swap in new rules at `now`. Series of rules that still exist by name, with the same
    /// kind of condition, are kept; the others resolve ("rule <name> was removed on
    /// reload"). Previous samples no rule needs any more are dropped.
    pub fn reload(&mut self, rules: Vec<Rule>, now: Millis) -> Vec<AlertTransition> {
        let old_rules = std::mem::replace(&mut self.rules, rules);
        let old_index = std::mem::replace(&mut self.index, Index::build(&self.rules));
        let by_name: HashMap<&str, usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        // Old absent ordinal -> new ordinal, by rule name.
        let absent_map: Vec<Option<usize>> = old_index
            .absent
            .iter()
            .map(|&old| {
                let new = *by_name.get(old_rules[old].name.as_str())?;
                self.index.absent_ord.get(&new).copied()
            })
            .collect();
        let absent_len = self.index.absent.len();
        let mut out = Vec::new();
        for site_nodes in self.nodes.values_mut() {
            for node in site_nodes.values_mut() {
                let live = node.take_live();
                for (key, mut s) in live {
                    let old = &old_rules[s.rule];
                    match by_name.get(old.name.as_str()) {
                        Some(&new) if self.rules[new].condition.kind() == old.condition.kind() => {
                            s.rule = new;
                            node.insert(key, s);
                        }
                        found => {
                            let why = match found {
                                Some(&new) => format!(
                                    "rule {} changed from a {} to a {} rule on reload",
                                    old.name,
                                    old.condition.kind(),
                                    self.rules[new].condition.kind()
                                ),
                                None => format!("rule {} was removed on reload", old.name),
                            };
                            out.push(transition(
                                old,
                                &key,
                                &s,
                                AlertState::Resolved,
                                now,
                                &Obs::Note(why),
                            ));
                        }
                    }
                }
                let mut seen = vec![None; absent_len];
                for (old_ord, new_ord) in absent_map.iter().enumerate() {
                    if let (Some(new_ord), Some(t)) = (new_ord, node.absent_seen.get(old_ord)) {
                        seen[*new_ord] = *t;
                    }
                }
                node.absent_seen = seen.into_boxed_slice();
                let index = &self.index;
                node.prev.retain(|p| index.derives(&p.metric));
            }
            site_nodes.retain(|_, n| !n.is_idle());
        }
        self.nodes.retain(|_, n| !n.is_empty());
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Keys of the live series, sorted (for tests and diagnostics).
    pub fn live_keys(&self) -> Vec<String> {
        let keys: BTreeSet<String> = self
            .nodes
            .values()
            .flat_map(|n| n.values())
            .flat_map(|n| n.live().keys().cloned())
            .collect();
        keys.into_iter().collect()
    }
}

/// The state of `site`/`node`, created when first seen.
fn node_entry<'a>(nodes: &'a mut Nodes, site: &str, node: &str, absent: usize) -> &'a mut NodeData {
    // Look up by &str first: the common case (a known node) allocates nothing.
    if !nodes.get(site).is_some_and(|n| n.contains_key(node)) {
        nodes
            .entry(site.to_string())
            .or_default()
            .insert(node.to_string(), NodeData::new(absent));
    }
    nodes
        .get_mut(site)
        .and_then(|n| n.get_mut(node))
        .expect("node entry exists: inserted above when missing")
}

/// Start a firing absent series: the data stopped at `last`, noticed at `now`.
fn fire_absent(
    rules: &[Rule],
    node: &mut NodeData,
    r: usize,
    site: &str,
    name: &str,
    last: Millis,
    now: Millis,
) -> AlertTransition {
    let rule = &rules[r];
    let labels = BTreeMap::new();
    let key = alert_key(&rule.name, site, name, &labels);
    let s = Series {
        rule: r,
        site: site.to_string(),
        node: name.to_string(),
        labels,
        phase: Phase::Firing,
        since: last,
        clear_since: None,
    };
    let t = transition(
        rule,
        &key,
        &s,
        AlertState::Firing,
        now,
        &Obs::Absent { age_ms: now - last },
    );
    node.insert(key, s);
    t
}
