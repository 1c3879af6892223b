//! Threshold expressions: `metric{label="v*",other=~"re.+"} > 90`, `rate(metric) > 1`, `resets(metric) > 0`.
//!
//! Grammar (whitespace is free between tokens):
//!
//! ```text
//! expr     = [ func "(" ] selector [ ")" ] cmp number
//! func     = "rate" | "resets"
//! selector = metric [ "{" matcher { "," matcher } [ "," ] "}" ]
//! matcher  = label ( "=" | "!=" | "=~" | "!~" ) '"' value '"'
//! cmp      = ">" | ">=" | "<" | "<=" | "==" | "!="
//! ```
//!
//! `=`/`!=` take a glob (`*` is any run of characters), `=~`/`!~` an anchored regular
//! expression (compiled once, when the rule loads). A label the sample lacks has the value
//! `""`. Inside the quotes `\"` is a quote and `\\` a backslash; any other backslash is kept
//! as written, so `"eth\d+"` reaches the regex as `eth\d+`.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

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
    /// Does `a <op> b` hold?
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }

    pub fn as_str(self) -> &'static str {
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

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchOp {
    /// `=`: glob.
    Glob,
    /// `!=`: not the glob.
    NotGlob,
    /// `=~`: anchored regex.
    Regex,
    /// `!~`: not the anchored regex.
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Glob => "=",
            MatchOp::NotGlob => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct LabelMatch {
    pub key: String,
    /// As written (glob or regex source, unescaped).
    pub pattern: String,
    pub op: MatchOp,
    /// The compiled pattern.
    compiled: Compiled,
}

/// A matcher's pattern, compiled when the rule loads.
#[derive(Debug, Clone)]
enum Compiled {
    Glob(Glob),
    /// `^(?:pattern)$`
    Regex(Regex),
}

impl PartialEq for LabelMatch {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.op == other.op && self.pattern == other.pattern
    }
}

impl LabelMatch {
    /// Does the sample's label set satisfy this matcher?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key).map(String::as_str).unwrap_or("");
        let hit = match &self.compiled {
            Compiled::Glob(g) => g.matches(value),
            Compiled::Regex(re) => re.is_match(value),
        };
        hit != matches!(self.op, MatchOp::NotGlob | MatchOp::NotRegex)
    }
}

impl fmt::Display for LabelMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self.pattern.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{}\"{escaped}\"", self.key, self.op.as_str())
    }
}

/// A metric name and label matchers: which samples an expression looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<LabelMatch>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.metric)?;
        if !self.matchers.is_empty() {
            let parts: Vec<String> = self.matchers.iter().map(ToString::to_string).collect();
            write!(f, "{{{}}}", parts.join(","))?;
        }
        Ok(())
    }
}

impl Selector {
    /// Parse a whole string as `metric{matchers}` (no function, no comparison).
    pub fn parse(src: &str) -> Result<Selector, String> {
        let (sel, rest) = parse_selector(src, src.trim_start())?;
        if !rest.trim().is_empty() {
            return Err(format!(
                "selector {src:?}: unexpected {:?} after the selector",
                rest.trim()
            ));
        }
        Ok(sel)
    }

    /// Does this selector pick the sample `name{labels}`?
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        name == self.metric && self.matches_labels(labels)
    }

    /// The label part only (the caller already knows the name matches).
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Same metric and the same matchers, in any order.
    pub fn same_as(&self, other: &Selector) -> bool {
        let canon = |s: &Selector| {
            let mut v: Vec<(String, MatchOp, String)> = s
                .matchers
                .iter()
                .map(|m| (m.key.clone(), m.op, m.pattern.clone()))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        self.metric == other.metric && canon(self) == canon(other)
    }
}

/// What an expression compares: the sample itself or a function of the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// The sample's value.
    Value,
    /// Per-second increase since the previous sample of the series (none after a reset).
    Rate,
    /// 1 when the value went down since the previous sample of the series, else 0.
    Resets,
}

impl Func {
    pub fn as_str(self) -> &'static str {
        match self {
            Func::Value => "",
            Func::Rate => "rate",
            Func::Resets => "resets",
        }
    }
}

