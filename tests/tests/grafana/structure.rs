//! The structure checks: what Grafana needs to import and render a dashboard (ids, grid,
//! refIds, variables, data sources picked at import instead of fixed uids).

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// Grafana's global variables a query may use besides the dashboard's own.
const GRAFANA_GLOBALS: &[&str] = &[
    "__from",
    "__to",
    "__interval",
    "__interval_ms",
    "__rate_interval",
    "__range",
    "__range_s",
    "__range_ms",
];

/// Panels, with those inside rows.
pub(crate) fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

pub(crate) fn variables(d: &Value) -> Vec<&Value> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

/// The plugin a data source reference resolves to: a datasource variable of the dashboard
/// or an import input (`__inputs`), of the same plugin type. A fixed uid would tie the
/// dashboard to one Grafana's data source.
pub(crate) fn resolve_datasource(d: &Value, ds: &Value) -> Result<String, String> {
    let (Some(kind), Some(uid)) = (ds["type"].as_str(), ds["uid"].as_str()) else {
        return Err(format!("datasource {ds} needs a type and a uid"));
    };
    let name = uid
        .strip_prefix("${")
        .and_then(|u| u.strip_suffix('}'))
        .or_else(|| uid.strip_prefix('$'))
        .ok_or_else(|| {
            format!("datasource uid {uid:?} is fixed: use a datasource variable or an input")
        })?;
    if let Some(var) = variables(d).into_iter().find(|v| v["name"] == name) {
        if var["type"] != "datasource" {
            return Err(format!(
                "${name} is a {} variable, not a datasource",
                var["type"]
            ));
        }
        if var["query"] != kind {
            return Err(format!(
                "datasource type {kind:?} but variable ${name} lists {} data sources",
                var["query"]
            ));
        }
        return Ok(kind.to_string());
    }
    let input = d["__inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == name)
        .ok_or_else(|| format!("datasource {uid:?} is neither a variable nor an input"))?;
    if input["type"] != "datasource" || input["pluginId"] != kind {
        return Err(format!(
            "input {name} is {} of plugin {}, the reference says {kind:?}",
            input["type"], input["pluginId"]
        ));
    }
    Ok(kind.to_string())
}

/// `$name`, `${name}` and `${name:format}` references in a text.
fn variable_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = if let Some(inner) = rest.strip_prefix('{') {
            inner
                .split(['}', ':'])
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        out.push(name);
    }
    out
}

