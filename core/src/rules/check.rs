//! `rules check`: read rule files, report each problem as `<file>:<line>: rule "<name>": <msg>`.
//!
//! A file is parsed into toml's spanned tree first, so every `[[rule]]` table, key and
//! value keeps its byte span; each rule is then deserialized and validated on its own, and
//! one pass reports all errors of all files (unknown keys, bad values, bad expressions and
//! templates, clears that do not bound their expr, duplicate names across files) instead
//! of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::config::{RULE_KEYS, RawRule, Rule};
use crate::error::ConfigError;

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    /// 1-based line; 0 when the problem is the file as a whole (unreadable).
    pub line: usize,
    /// The rule's name, when the problem is inside a `[[rule]]` table.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ": rule {rule:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RuleError {}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Closest known key, for "did you mean": at most two edits away.
fn suggest(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    RULE_KEYS
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Validate one rule file's text; `source` names it in messages. Duplicate names are
/// caught within the text (across files: [`check_dir`]).
pub fn check_text(source: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut seen = BTreeMap::new();
    let (rules, errors) = check_file(source, text, &mut seen);
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Rules of one file, and its errors; `seen` maps names already defined to `file:line`.
fn check_file(
    source: &str,
    text: &str,
    seen: &mut BTreeMap<String, String>,
) -> (Vec<Rule>, Vec<RuleError>) {
    let error = |span: Range<usize>, rule: Option<&str>, message: String| RuleError {
        file: source.to_string(),
        line: line_of(text, span.start),
        rule: rule.map(str::to_string),
        message,
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root.into_inner(),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = crate::error::one_line(e.message());
            return (Vec::new(), vec![error(span, None, msg)]);
        }
    };
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in root {
        if key.get_ref() != "rule" {
            errors.push(error(
                key.span(),
                None,
                format!(
                    "unknown top-level key `{}`: a rule file holds [[rule]] tables only",
                    key.get_ref()
                ),
            ));
            continue;
        }
        let span = value.span();
        let DeValue::Array(tables) = value.into_inner() else {
            errors.push(error(
                span,
                None,
                "`rule` must be written as [[rule]] tables".into(),
            ));
            continue;
        };
        for table in tables {
            let span = table.span();
            let DeValue::Table(table) = table.into_inner() else {
                errors.push(error(
                    span,
                    None,
                    "every `rule` entry must be a [[rule]] table".into(),
                ));
                continue;
            };
            let name = table
                .iter()
                .find(|(k, _)| k.get_ref() == "name")
                .and_then(|(_, v)| v.get_ref().as_str().map(str::to_string));
            let n = name.as_deref();
            // Every unknown key at once (serde would stop at the first), then drop them so
            // the rest of the table is still checked.
            for (k, _) in table.iter() {
                if !RULE_KEYS.contains(&k.get_ref().as_ref()) {
                    let hint = suggest(k.get_ref())
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    errors.push(error(
                        k.span(),
                        n,
                        format!(
                            "unknown key `{}` ({hint}known: {})",
                            k.get_ref(),
                            RULE_KEYS.join(", ")
                        ),
                    ));
                }
            }
            let table: DeTable = table
                .into_iter()
                .filter(|(k, _)| RULE_KEYS.contains(&k.get_ref().as_ref()))
                .collect();
            let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table));
            let raw = match RawRule::deserialize(de) {
                Ok(raw) => raw,
                Err(e) => {
                    let at = e.span().unwrap_or_else(|| span.clone());
                    errors.push(error(at, n, crate::error::one_line(e.message())));
                    continue;
                }
            };
            // Names are unique across all files, whether or not the rule is otherwise valid.
            let duplicate = raw.name.as_ref().and_then(|v| {
                let here = format!("{source}:{}", line_of(text, span.start));
                match seen.get(v.get_ref()) {
                    Some(first) => Some((v.span(), first.clone())),
                    None => {
                        seen.insert(v.get_ref().clone(), here);
                        None
                    }
                }
            });
            if let Some((at, first)) = &duplicate {
                errors.push(error(
                    at.clone(),
                    n,
                    format!("defined twice: first at {first}, again here"),
                ));
            }
            match Rule::from_raw(raw, source, span.clone()) {
                Ok(rule) if duplicate.is_none() => rules.push(rule),
                Ok(_) => {}
                Err(errs) => {
                    errors.extend(errs.into_iter().map(|(at, msg)| error(at, n, msg)));
                }
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    (rules, errors)
}

/// Validate every `*.toml` in `dir` except `policy.toml`, in name order, and report every
/// error of every file. Rule names are unique across files.
pub fn check_dir(dir: &Path) -> Result<Vec<Rule>, Vec<RuleError>> {
    let whole = |path: &Path, message: String| RuleError {
        file: path.display().to_string(),
        line: 0,
        rule: None,
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![whole(
            dir,
            format!("cannot read the rules directory: {e} (set [rules] dir in collector.toml)"),
        )]
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "policy.toml"))
        .collect();
    files.sort();
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut seen = BTreeMap::new();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(whole(&path, format!("cannot read: {e}")));
                continue;
            }
        };
        let (ok, errs) = check_file(&path.display().to_string(), &text, &mut seen);
        rules.extend(ok);
        errors.extend(errs);
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Parse one rule file's text; `source` names it in errors (the first one, with a count of
/// the others).
pub fn parse_rules(source: &str, text: &str) -> Result<Vec<Rule>, String> {
    check_text(source, text).map_err(|errs| summarize(&errs, 1))
}

/// Up to `show` errors, one per line, and how many more there are.
fn summarize(errs: &[RuleError], show: usize) -> String {
    let mut lines: Vec<String> = errs.iter().take(show).map(ToString::to_string).collect();
    if errs.len() > show {
        lines.push(format!("(and {} more)", errs.len() - show));
    }
    lines.join(if show == 1 { " " } else { "\n  " })
}

/// Load every rule file in `dir` (see [`check_dir`]); the error shows the first problems.
pub fn load_rules_dir(dir: &Path) -> Result<Vec<Rule>, ConfigError> {
    if let Err(source) = std::fs::read_dir(dir) {
        return Err(ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        });
    }
    check_dir(dir).map_err(|errs| ConfigError::Parse {
        path: dir.to_path_buf(),
        message: format!(
            "{} error(s) in the rule files:\n  {}",
            errs.len(),
            summarize(&errs, 5)
        ),
    })
}