/// A parsed threshold expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub func: Func,
    pub selector: Selector,
    pub cmp: Cmp,
    pub threshold: f64,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.func {
            Func::Value => write!(f, "{}", self.selector)?,
            func => write!(f, "{}({})", func.as_str(), self.selector)?,
        }
        write!(f, " {} {}", self.cmp.as_str(), self.threshold)
    }
}

impl Expr {
    /// The metric name the expression watches.
    pub fn metric(&self) -> &str {
        &self.selector.metric
    }

    /// Does this expression's metric and selector pick this sample?
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.selector.selects(name, labels)
    }

    /// Does the comparison hold for `value` (the sample's value or its function)?
    pub fn holds(&self, value: f64) -> bool {
        self.cmp.apply(value, self.threshold)
    }

    /// Parse `[func(]metric[{matchers}][)] <op> <number>`.
    pub fn parse(src: &str) -> Result<Expr, String> {
        let s = src.trim();
        let (func, body) = if let Some(inner) = s.strip_prefix("rate(") {
            (Func::Rate, inner)
        } else if let Some(inner) = s.strip_prefix("resets(") {
            (Func::Resets, inner)
        } else {
            (Func::Value, s)
        };
        let (selector, mut rest) = parse_selector(src, body.trim_start())?;
        if func != Func::Value {
            rest = rest.trim_start().strip_prefix(')').ok_or_else(|| {
                format!(
                    "expression {src:?}: missing ')' after {}({}",
                    func.as_str(),
                    selector
                )
            })?;
        }
        let rest = rest.trim_start();
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
            func,
            selector,
            cmp,
            threshold,
        })
    }
}

/// `metric{...}` at the start of `s`; returns the rest.
fn parse_selector<'a>(src: &str, s: &'a str) -> Result<(Selector, &'a str), String> {
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let metric = &s[..name_end];
    let mut rest = &s[name_end..];
    if rest.starts_with('(') {
        return Err(format!(
            "expression {src:?}: unknown function {metric:?} (known: rate, resets)"
        ));
    }
    if !tocsin_protocol::is_valid_metric_name(metric) {
        return Err(format!(
            "expression {src:?}: {metric:?} is not a metric name (dotted lower case)"
        ));
    }
    let mut matchers = Vec::new();
    if let Some(inner) = rest.trim_start().strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            if rest.is_empty() {
                return Err(format!("expression {src:?}: missing '}}'"));
            }
            let (m, after) = parse_matcher(src, rest)?;
            matchers.push(m);
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err(format!(
                    "expression {src:?}: expected ',' or '}}' after label matcher {}",
                    matchers.last().map(ToString::to_string).unwrap_or_default()
                ));
            }
        }
    }
    Ok((
        Selector {
            metric: metric.to_string(),
            matchers,
        },
        rest,
    ))
}

/// `key op "value"` at the start of `s`; returns the rest.
fn parse_matcher<'a>(src: &str, s: &'a str) -> Result<(LabelMatch, &'a str), String> {
    let key_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let key = &s[..key_end];
    let rest = s[key_end..].trim_start();
    if key.is_empty() {
        let shown: String = s.chars().take(20).collect();
        return Err(format!(
            "expression {src:?}: expected a label name at {shown:?}"
        ));
    }
    let (op, rest) = [
        ("=~", MatchOp::Regex),
        ("!~", MatchOp::NotRegex),
        ("!=", MatchOp::NotGlob),
        ("=", MatchOp::Glob),
    ]
    .iter()
    .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (*op, r)))
    .ok_or_else(|| format!("expression {src:?}: label matcher {key:?} needs =, !=, =~ or !~"))?;
    let rest = rest.trim_start();
    let body = rest.strip_prefix('"').ok_or_else(|| {
        format!("expression {src:?}: the value of label {key:?} must be in double quotes")
    })?;
    let mut pattern = String::new();
    let mut chars = body.char_indices();
    let end = loop {
        match chars.next() {
            None => {
                return Err(format!(
                    "expression {src:?}: unterminated quoted value of label {key:?}"
                ));
            }
            Some((i, '"')) => break i,
            Some((_, '\\')) => match chars.next() {
                Some((_, c @ ('"' | '\\'))) => pattern.push(c),
                Some((_, c)) => {
                    pattern.push('\\');
                    pattern.push(c);
                }
                None => {
                    return Err(format!(
                        "expression {src:?}: unterminated quoted value of label {key:?}"
                    ));
                }
            },
            Some((_, c)) => pattern.push(c),
        }
    };
    let compiled = match op {
        MatchOp::Regex | MatchOp::NotRegex => Compiled::Regex(
            regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    format!(
                        "expression {src:?}: bad regex {pattern:?} for label {key:?}: {}",
                        regex_error_line(&e)
                    )
                })?,
        ),
        MatchOp::Glob | MatchOp::NotGlob => Compiled::Glob(Glob::new(&pattern)),
    };
    Ok((
        LabelMatch {
            key: key.to_string(),
            pattern,
            op,
            compiled,
        },
        &body[end + 1..],
    ))
}