/// What Grafana needs to import and render a dashboard; each problem as one line.
pub(crate) fn structure_problems(file: &str, d: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut fail = |m: String| bad.push(format!("{file}: {m}"));
    if d["title"].as_str().is_none_or(|t| t.trim().is_empty()) {
        fail("no title".into());
    }
    let uid = d["uid"].as_str().unwrap_or_default();
    if uid.is_empty()
        || uid.len() > 40
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        fail(format!(
            "uid {:?} is not 1-40 letters, digits, - or _",
            d["uid"]
        ));
    }
    if !d["schemaVersion"]
        .as_u64()
        .is_some_and(|v| (36..=41).contains(&v))
    {
        fail(format!(
            "schemaVersion {} is not 36..=41",
            d["schemaVersion"]
        ));
    }
    if !d["id"].is_null() {
        fail("id must be null so the import creates a new dashboard".into());
    }
    for key in ["from", "to"] {
        if !d["time"][key].is_string() {
            fail(format!("time.{key} missing"));
        }
    }

    // Import inputs: declared once, each used, and nothing uses an undeclared one.
    let text = d.to_string();
    let inputs: Vec<&str> = d["__inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .collect();
    for i in d["__inputs"].as_array().into_iter().flatten() {
        if i["type"] != "datasource" || !i["pluginId"].is_string() {
            fail(format!(
                "input {i} is not a datasource input with a pluginId"
            ));
        }
    }
    for name in &inputs {
        if !text.contains(&format!("${{{name}}}")) {
            fail(format!("input {name} is declared but nothing uses it"));
        }
    }
    for r in variable_refs(&text) {
        if r.starts_with("DS_") && !inputs.contains(&r.as_str()) {
            fail(format!("${{{r}}} is used but not declared in __inputs"));
        }
    }
    let required: BTreeSet<(String, String)> = d["__requires"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or_default().to_string(),
                r["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();

    // Variables.
    let mut names = BTreeSet::new();
    for v in variables(d) {
        let name = v["name"].as_str().unwrap_or_default();
        if name.is_empty() || !names.insert(name) {
            fail(format!("variable name {:?} empty or repeated", v["name"]));
        }
        match v["type"].as_str() {
            Some("datasource") => {
                let plugin = v["query"].as_str().unwrap_or_default();
                if !required.contains(&("datasource".into(), plugin.into())) {
                    fail(format!(
                        "variable ${name} lists {plugin:?} data sources, not in __requires"
                    ));
                }
            }
            Some("query") => {
                if let Err(e) = resolve_datasource(d, &v["datasource"]) {
                    fail(format!("variable ${name}: {e}"));
                }
            }
            Some("custom" | "constant" | "interval" | "textbox") => {}
            other => fail(format!("variable ${name} of unknown type {other:?}")),
        }
    }
    let known_var =
        |n: &str| names.contains(n) || GRAFANA_GLOBALS.contains(&n) || n.starts_with("DS_");
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        let builtin = a["datasource"] == json!({"type": "grafana", "uid": "-- Grafana --"});
        if !builtin && let Err(e) = resolve_datasource(d, &a["datasource"]) {
            fail(format!("annotation {:?}: {e}", a["name"]));
        }
    }

    // Panels.
    let panels = all_panels(d);
    if panels.is_empty() {
        fail("no panels".into());
    }
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        let kind = p["type"].as_str().unwrap_or_default();
        let at = format!("panel {title:?} (id {})", p["id"]);
        if title.trim().is_empty() {
            fail(format!("{at}: no title"));
        }
        match p["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            _ => fail(format!("{at}: id missing or repeated")),
        }
        let g = &p["gridPos"];
        let grid: Vec<i64> = ["x", "y", "w", "h"]
            .iter()
            .filter_map(|k| g[*k].as_i64())
            .collect();
        match grid[..] {
            [x, y, w, h] if x >= 0 && y >= 0 && w >= 1 && h >= 1 && x + w <= 24 => {
                for (other, [ox, oy, ow, oh]) in &boxes {
                    if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                        fail(format!("{at}: gridPos overlaps {other}"));
                    }
                }
                boxes.push((at.clone(), [x, y, w, h]));
            }
            _ => fail(format!(
                "{at}: gridPos {g} is not x, y, w, h inside 24 columns"
            )),
        }
        if kind == "row" {
            continue;
        }
        if !required.contains(&("panel".into(), kind.into())) {
            fail(format!("{at}: panel type {kind:?} is not in __requires"));
        }
        let panel_ds = match resolve_datasource(d, &p["datasource"]) {
            Ok(k) => k,
            Err(e) => {
                fail(format!("{at}: {e}"));
                continue;
            }
        };
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            fail(format!("{at}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or_default();
            if r.is_empty() || !refs.insert(r.to_string()) {
                fail(format!("{at}: refId {:?} empty or repeated", t["refId"]));
            }
            if !t["datasource"].is_null() {
                match resolve_datasource(d, &t["datasource"]) {
                    Ok(k) if k == panel_ds => {}
                    Ok(k) => fail(format!("{at} {r}: target on {k}, panel on {panel_ds}")),
                    Err(e) => fail(format!("{at} {r}: {e}")),
                }
            }
            let query_text = [&t["expr"], &t["url"], &t["url_options"]["data"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            for v in variable_refs(&query_text) {
                if !known_var(&v) {
                    fail(format!("{at} {r}: ${v} is no variable of the dashboard"));
                }
            }
        }
    }
    bad
}
