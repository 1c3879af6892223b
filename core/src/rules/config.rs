//! Rule files (`rules/*.toml`, `[[rule]]` tables): one raw rule validated into a [`Rule`].
//!
//! Reading files, spans and line numbers, duplicate names: see [`super::check`].

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_protocol::CheckStatus;
use toml::Spanned;

use super::expr::{Cmp, Expr, Func, Glob, Selector};
use super::template::Template;
use crate::time::{Millis, millis};

pub use super::check::{RuleError, check_dir, check_text, load_rules_dir, parse_rules};

/// How bad an alert is; maps to ticket urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// The service-desk classification of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Hardware,
    Software,
    Network,
    Configuration,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Hardware => "hardware",
            Category::Software => "software",
            Category::Network => "network",
            Category::Configuration => "configuration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hardware" => Some(Category::Hardware),
            "software" => Some(Category::Software),
            "network" => Some(Category::Network),
            "configuration" => Some(Category::Configuration),
            _ => None,
        }
    }
}

/// Node-status conditions a rule can fire on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// The agent's last will arrived: it vanished without a clean stop.
    Offline,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "offline" => Some(When::Offline),
            _ => None,
        }
    }
}

/// Every key a `[[rule]]` table accepts (docs/RULES.md documents each; a test checks it).
pub const RULE_KEYS: &[&str] = &[
    "name",
    "expr",
    "check",
    "status",
    "when",
    "absent_for",
    "metric",
    "and",
    "clear",
    "for",
    "keep_firing_for",
    "severity",
    "category",
    "summary",
    "description",
    "runbook",
    "group_by",
    "node_down",
];

/// A rule exactly as written in TOML, every value with its byte span in the file (for
/// messages that name the line). Everything is optional here so that one pass can report
/// every missing or wrong key at once; [`Rule::from_raw`] decides what is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<Spanned<String>>,
    /// Threshold: `[rate(|resets(]metric{labels}[)] > number`.
    pub expr: Option<Spanned<String>>,
    /// Check status: glob over check names.
    pub check: Option<Spanned<String>>,
    /// With `check`: the statuses that fire (default `["critical"]`).
    pub status: Option<Spanned<Vec<String>>>,
    /// Node status condition (`offline`).
    pub when: Option<Spanned<String>>,
    /// Missing data: no report (alone) or no `metric` sample (with `metric`) for this long.
    pub absent_for: Option<Spanned<String>>,
    /// With `absent_for`: the selector whose samples must keep arriving.
    pub metric: Option<Spanned<String>>,
    /// With `expr`: a second comparison on the same-labelled sample of the same report.
    pub and: Option<Spanned<String>>,
    /// Hysteresis for thresholds: resolves only when this holds.
    pub clear: Option<Spanned<String>>,
    /// Pending this long before firing.
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    /// Once firing, resolve only after the clear condition held this long.
    pub keep_firing_for: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    pub category: Option<Spanned<String>>,
    pub summary: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub runbook: Option<Spanned<String>>,
    pub group_by: Option<Spanned<Vec<String>>>,
    pub node_down: Option<Spanned<bool>>,
}

/// What a rule watches.
#[derive(Debug, Clone)]
pub enum Condition {
    Threshold {
        expr: Expr,
        /// Resolve only when this holds (default: when `expr` no longer holds).
        clear: Option<Expr>,
        /// Must hold too, on the sample with the same labels in the same report.
        and: Option<Expr>,
    },
    Check {
        /// Glob over check names.
        pattern: Glob,
        statuses: Vec<CheckStatus>,
    },
    Status(When),
    /// Data stopped arriving, judged on the collector's clock: no report from the node
    /// (`metric` is `None`) or no sample picked by `metric` for `after_ms`.
    Absent {
        metric: Option<Selector>,
        after_ms: Millis,
    },
}

impl Condition {
    /// `threshold`, `check`, `status` or `absent`: series survive a reload only within a kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Threshold { .. } => "threshold",
            Condition::Check { .. } => "check",
            Condition::Status(_) => "status",
            Condition::Absent { .. } => "absent",
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    pub for_ms: Millis,
    /// Once firing, the clear condition must hold this long before the series resolves.
    pub keep_firing_for_ms: Millis,
    pub severity: Severity,
    pub category: Category,
    pub summary: Template,
    /// Longer text for the ticket; empty when not given.
    pub description: Option<Template>,
    /// Knowledge-base reference, e.g. `kb/filesystem-full.md`.
    pub runbook: Option<String>,
    /// Labels (of the alert, else of the node) whose equal values group alerts of different
    /// nodes into one incident, e.g. `["service"]`.
    pub group_by: Vec<String>,
    /// Firing means the node itself is down or unreachable: alerts of nodes beneath it in the
    /// topology become symptoms of its incident.
    pub node_down: bool,
    /// File the rule came from, for messages.
    pub source: String,
}

