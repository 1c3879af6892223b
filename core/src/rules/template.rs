//! `{{placeholder}}` templates for alert summaries and descriptions, checked when rules load.

use std::collections::BTreeMap;

/// Every placeholder name; `labels.<key>` is accepted too. Which ones a rule may use depends
/// on its kind (see `config::kind_placeholders`).
pub const PLACEHOLDERS: &[&str] = &[
    "node",
    "site",
    "rule",
    "severity",
    "category",
    "value",
    "threshold",
    "metric",
    "check",
    "status",
    "output",
    "for",
    "keep_firing_for",
    "absent_for",
];

/// A parsed template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parse and check every placeholder name.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template {src:?}: '{{{{' without '}}}}'"))?;
            let name = after[..close].trim();
            let known = PLACEHOLDERS.contains(&name)
                || name.strip_prefix("labels.").is_some_and(|k| !k.is_empty());
            if !known {
                return Err(format!(
                    "template {src:?}: unknown placeholder {{{{{name}}}}} (known: {}, labels.<key>)",
                    PLACEHOLDERS.join(", ")
                ));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Fill in values; a placeholder without a value renders as `?`.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> String {
        self.render_with(|name| vars.get(name).cloned())
    }

    /// Fill in values looked up by name (no map to build); `None` renders as `?`.
    pub fn render_with(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match lookup(v) {
                    Some(value) => out.push_str(&value),
                    None => out.push('?'),
                },
            }
        }
        out
    }

    /// The placeholder names used, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }
}

/// Numbers as people read them: at most two decimals, no trailing zeros.
pub fn format_value(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let t = Template::parse("{{node}}: {{labels.mount}} is {{value}}% full").expect("valid");
        let vars: BTreeMap<String, String> =
            [("node", "web-01"), ("labels.mount", "/"), ("value", "91.2")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(t.render(&vars), "web-01: / is 91.2% full");
        assert_eq!(
            Template::parse("{{ check }}")
                .expect("valid")
                .render(&BTreeMap::new()),
            "?"
        );
    }

    #[test]
    fn lists_placeholders_and_renders_by_lookup() {
        let t = Template::parse("{{node}} {{ for }} {{labels.x}}!").expect("valid");
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            ["node", "for", "labels.x"]
        );
        let out = t.render_with(|n| (n != "labels.x").then(|| n.to_uppercase()));
        assert_eq!(out, "NODE FOR ?!");
    }

    #[test]
    fn refuses_unknown_and_unclosed() {
        assert!(Template::parse("{{nod}}").is_err());
        assert!(Template::parse("{{labels.}}").is_err());
        assert!(Template::parse("{{node").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(format_value(91.2), "91.2");
        assert_eq!(format_value(90.0), "90");
        assert_eq!(format_value(0.123456), "0.12");
        assert_eq!(format_value(-0.001), "0");
    }
}
