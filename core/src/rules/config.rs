//! Rule files (`rules/*.toml`, `[[rule]]` tables): parsing and validation into [`Rule`]s.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_protocol::CheckStatus;

use super::expr::Expr;
use super::template::Template;
use crate::time::{Millis, millis};

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

/// A rule exactly as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    /// Threshold: `metric{labels} > number`.
    pub expr: Option<String>,
    /// Check status: glob over check names.
    pub check: Option<String>,
    /// With `check`: the statuses that fire (default `["critical"]`).
    pub status: Option<Vec<String>>,
    /// Node status condition.
    pub when: Option<When>,
    /// Pending this long before firing.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// Hysteresis for thresholds: resolves only when this holds.
    pub clear: Option<String>,
    pub severity: Severity,
    pub category: Category,
    pub summary: String,
    pub runbook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

/// What a rule watches.
#[derive(Debug, Clone)]
pub enum Condition {
    Threshold {
        expr: Expr,
        clear: Option<Expr>,
    },
    Check {
        pattern: String,
        statuses: Vec<CheckStatus>,
    },
    Status(When),
}

enum ConditionKind {
    Status,
    Other,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    pub for_ms: Millis,
    pub severity: Severity,
    pub category: Category,
    pub summary: Template,
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

impl Rule {
    /// Validate one raw rule.
    pub fn from_raw(raw: RawRule, source: &str) -> Result<Rule, String> {
        let name = &raw.name;
        if !tocsin_protocol::is_valid_name(name) {
            return Err(format!(
                "rule {name:?}: name must match [A-Za-z0-9._-]{{1,64}}"
            ));
        }
        let condition = match (&raw.expr, &raw.check, &raw.when) {
            (Some(expr), None, None) => {
                let expr = Expr::parse(expr).map_err(|e| format!("rule {name:?}: {e}"))?;
                let clear = match &raw.clear {
                    Some(c) => {
                        let clear =
                            Expr::parse(c).map_err(|e| format!("rule {name:?}: clear: {e}"))?;
                        if clear.metric != expr.metric {
                            return Err(format!(
                                "rule {name:?}: clear must test the same metric as expr ({})",
                                expr.metric
                            ));
                        }
                        Some(clear)
                    }
                    None => None,
                };
                if raw.status.is_some() {
                    return Err(format!("rule {name:?}: status only goes with check"));
                }
                Condition::Threshold { expr, clear }
            }
            (None, Some(pattern), None) => {
                if raw.clear.is_some() {
                    return Err(format!("rule {name:?}: clear only goes with expr"));
                }
                let names = raw
                    .status
                    .clone()
                    .unwrap_or_else(|| vec!["critical".into()]);
                let mut statuses = Vec::new();
                for s in &names {
                    let st = CheckStatus::parse(s).ok_or_else(|| {
                        format!("rule {name:?}: status {s:?} is not one of ok, warning, critical, unknown")
                    })?;
                    if st == CheckStatus::Ok {
                        return Err(format!("rule {name:?}: a rule cannot fire on status ok"));
                    }
                    statuses.push(st);
                }
                if statuses.is_empty() {
                    return Err(format!(
                        "rule {name:?}: status must name at least one status"
                    ));
                }
                Condition::Check {
                    pattern: pattern.clone(),
                    statuses,
                }
            }
            (None, None, Some(when)) => {
                if raw.clear.is_some() || raw.status.is_some() {
                    return Err(format!(
                        "rule {name:?}: clear and status do not go with when"
                    ));
                }
                Condition::Status(*when)
            }
            _ => {
                return Err(format!(
                    "rule {name:?}: give exactly one of expr (threshold), check (check status) or when (node status)"
                ));
            }
        };
        let condition_kind = match &condition {
            Condition::Status(_) => ConditionKind::Status,
            _ => ConditionKind::Other,
        };
        let summary =
            Template::parse(&raw.summary).map_err(|e| format!("rule {name:?}: summary: {e}"))?;
        Ok(Rule {
            name: raw.name.clone(),
            condition,
            for_ms: raw.for_.map(millis).unwrap_or(0),
            severity: raw.severity,
            category: raw.category,
            summary,
            runbook: raw.runbook,
            group_by: Vec::new(),
            node_down: matches!(condition_kind, ConditionKind::Status),
            source: source.to_string(),
        })
    }
}

/// Parse one rule file's text; `source` names it in errors.
pub fn parse_rules(source: &str, text: &str) -> Result<Vec<Rule>, String> {
    let file: RuleFile =
        toml::from_str(text).map_err(|e| crate::error::one_line(&e.to_string()))?;
    file.rule
        .into_iter()
        .map(|r| Rule::from_raw(r, source))
        .collect()
}

/// Load every `*.toml` in `dir` except `policy.toml`, in name order; rule names must be unique.
pub fn load_rules_dir(dir: &Path) -> Result<Vec<Rule>, crate::error::ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| crate::error::ConfigError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "policy.toml"))
        .collect();
    files.sort();
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|source| crate::error::ConfigError::Read {
                path: path.clone(),
                source,
            })?;
        let source = path.display().to_string();
        let parsed =
            parse_rules(&source, &text).map_err(|message| crate::error::ConfigError::Parse {
                path: path.clone(),
                message,
            })?;
        for rule in parsed {
            if !names.insert(rule.name.clone()) {
                return Err(crate::error::ConfigError::Parse {
                    path: path.clone(),
                    message: format!("rule {:?} is defined twice", rule.name),
                });
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let rules = parse_rules(
            "t.toml",
            r#"
            [[rule]]
            name = "filesystem_almost_full"
            expr = "fs.used_pct > 90"
            for = "5m"
            clear = "fs.used_pct < 85"
            severity = "warning"
            category = "hardware"
            summary = "{{node}}: {{labels.mount}} is {{value}}% full"
            runbook = "kb/filesystem-full.md"

            [[rule]]
            name = "check_failed"
            check = "tcp:*"
            status = ["critical", "unknown"]
            severity = "critical"
            category = "software"
            summary = "{{check}} is {{status}}"

            [[rule]]
            name = "node_offline"
            when = "offline"
            for = "30s"
            severity = "critical"
            category = "network"
            summary = "{{node}} is offline"
            "#,
        )
        .expect("valid rules");
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].for_ms, 300_000);
        assert!(matches!(
            rules[0].condition,
            Condition::Threshold { clear: Some(_), .. }
        ));
        assert!(
            matches!(&rules[1].condition, Condition::Check { statuses, .. } if statuses.len() == 2)
        );
        assert!(matches!(
            rules[2].condition,
            Condition::Status(When::Offline)
        ));
    }

    #[test]
    fn refuses_bad_rules() {
        let base = r#"severity = "warning"
            category = "hardware"
            summary = "x""#;
        let cases = [
            format!("[[rule]]\nname = \"a\"\n{base}"),
            format!("[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\ncheck = \"*\"\n{base}"),
            format!("[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\nclear = \"y < 1\"\n{base}"),
            format!("[[rule]]\nname = \"a\"\ncheck = \"*\"\nstatus = [\"ok\"]\n{base}"),
            format!("[[rule]]\nname = \"a\"\ncheck = \"*\"\nstatus = [\"bad\"]\n{base}"),
            format!("[[rule]]\nname = \"a b\"\nexpr = \"x > 1\"\n{base}"),
            format!("[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\nfor = \"soon\"\n{base}"),
            format!("[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\nsevrity = \"warning\"\n{base}"),
            "[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\nseverity = \"huge\"\ncategory = \"hardware\"\nsummary = \"x\"".to_string(),
            "[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\nseverity = \"info\"\ncategory = \"hardware\"\nsummary = \"{{nope}}\"".to_string(),
        ];
        for text in cases {
            let err = parse_rules("t.toml", &text).expect_err(&text);
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn shipped_rule_pack_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let rules = load_rules_dir(&dir).expect("shipped rules are valid");
        assert!(rules.iter().any(|r| r.name == "node_offline"));
        assert!(
            rules
                .iter()
                .any(|r| matches!(r.condition, Condition::Check { .. }))
        );
        // Every metric a shipped rule watches is one the agent emits (docs/METRICS.md lists them).
        let metrics_doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/METRICS.md"),
        )
        .expect("docs/METRICS.md");
        for rule in &rules {
            if let Condition::Threshold { expr, .. } = &rule.condition {
                assert!(
                    metrics_doc.contains(&format!("`{}`", expr.metric)),
                    "rule {} watches {}, which docs/METRICS.md does not list",
                    rule.name,
                    expr.metric
                );
            }
        }
    }
}