/// One problem of one rule: the byte span it points at and the message.
pub type RawError = (Range<usize>, String);

/// Placeholders every rule may use.
const COMMON_PLACEHOLDERS: &[&str] = &["node", "site", "rule", "severity", "category", "for"];

/// The placeholders (besides [`COMMON_PLACEHOLDERS`]) a rule of this kind can fill, and
/// whether `labels.<key>` means anything for it.
pub fn kind_placeholders(condition: &Condition) -> (&'static [&'static str], bool) {
    match condition {
        Condition::Threshold { .. } => (&["value", "threshold", "metric", "keep_firing_for"], true),
        Condition::Check { .. } => (
            &["value", "check", "status", "output", "keep_firing_for"],
            true,
        ),
        Condition::Status(_) => (&[], false),
        Condition::Absent {
            metric: Some(_), ..
        } => (&["value", "absent_for", "metric"], false),
        Condition::Absent { metric: None, .. } => (&["value", "absent_for"], false),
    }
}

fn duration(key: &str, v: &Spanned<String>, errs: &mut Vec<RawError>) -> Option<Millis> {
    match humantime::parse_duration(v.get_ref().trim()) {
        Ok(d) => Some(millis(d)),
        Err(_) => {
            errs.push((
                v.span(),
                format!(
                    "{key} = {:?} is not a duration (write e.g. \"90s\", \"5m\", \"4h\", \"3d\")",
                    v.get_ref()
                ),
            ));
            None
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_]{0,63}`, as the protocol accepts label keys.
pub fn is_valid_label_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why `clear` does not bound `expr`, if it does not: same metric, labels and function,
/// opposite direction, threshold on the resolving side.
pub fn clear_bound_error(expr: &Expr, clear: &Expr) -> Option<String> {
    if clear.func != expr.func {
        return Some(format!(
            "clear {clear:?} must apply the same function as expr {expr:?}",
            clear = clear.to_string(),
            expr = expr.to_string()
        ));
    }
    if !clear.selector.same_as(&expr.selector) {
        return Some(format!(
            "clear must test the same metric and labels as expr ({})",
            expr.selector
        ));
    }
    let ok = match expr.cmp {
        Cmp::Gt | Cmp::Ge => {
            matches!(clear.cmp, Cmp::Lt | Cmp::Le) && clear.threshold <= expr.threshold
        }
        Cmp::Lt | Cmp::Le => {
            matches!(clear.cmp, Cmp::Gt | Cmp::Ge) && clear.threshold >= expr.threshold
        }
        Cmp::Eq | Cmp::Ne => {
            return Some(format!(
                "expr {:?} compares with {}: it has no side to clear on, drop clear",
                expr.to_string(),
                expr.cmp.as_str()
            ));
        }
    };
    if ok {
        return None;
    }
    let (dir, bound) = match expr.cmp {
        Cmp::Gt | Cmp::Ge => ("< or <=", "at most"),
        _ => ("> or >=", "at least"),
    };
    Some(format!(
        "clear {:?} does not bound expr {:?}: it must compare with {dir} a threshold {bound} {}",
        clear.to_string(),
        expr.to_string(),
        super::template::format_value(expr.threshold)
    ))
}

impl Rule {
    /// Validate one raw rule; every problem found is returned, each with its span.
    /// `table` is the span of the whole `[[rule]]` table (for missing keys).
    pub fn from_raw(
        raw: RawRule,
        source: &str,
        table: Range<usize>,
    ) -> Result<Rule, Vec<RawError>> {
        let mut errs: Vec<RawError> = Vec::new();
        let name = match &raw.name {
            Some(n) if tocsin_protocol::is_valid_name(n.get_ref()) => n.get_ref().clone(),
            Some(n) => {
                errs.push((n.span(), "name must match [A-Za-z0-9._-]{1,64}".into()));
                n.get_ref().clone()
            }
            None => {
                errs.push((table.clone(), "name is missing".into()));
                String::new()
            }
        };
        let severity = required(&raw.severity, "severity", &table, &mut errs).and_then(|s| {
            let parsed = Severity::parse(s.get_ref());
            if parsed.is_none() {
                errs.push((
                    s.span(),
                    format!(
                        "severity {:?} is not one of critical, warning, info",
                        s.get_ref()
                    ),
                ));
            }
            parsed
        });
        let category = required(&raw.category, "category", &table, &mut errs).and_then(|c| {
            let parsed = Category::parse(c.get_ref());
            if parsed.is_none() {
                errs.push((
                    c.span(),
                    format!(
                        "category {:?} is not one of hardware, software, network, configuration",
                        c.get_ref()
                    ),
                ));
            }
            parsed
        });
        let summary = required(&raw.summary, "summary", &table, &mut errs).and_then(|s| {
            Template::parse(s.get_ref())
                .map_err(|e| errs.push((s.span(), format!("summary: {e}"))))
                .ok()
        });
        let description = raw.description.as_ref().and_then(|s| {
            Template::parse(s.get_ref())
                .map_err(|e| errs.push((s.span(), format!("description: {e}"))))
                .ok()
        });
        let for_ms = raw
            .for_
            .as_ref()
            .and_then(|v| duration("for", v, &mut errs));
        let keep_ms = raw
            .keep_firing_for
            .as_ref()
            .and_then(|v| duration("keep_firing_for", v, &mut errs));
        let absent_ms = raw
            .absent_for
            .as_ref()
            .and_then(|v| duration("absent_for", v, &mut errs));
        let mut group_by = Vec::new();
        if let Some(g) = &raw.group_by {
            for label in g.get_ref() {
                if !is_valid_label_name(label) {
                    errs.push((
                        g.span(),
                        format!("group_by: {label:?} is not a label name ([A-Za-z_][A-Za-z0-9_]{{0,63}})"),
                    ));
                } else if group_by.contains(label) {
                    errs.push((g.span(), format!("group_by names {label:?} twice")));
                } else {
                    group_by.push(label.clone());
                }
            }
        }

        let condition = condition(&raw, absent_ms, &table, &mut errs);

        // Keys that only some kinds can use.
        if let Some(cond) = &condition {
            let kind = cond.kind();
            let misplaced: [(bool, &Option<Spanned<String>>, &str); 5] = [
                (
                    kind != "threshold",
                    &raw.clear,
                    "clear only goes with expr (threshold rules)",
                ),
                (
                    kind != "threshold",
                    &raw.and,
                    "and only goes with expr (threshold rules)",
                ),
                (
                    kind != "absent",
                    &raw.metric,
                    "metric only goes with absent_for (a threshold names its metric in expr)",
                ),
                (
                    matches!(kind, "status" | "absent"),
                    &raw.keep_firing_for,
                    "keep_firing_for only goes with expr or check: status and absent alerts resolve as soon as the node or its data is back",
                ),
                (
                    kind == "absent",
                    &raw.for_,
                    "for does not go with absent_for: absent_for already is the wait",
                ),
            ];
            for (wrong, value, msg) in misplaced {
                if let (true, Some(v)) = (wrong, value) {
                    errs.push((v.span(), msg.to_string()));
                }
            }
            if let (true, Some(s)) = (kind != "check", &raw.status) {
                errs.push((s.span(), "status only goes with check".into()));
            }
            if let (true, Some(v)) = (kind == "absent" && absent_ms == Some(0), &raw.absent_for) {
                errs.push((v.span(), "absent_for must be longer than 0s".into()));
            }
            // Placeholders must be ones this kind of rule fills.
            let (extra, labels_ok) = kind_placeholders(cond);
            for (key, raw_t, t) in [
                ("summary", &raw.summary, summary.as_ref()),
                ("description", &raw.description, description.as_ref()),
            ] {
                let (Some(raw_t), Some(t)) = (raw_t, t) else {
                    continue;
                };
                for p in t.placeholders() {
                    let ok = COMMON_PLACEHOLDERS.contains(&p)
                        || extra.contains(&p)
                        || (labels_ok && p.starts_with("labels."));
                    if !ok {
                        let mut usable: Vec<&str> =
                            COMMON_PLACEHOLDERS.iter().chain(extra).copied().collect();
                        if labels_ok {
                            usable.push("labels.<key>");
                        }
                        errs.push((
                            raw_t.span(),
                            format!(
                                "{key}: placeholder {{{{{p}}}}} means nothing in a {kind} rule (usable: {})",
                                usable.join(", ")
                            ),
                        ));
                    }
                }
            }
        }

        let node_down = match (&raw.node_down, &condition) {
            (Some(v), _) => *v.get_ref(),
            (None, Some(Condition::Status(_))) => true,
            (None, Some(Condition::Absent { metric: None, .. })) => true,
            (None, _) => false,
        };
        match (condition, severity, category, summary) {
            (Some(condition), Some(severity), Some(category), Some(summary)) if errs.is_empty() => {
                Ok(Rule {
                    name,
                    condition,
                    for_ms: for_ms.unwrap_or(0),
                    keep_firing_for_ms: keep_ms.unwrap_or(0),
                    severity,
                    category,
                    summary,
                    description,
                    runbook: raw.runbook.map(Spanned::into_inner),
                    group_by,
                    node_down,
                    source: source.to_string(),
                })
            }
            _ => Err(errs),
        }
    }
}

fn required<'a, T>(
    v: &'a Option<Spanned<T>>,
    key: &str,
    table: &Range<usize>,
    errs: &mut Vec<RawError>,
) -> Option<&'a Spanned<T>> {
    if v.is_none() {
        errs.push((table.clone(), format!("{key} is missing")));
    }
    v.as_ref()
}

/// The rule's condition from whichever of expr, check, when, absent_for it has.
fn condition(
    raw: &RawRule,
    absent_ms: Option<Millis>,
    table: &Range<usize>,
    errs: &mut Vec<RawError>,
) -> Option<Condition> {
    let given = [
        raw.expr.is_some(),
        raw.check.is_some(),
        raw.when.is_some(),
        raw.absent_for.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        errs.push((
            table.clone(),
            "give exactly one of expr (threshold), check (check status), when (node status) or absent_for (missing data)".into(),
        ));
        return None;
    }
    if let Some(e) = &raw.expr {
        let expr = Expr::parse(e.get_ref())
            .map_err(|m| errs.push((e.span(), m)))
            .ok();
        let clear = raw.clear.as_ref().and_then(|c| {
            let clear = Expr::parse(c.get_ref())
                .map_err(|m| errs.push((c.span(), format!("clear: {m}"))))
                .ok()?;
            if let Some(msg) = expr.as_ref().and_then(|e| clear_bound_error(e, &clear)) {
                errs.push((c.span(), msg));
            }
            Some(clear)
        });
        let and = raw.and.as_ref().and_then(|a| {
            let and = Expr::parse(a.get_ref())
                .map_err(|m| errs.push((a.span(), format!("and: {m}"))))
                .ok()?;
            if and.func != Func::Value {
                errs.push((
                    a.span(),
                    "and takes a plain comparison of a metric, without rate() or resets()".into(),
                ));
            }
            Some(and)
        });
        return Some(Condition::Threshold {
            expr: expr?,
            clear,
            and,
        });
    }
    if let Some(pattern) = &raw.check {
        let mut statuses = Vec::new();
        let (names, span) = match &raw.status {
            Some(s) => (s.get_ref().clone(), s.span()),
            None => (vec!["critical".to_string()], pattern.span()),
        };
        for s in &names {
            match CheckStatus::parse(s) {
                Some(CheckStatus::Ok) => {
                    errs.push((span.clone(), "a rule cannot fire on status ok".into()));
                }
                Some(st) => statuses.push(st),
                None => errs.push((
                    span.clone(),
                    format!("status {s:?} is not one of warning, critical, unknown"),
                )),
            }
        }
        if names.is_empty() {
            errs.push((span, "status must name at least one status".into()));
        }
        return Some(Condition::Check {
            pattern: Glob::new(pattern.get_ref()),
            statuses,
        });
    }
    if let Some(w) = &raw.when {
        return match When::parse(w.get_ref()) {
            Some(when) => Some(Condition::Status(when)),
            None => {
                errs.push((
                    w.span(),
                    format!(
                        "when {:?} is not a node status rules fire on (offline)",
                        w.get_ref()
                    ),
                ));
                None
            }
        };
    }
    let metric = match &raw.metric {
        Some(m) => Some(
            Selector::parse(m.get_ref())
                .map_err(|msg| errs.push((m.span(), format!("metric: {msg}"))))
                .ok()?,
        ),
        None => None,
    };
    Some(Condition::Absent {
        metric,
        after_ms: absent_ms?,
    })
}

/// A duration for people, as the rule files write them (`5m`, `1h 30m`).
pub fn format_duration(ms: Millis) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    humantime::format_duration(Duration::from_millis(ms as u64)).to_string()
}
