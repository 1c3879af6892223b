//! Prometheus targets checked against the collector's `/metrics`: every metric a query names
//! is exported, counters only inside rate()/increase(), gauges never, and the labels it
//! matches or groups by exist.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The collector's exposition: metric name -> type, and the label sets of its samples.
#[derive(Default)]
pub(crate) struct Exposition {
    types: HashMap<String, String>,
    samples: HashMap<String, Vec<BTreeMap<String, String>>>,
}

impl Exposition {
    pub(crate) fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(n), Some(t)) = (parts.next(), parts.next()) {
                    e.types.insert(n.into(), t.into());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let set = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                .collect();
            e.samples.entry(name.to_string()).or_default().push(set);
        }
        e
    }
}

/// A metric named in a PromQL expression.
#[derive(Debug)]
struct MetricUse {
    name: String,
    /// (label, operator, value)
    matchers: Vec<(String, String, String)>,
    /// Inside rate(), irate() or increase().
    in_rate: bool,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const RATES: &[&str] = &["rate", "irate", "increase"];
/// Labels Prometheus adds at scrape time.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Metrics and grouping labels of a PromQL expression (enough PromQL for dashboards:
/// functions, aggregations with by/without, matchers, ranges, binary operators).
fn scan_promql(expr: &str) -> Result<(Vec<MetricUse>, Vec<String>), String> {
    let c: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut metrics: Vec<MetricUse> = Vec::new();
    let mut grouping = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    let mut last_metric: Option<usize> = None;
    let skip_string = |i: &mut usize| {
        let q = c[*i];
        *i += 1;
        while *i < c.len() && c[*i] != q {
            if c[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' || ch == '\'' || ch == '`' {
            skip_string(&mut i);
            last_metric = None;
        } else if ch == '{' {
            let start = i + 1;
            while i < c.len() && c[i] != '}' {
                if c[i] == '"' {
                    skip_string(&mut i);
                } else {
                    i += 1;
                }
            }
            let inner: String = c[start..i.min(c.len())].iter().collect();
            i += 1;
            let m = last_metric
                .ok_or_else(|| format!("matchers without a metric name: {{{inner}}}"))?;
            for part in inner.split(',').filter(|p| !p.trim().is_empty()) {
                let op = ["=~", "!~", "!=", "="]
                    .into_iter()
                    .find(|op| part.contains(op))
                    .ok_or_else(|| format!("matcher {part:?} has no operator"))?;
                let (l, v) = part.split_once(op).unwrap_or_default();
                metrics[m].matchers.push((
                    l.trim().to_string(),
                    op.to_string(),
                    v.trim().trim_matches('"').to_string(),
                ));
            }
            last_metric = None;
        } else if ch == '[' {
            while i < c.len() && c[i] != ']' {
                i += 1;
            }
            i += 1;
            last_metric = None;
        } else if ch == '(' {
            stack.push(pending.take().unwrap_or_default());
            i += 1;
            last_metric = None;
        } else if ch == ')' {
            stack.pop();
            i += 1;
            last_metric = None;
        } else if ch.is_ascii_digit() || ch == '.' {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            last_metric = None;
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut j = i;
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            let call = j < c.len() && c[j] == '(';
            last_metric = None;
            if GROUPING.contains(&word.as_str()) {
                if call {
                    let end = c[j..]
                        .iter()
                        .position(|x| *x == ')')
                        .map(|p| j + p)
                        .ok_or("unclosed label list")?;
                    let labels: String = c[j + 1..end].iter().collect();
                    grouping.extend(
                        labels
                            .split(',')
                            .map(|l| l.trim().to_string())
                            .filter(|l| !l.is_empty()),
                    );
                    i = end + 1;
                }
            } else if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                // An operator or a number word: nothing to record.
                continue;
            } else if call || AGGREGATIONS.contains(&word.as_str()) {
                pending = Some(word);
            } else {
                metrics.push(MetricUse {
                    name: word,
                    matchers: Vec::new(),
                    in_rate: stack.iter().any(|f| RATES.contains(&f.as_str())),
                });
                last_metric = Some(metrics.len() - 1);
            }
        } else if ch == '$' {
            // A variable outside a matcher or range (e.g. an offset): skip it.
            i += 1;
            if i < c.len() && c[i] == '{' {
                while i < c.len() && c[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
            last_metric = None;
        } else {
            i += 1;
            last_metric = None;
        }
    }
    Ok((metrics, grouping))
}

/// Check one PromQL expression against the exposition.
pub(crate) fn check_promql(expr: &str, e: &Exposition) -> Result<(), String> {
    let (metrics, grouping) = scan_promql(expr)?;
    if metrics.is_empty() {
        return Err("names no metric".into());
    }
    let mut labels_seen = BTreeSet::new();
    for m in &metrics {
        let samples = e.samples.get(&m.name).ok_or_else(|| {
            let mut known: Vec<&String> = e.samples.keys().collect();
            known.sort();
            format!("metric {} is not in /metrics (it has {known:?})", m.name)
        })?;
        for s in samples {
            labels_seen.extend(s.keys().cloned());
        }
        match e.types.get(&m.name).map(String::as_str) {
            Some("counter") if !m.in_rate => {
                return Err(format!("{} is a counter: use rate() or increase()", m.name));
            }
            Some("gauge") if m.in_rate => {
                return Err(format!("{} is a gauge: rate() of it means nothing", m.name));
            }
            _ => {}
        }
        for (label, op, value) in &m.matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            if !samples.iter().any(|s| s.contains_key(label)) {
                return Err(format!("{} has no label {label:?}", m.name));
            }
            if op == "="
                && !value.contains('$')
                && !samples.iter().any(|s| s.get(label) == Some(value))
            {
                return Err(format!("{} has no sample with {label}={value:?}", m.name));
            }
        }
    }
    for g in &grouping {
        if !TARGET_LABELS.contains(&g.as_str()) && !labels_seen.contains(g) {
            return Err(format!(
                "grouping by {g:?}, a label none of its metrics has"
            ));
        }
    }
    Ok(())
}

/// `label_values(metric{...}, label)` of a variable query.
pub(crate) fn check_label_values(query: &str, e: &Exposition) -> Result<(), String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("{query:?} is not label_values(metric, label)"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("{query:?} names no label"))?;
    let label = label.trim();
    if !TARGET_LABELS.contains(&label) {
        return Err(format!("{label:?} is not a label Prometheus adds"));
    }
    check_promql(&format!("max({selector})"), e)
}
