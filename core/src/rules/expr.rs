//! Threshold expressions: `metric{label="value",other!="x*"} > 90`.

use std::collections::BTreeMap;
use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    fn apply(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
}

/// One label matcher; the value may hold `*` wildcards.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMatch {
    pub key: String,
    pub pattern: String,
    pub negate: bool,
}

impl LabelMatch {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key).map(String::as_str).unwrap_or("");
        glob_match(&self.pattern, value) != self.negate
    }
}

/// A parsed threshold expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub metric: String,
    pub selector: Vec<LabelMatch>,
    pub cmp: Cmp,
    pub threshold: f64,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.metric)?;
        if !self.selector.is_empty() {
            let parts: Vec<String> = self
                .selector
                .iter()
                .map(|m| {
                    format!(
                        "{}{}{:?}",
                        m.key,
                        if m.negate { "!=" } else { "=" },
                        m.pattern
                    )
                })
                .collect();
            write!(f, "{{{}}}", parts.join(","))?;
        }
        write!(f, " {} {}", self.cmp.as_str(), self.threshold)
    }
}

impl Expr {
    /// Does this expression's metric and selector pick this sample?
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        name == self.metric && self.selector.iter().all(|m| m.matches(labels))
    }

    /// Does the comparison hold for `value`?
    pub fn holds(&self, value: f64) -> bool {
        self.cmp.apply(value, self.threshold)
    }

    /// Parse `metric[{k="v",...}] <op> <number>`.
    pub fn parse(src: &str) -> Result<Expr, String> {
        let s = src.trim();
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .unwrap_or(s.len());
        let metric = &s[..name_end];
        if !tocsin_protocol::is_valid_metric_name(metric) {
            return Err(format!(
                "expression {src:?}: {metric:?} is not a metric name (dotted lower case)"
            ));
        }
        let mut rest = s[name_end..].trim_start();
        let mut selector = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| format!("expression {src:?}: missing '}}'"))?;
            for part in split_matchers(&inner[..close]) {
                selector.push(parse_matcher(src, part)?);
            }
            rest = inner[close + 1..].trim_start();
        }
        let (cmp, num) = [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            (">", Cmp::Gt),
            ("<", Cmp::Lt),
        ]
        .iter()
        .find_map(|(tok, cmp)| rest.strip_prefix(tok).map(|r| (*cmp, r)))
        .ok_or_else(|| {
            format!("expression {src:?}: expected a comparison (> >= < <= == !=) after the metric")
        })?;
        let threshold: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("expression {src:?}: {:?} is not a number", num.trim()))?;
        if !threshold.is_finite() {
            return Err(format!("expression {src:?}: threshold must be finite"));
        }
        Ok(Expr {
            metric: metric.to_string(),
            selector,
            cmp,
            threshold,
        })
    }
}

fn split_matchers(s: &str) -> Vec<&str> {
    // Commas inside quoted values are kept.
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_matcher(src: &str, part: &str) -> Result<LabelMatch, String> {
    let (key, negate, value) = if let Some((k, v)) = part.split_once("!=") {
        (k, true, v)
    } else if let Some((k, v)) = part.split_once('=') {
        (k, false, v)
    } else {
        return Err(format!(
            "expression {src:?}: label matcher {part:?} needs = or !="
        ));
    };
    let key = key.trim();
    let value = value.trim();
    let pattern = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| {
            format!("expression {src:?}: label value in {part:?} must be in double quotes")
        })?;
    if key.is_empty() {
        return Err(format!("expression {src:?}: empty label name in {part:?}"));
    }
    Ok(LabelMatch {
        key: key.to_string(),
        pattern: pattern.to_string(),
        negate,
    })
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !text.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if i == parts.len() - 1 {
            return text.len() >= pos + part.len() && text[pos..].ends_with(part);
        } else if let Some(found) = text[pos..].find(part) {
            pos += found + part.len();
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_design_example() {
        let e = Expr::parse("fs.used_pct > 90").expect("valid");
        assert_eq!(e.metric, "fs.used_pct");
        assert_eq!(e.cmp, Cmp::Gt);
        assert_eq!(e.threshold, 90.0);
        assert!(e.holds(90.5) && !e.holds(90.0));
        assert!(e.selects("fs.used_pct", &labels(&[("mount", "/")])));
        assert!(!e.selects("fs.free_pct", &labels(&[])));
    }

    #[test]
    fn selectors_and_operators() {
        let e =
            Expr::parse(r#"fs.used_pct{mount="/var*", fs_type!="nfs"} >= 80.5"#).expect("valid");
        assert_eq!(e.selector.len(), 2);
        assert_eq!(e.cmp, Cmp::Ge);
        assert!(e.selects(
            "fs.used_pct",
            &labels(&[("mount", "/var/lib"), ("fs_type", "ext4")])
        ));
        assert!(!e.selects(
            "fs.used_pct",
            &labels(&[("mount", "/var/lib"), ("fs_type", "nfs")])
        ));
        assert!(!e.selects("fs.used_pct", &labels(&[("mount", "/")])));
        for (src, cmp) in [
            ("a < 1", Cmp::Lt),
            ("a <= 1", Cmp::Le),
            ("a == 1", Cmp::Eq),
            ("a != 1", Cmp::Ne),
        ] {
            assert_eq!(Expr::parse(src).expect(src).cmp, cmp);
        }
        assert_eq!(
            Expr::parse(r#"x.y{a="1,2"} > -3e2"#)
                .expect("valid")
                .to_string(),
            r#"x.y{a="1,2"} > -300"#
        );
    }

    #[test]
    fn refuses_bad_expressions() {
        for src in [
            "",
            "CPU > 1",
            "cpu.usage_pct",
            "cpu.usage_pct > lots",
            "cpu.usage_pct >> 3",
            r#"fs.used_pct{mount="/" > 3"#,
            r#"fs.used_pct{mount=/} > 3"#,
            r#"fs.used_pct{mount} > 3"#,
            "cpu.usage_pct > inf",
        ] {
            assert!(Expr::parse(src).is_err(), "{src}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("tcp:*", "tcp:postgres"));
        assert!(!glob_match("tcp:*", "http:web"));
        assert!(glob_match("*sql*", "tcp:postgresql-main"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("ab*ab", "ab"));
    }
}