/// The regex crate explains syntax errors over several lines; keep the `error:` one.
fn regex_error_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error:").map(str::trim))
        .map(str::to_string)
        .unwrap_or_else(|| crate::error::one_line(&text))
}

/// A glob compiled once: `*` matches any run of characters; everything else is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    src: String,
    /// Without a `*`: the whole text must equal `src`.
    star: bool,
    first: String,
    middle: Vec<String>,
    last: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let (star, first, middle, last) = match pattern.split_once('*') {
            None => (false, "", Vec::new(), ""),
            Some((first, rest)) => {
                let (middle, last) = rest.rsplit_once('*').unwrap_or(("", rest));
                let middle = middle
                    .split('*')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect();
                (true, first, middle, last)
            }
        };
        Glob {
            src: pattern.to_string(),
            star,
            first: first.to_string(),
            middle,
            last: last.to_string(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    pub fn matches(&self, text: &str) -> bool {
        if !self.star {
            return self.src == text;
        }
        match_parts(
            &self.first,
            self.middle.iter().map(String::as_str),
            &self.last,
            text,
        )
    }
}

/// `first*middle…*last` against `text`: prefix, suffix, then the middle parts in order.
fn match_parts<'p>(
    first: &str,
    middle: impl Iterator<Item = &'p str>,
    last: &str,
    text: &str,
) -> bool {
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut t = &text[first.len()..text.len() - last.len()];
    for part in middle {
        // A one-character part (`*:*`) is a byte search; setting up a substring searcher
        // would cost more than the match.
        let found = match part.as_bytes() {
            [b] if b.is_ascii() => t.bytes().position(|c| c == *b),
            _ => t.find(part),
        };
        match found {
            Some(i) => t = &t[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// `*` matches any run of characters; everything else is literal. Allocates nothing (for
/// patterns used often, compile a [`Glob`]).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let (middle, last) = rest.rsplit_once('*').unwrap_or(("", rest));
    match_parts(
        first,
        middle.split('*').filter(|p| !p.is_empty()),
        last,
        text,
    )
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
        assert_eq!(e.metric(), "fs.used_pct");
        assert_eq!(e.func, Func::Value);
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
        assert_eq!(e.selector.matchers.len(), 2);
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
    }

    /// (expression, labels of the sample, selected?)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);

    #[test]
    fn regex_matchers_are_anchored() {
        let table: &[Case] = &[
            (
                r#"if.oper_up{interface=~"eth\d+"} == 0"#,
                &[("interface", "eth0")],
                true,
            ),
            (
                r#"if.oper_up{interface=~"eth\d+"} == 0"#,
                &[("interface", "eth0.100")],
                false,
            ),
            (
                r#"if.oper_up{interface=~"eth\d+"} == 0"#,
                &[("interface", "veth0")],
                false,
            ),
            (
                r#"if.oper_up{interface!~"lo|docker.*"} == 0"#,
                &[("interface", "docker0")],
                false,
            ),
            (
                r#"if.oper_up{interface!~"lo|docker.*"} == 0"#,
                &[("interface", "eno1")],
                true,
            ),
            (r#"if.oper_up{interface!~"lo|docker.*"} == 0"#, &[], true),
            (r#"if.oper_up{interface=~""} == 0"#, &[], true),
            (r#"if.oper_up{interface=~".+"} == 0"#, &[], false),
            (
                r#"if.oper_up{interface=~"a|b"} == 0"#,
                &[("interface", "ab")],
                false,
            ),
            (r#"x{a=~"x{2}", b="*"} > 1"#, &[("a", "xx")], true),
            (r#"x{a="q\"t"} > 1"#, &[("a", "q\"t")], true),
            (r#"x{a="a\\b*"} > 1"#, &[("a", "a\\bc")], true),
            (r#"x{a=~"a\\\\b"} > 1"#, &[("a", "a\\b")], true),
            (r#"x{a=~"a\.b"} > 1"#, &[("a", "aXb")], false),
            (r#"x { a = "1,2" , } > 1"#, &[("a", "1,2")], true),
        ];
        for (src, l, want) in table {
            let e = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(e.selects(e.metric(), &labels(l)), *want, "{src} on {l:?}");
            // Display parses back to the same expression.
            let again = Expr::parse(&e.to_string()).expect("display parses");
            assert_eq!(again, e, "{src} -> {e}");
        }
    }

    /// (source, func, display)
    #[test]
    fn functions() {
        let table = [
            (
                "rate(agent.reports_dropped_count) > 0",
                Func::Rate,
                "rate(agent.reports_dropped_count) > 0",
            ),
            (
                "resets( system.uptime_s ) >0",
                Func::Resets,
                "resets(system.uptime_s) > 0",
            ),
            (
                r#"rate(if.rx{interface=~"ge-.*"}) >= 1.5"#,
                Func::Rate,
                r#"rate(if.rx{interface=~"ge-.*"}) >= 1.5"#,
            ),
            (
                r#"x.y{a="1,2"} > -3e2"#,
                Func::Value,
                r#"x.y{a="1,2"} > -300"#,
            ),
        ];
        for (src, func, shown) in table {
            let e = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(e.func, func, "{src}");
            assert_eq!(e.to_string(), shown);
        }
    }

    #[test]
    fn refuses_bad_expressions() {
        let table = [
            ("", "not a metric name"),
            ("CPU > 1", "not a metric name"),
            ("cpu.usage_pct", "expected a comparison"),
            ("cpu.usage_pct > lots", "not a number"),
            ("cpu.usage_pct >> 3", "not a number"),
            (r#"fs.used_pct{mount="/" > 3"#, "expected ',' or '}'"),
            (r#"fs.used_pct{mount=/} > 3"#, "double quotes"),
            (r#"fs.used_pct{mount} > 3"#, "needs =, !=, =~ or !~"),
            (r#"fs.used_pct{mount="/} > 3"#, "unterminated"),
            (r#"fs.used_pct{mount=~"(/"} > 3"#, "bad regex"),
            (r#"fs.used_pct{="/"} > 3"#, "expected a label name"),
            ("cpu.usage_pct > inf", "finite"),
            ("irate(x) > 1", "unknown function"),
            ("rate(x > 1", "missing ')'"),
        ];
        for (src, want) in table {
            let err = Expr::parse(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn selectors_alone() {
        let s = Selector::parse(r#" fs.used_pct{mount="/"} "#).expect("valid");
        assert_eq!(s.to_string(), r#"fs.used_pct{mount="/"}"#);
        assert!(Selector::parse("fs.used_pct > 3").is_err());
        let a = Selector::parse(r#"x{a="1",b=~"2"}"#).expect("valid");
        let b = Selector::parse(r#"x{b=~"2", a="1"}"#).expect("valid");
        let c = Selector::parse(r#"x{b="2", a="1"}"#).expect("valid");
        assert!(a.same_as(&b) && !a.same_as(&c));
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
        assert!(glob_match("*:*", "tcp:pg"));
        assert!(glob_match("a**b", "ab"));
        assert!(glob_match("**", ""));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("*b*b*", "bb"));
        assert!(!glob_match("*b*b*", "b"));
        // The compiled form agrees with the ad-hoc one.
        let patterns = [
            "*", "tcp:*", "*sql*", "a*b*c", "exact", "ab*ab", "*:*", "a**b", "*b*b*", "",
        ];
        let texts = [
            "",
            "a",
            "ab",
            "abab",
            "aXbYc",
            "tcp:pg",
            "exact",
            "bb",
            "reachability",
        ];
        for p in patterns {
            let g = Glob::new(p);
            assert_eq!(g.as_str(), p);
            for t in texts {
                assert_eq!(g.matches(t), glob_match(p, t), "{p} on {t}");
            }
        }
        assert!(!glob_match("*:*", "reachability"));
    }
}
