//! The Grafana dashboards under `dashboards/grafana`: their structure is what Grafana needs to
//! import them (ids, grid, refIds, data sources picked at import), and every query they hold
//! answers against a real collector with seeded data. Infinity targets are sent as the plugin
//! sends them (Grafana's time macros substituted, the viewer token as the data source's
//! Authorization header); Prometheus targets name only metrics the collector's `/metrics`
//! exports, counters inside rate()/increase(), with labels that exist.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_tests::{Api, Mosquitto, Proc, Publisher, bin, free_port, now_ms, wait_for};

const WAIT: Duration = Duration::from_secs(40);
const INFINITY: &str = "yesoreyeram-infinity-datasource";
const VIEWER: &str = "grafana-viewer-token";
const OPERATOR: &str = "grafana-operator-token";

const RULES: &str = r#"
[[rule]]
name = "check_critical"
check = "*"
severity = "critical"
category = "software"
summary = "{{node}}: check {{check}} is {{status}}: {{output}}"
"#;

/// Every priority misses its response target after 2s, so the seeded ticket escalates; two
/// incidents of one signature open a problem record.
const POLICY: &str = r#"
[incident]
verify_for = "1s"
[problem]
threshold = 2
window = "1h"
[sla.P1]
response = "2s"
resolution = "1h"
[sla.P2]
response = "2s"
resolution = "1h"
[sla.P3]
response = "2s"
resolution = "1h"
[sla.P4]
response = "2s"
resolution = "1h"
[[escalation]]
name = "on-duty"
after = "0s"
notify = ["mqtt:bus"]
[notify.mqtt.bus]
topic = "tickets"
"#;

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

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("dashboards")
        .join("grafana")
}

/// Every `dashboards/grafana/*.json`, parsed: (file name, dashboard).
fn dashboards() -> Vec<(String, Value)> {
    let dir = dashboard_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            (name, v)
        })
        .collect()
}

/// Panels, with those inside rows.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

fn variables(d: &Value) -> Vec<&Value> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

/// The plugin a data source reference resolves to: a datasource variable of the dashboard
/// or an import input (`__inputs`), of the same plugin type. A fixed uid would tie the
/// dashboard to one Grafana's data source.
fn resolve_datasource(d: &Value, ds: &Value) -> Result<String, String> {
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
fn structure_problems(file: &str, d: &Value) -> Vec<String> {
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

#[test]
fn grafana_dashboards_have_what_grafana_needs() {
    let mut bad = Vec::new();
    for (file, d) in dashboards() {
        bad.extend(structure_problems(&file, &d));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ------------------------------------------------------------------ time macros

/// (year, month, day) of a day number since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// What Grafana's `${__from:date:iso}` gives (moment's toISOString).
fn iso(ms: i64) -> String {
    let (y, mo, d) = civil_from_days(ms.div_euclid(86_400_000));
    let r = ms.rem_euclid(86_400_000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        r / 3_600_000,
        r / 60_000 % 60,
        r / 1000 % 60,
        r % 1000
    )
}

/// A relative time like `now-30d` as milliseconds before now.
fn relative_ms(t: &str) -> Option<i64> {
    if t == "now" {
        return Some(0);
    }
    let spec = t.strip_prefix("now-")?;
    let unit = spec.chars().last()?;
    let n: i64 = spec[..spec.len() - 1].parse().ok()?;
    let ms = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        'M' => 30 * 86_400_000,
        'y' => 365 * 86_400_000,
        _ => return None,
    };
    Some(n * ms)
}

/// The dashboard's default time range, as Grafana would send it now.
struct Range {
    from: i64,
    to: i64,
}

impl Range {
    fn of(d: &Value) -> Range {
        let now = now_ms() as i64;
        let ago = |k: &str| {
            let t = d["time"][k].as_str().unwrap_or_default();
            relative_ms(t).unwrap_or_else(|| panic!("time.{k} {t:?} is not now or now-<n><unit>"))
        };
        Range {
            from: now - ago("from"),
            to: now - ago("to"),
        }
    }

    /// Replace Grafana's time macros; anything left starting with `$` is an error.
    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut s = text.to_string();
        for (name, ms) in [("__from", self.from), ("__to", self.to)] {
            s = s
                .replace(&format!("${{{name}:date:iso}}"), &iso(ms))
                .replace(&format!("${{{name}:date}}"), &iso(ms))
                .replace(
                    &format!("${{{name}:date:seconds}}"),
                    &(ms / 1000).to_string(),
                )
                .replace(&format!("${{{name}}}"), &ms.to_string())
                .replace(&format!("${name}"), &ms.to_string());
        }
        match s.find('$') {
            Some(i) => Err(format!("unknown variable at {:?}", &s[i..])),
            None => Ok(s),
        }
    }
}

// ------------------------------------------------------------------ Infinity targets

/// Go's url.QueryEscape, as the plugin encodes query parameters.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query_unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path and query the plugin requests: the data source's base URL is the collector, so
/// the target's url is a path; parameters are decoded and encoded again (url.Values).
fn request_path(t: &Value, range: &Range) -> Result<String, String> {
    let url = t["url"].as_str().ok_or("no url")?;
    if !url.starts_with("/api/") {
        return Err(format!(
            "url {url:?} must be a path under the data source's base URL (the collector)"
        ));
    }
    let url = range.substitute(url)?;
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (query_unescape(k), query_unescape(v))
        })
        .collect();
    for p in t["url_options"]["params"].as_array().into_iter().flatten() {
        let k = p["key"].as_str().unwrap_or_default().to_string();
        let v = range.substitute(p["value"].as_str().unwrap_or_default())?;
        pairs.push((k, v));
    }
    if pairs.is_empty() {
        return Ok(path.to_string());
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    Ok(format!("{path}?{}", q.join("&")))
}

/// A plain dotted path (the form both the backend and the frontend parser read alike).
fn select<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || matches!(b[b.len() - 6], b'+' | b'-'))
}

fn type_fits(kind: &str, v: &Value) -> bool {
    v.is_null()
        || match kind {
            "number" | "timestamp_epoch" | "timestamp_epoch_s" => v.is_number(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "timestamp" => v.as_str().is_some_and(is_rfc3339),
            _ => false,
        }
}

/// Send one Infinity target as the plugin would and check what the panel reads from it.
/// Returns a one-line description of the request for messages.
fn run_infinity(api: &Api, t: &Value, range: &Range) -> Result<String, String> {
    if t["type"] != "json" || t["source"] != "url" {
        return Err("type must be json and source url".into());
    }
    if !matches!(t["parser"].as_str(), Some("backend" | "simple") | None) {
        return Err(format!("parser {} is not backend or simple", t["parser"]));
    }
    let opts = &t["url_options"];
    for h in opts["headers"].as_array().into_iter().flatten() {
        if h["key"]
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("authorization"))
        {
            return Err("the token belongs in the data source, not in the dashboard".into());
        }
    }
    let path = request_path(t, range)?;
    let method = opts["method"]
        .as_str()
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let body = match method.as_str() {
        "GET" => None,
        "POST" => {
            if opts["body_type"] != "raw" || opts["body_content_type"] != "application/json" {
                return Err(
                    "a POST needs body_type raw and body_content_type application/json".into(),
                );
            }
            let data = range.substitute(opts["data"].as_str().unwrap_or_default())?;
            let parsed: Value = serde_json::from_str(&data)
                .map_err(|e| format!("the body is not JSON after substitution ({e}): {data}"))?;
            if path == "/api/v1/query" {
                if !parsed["sql"].is_string() {
                    return Err("the body has no sql".into());
                }
                if parsed["format"] != "objects" {
                    return Err(
                        "column selectors name fields: the body needs \"format\": \"objects\""
                            .into(),
                    );
                }
            }
            Some(data)
        }
        m => return Err(format!("method {m} is not GET or POST")),
    };
    let what = format!("{method} {path} {}", body.as_deref().unwrap_or_default());
    let (status, text) = api
        .request(&method, &path, body.as_deref(), Some(VIEWER))
        .ok_or_else(|| format!("no answer to {what}"))?;
    if status != 200 {
        return Err(format!("{what}\n    -> {status}: {text}"));
    }
    let answer: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{what}\n    -> not JSON ({e}): {text}"))?;
    let root = t["root_selector"].as_str().unwrap_or_default();
    if root.is_empty()
        || !root
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!("root_selector {root:?} is not a plain dotted path"));
    }
    let selected = select(&answer, root)
        .ok_or_else(|| format!("{what}\n    -> no {root:?} in the answer: {text}"))?;
    let rows: Vec<&Value> = match selected {
        Value::Array(a) if a.is_empty() => {
            return Err(format!(
                "{what}\n    -> {root:?} is empty with the seeded data"
            ));
        }
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![selected],
        other => return Err(format!("{what}\n    -> {root:?} is {other}, not rows")),
    };
    let columns = t["columns"].as_array().cloned().unwrap_or_default();
    if columns.is_empty() {
        return Err("no columns".into());
    }
    let declared: Option<BTreeSet<&str>> = answer["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect());
    for c in &columns {
        let sel = c["selector"].as_str().unwrap_or_default();
        let kind = c["type"].as_str().unwrap_or_default();
        if c["text"].as_str().is_none_or(str::is_empty) {
            return Err(format!("column {sel:?} has no text"));
        }
        if let Some(names) = &declared
            && !names.contains(sel)
        {
            return Err(format!(
                "{what}\n    -> the query has no column {sel:?} (it has {names:?})"
            ));
        }
        for row in &rows {
            let v = select(row, sel)
                .ok_or_else(|| format!("{what}\n    -> column {sel:?} missing in {row}"))?;
            if !type_fits(kind, v) {
                return Err(format!(
                    "{what}\n    -> column {sel:?} is {v}, not a {kind}"
                ));
            }
        }
    }
    Ok(what)
}

// ------------------------------------------------------------------ Prometheus targets

/// The collector's exposition: metric name -> type, and the label sets of its samples.
#[derive(Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: HashMap<String, Vec<BTreeMap<String, String>>>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
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
fn check_promql(expr: &str, e: &Exposition) -> Result<(), String> {
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
fn check_label_values(query: &str, e: &Exposition) -> Result<(), String> {
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

// ------------------------------------------------------------------ the live collector

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// GET with the viewer token; 200 and JSON.
fn get(api: &Api, path: &str) -> Value {
    let (status, body) = api
        .request("GET", path, None, Some(VIEWER))
        .unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

fn list(api: &Api, path: &str) -> Vec<Value> {
    get(api, path).as_array().cloned().unwrap_or_default()
}

/// Publish bytes that are no report at all (for the rejected-payload counters).
fn publish_garbage(port: u16, topic: &str) {
    let opts = rumqttc::MqttOptions::new("grafana-garbage", "127.0.0.1", port);
    let (client, mut connection) = rumqttc::Client::new(opts, 10);
    std::thread::spawn(move || {
        for ev in connection.iter() {
            if ev.is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    client
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            b"this is not a report".to_vec(),
        )
        .expect("publish garbage");
}

/// Seed: a failing check opens an incident and a ticket, which misses its response target
/// and escalates; an operator acknowledges; the check recovers and the incident closes; it
/// fails again (second incident of the signature: a problem record); a malformed payload is
/// refused.
fn seed(api: &Api, mqtt_port: u16) {
    let mut p = Publisher::connect(mqtt_port, "grafana-seed");
    p.online(
        "dc1",
        "web-01",
        json!({"criticality": "medium", "service": "shop"}),
    );
    std::thread::sleep(Duration::from_millis(500));
    p.check("dc1", "web-01", "db", "critical");
    let ticket = wait_for("a ticket for the failing check", WAIT, || {
        list(api, "/api/v1/tickets").into_iter().next()
    });
    let number = ticket["number"].as_str().unwrap_or_default().to_string();
    wait_for(
        "the ticket escalated (response target missed)",
        WAIT,
        || {
            let t = get(api, &format!("/api/v1/tickets/{number}"));
            t["escalation_level"]
                .as_i64()
                .is_some_and(|l| l >= 1)
                .then_some(())
        },
    );
    let (status, body) = api
        .request(
            "POST",
            &format!("/api/v1/tickets/{number}/ack"),
            Some(r#"{"note": "looking"}"#),
            Some(OPERATOR),
        )
        .expect("ack answered");
    assert_eq!(status, 200, "ack {number}: {body}");
    p.check("dc1", "web-01", "db", "ok");
    wait_for("the first incident closed", WAIT, || {
        let all = list(api, "/api/v1/incidents");
        (!all.is_empty() && all.iter().all(|i| i["state"] == "closed")).then_some(())
    });
    p.check("dc1", "web-01", "db", "critical");
    wait_for("a problem record from the recurrence", WAIT, || {
        (!list(api, "/api/v1/problems").is_empty()).then_some(())
    });
    wait_for("the second incident open", WAIT, || {
        (!list(api, "/api/v1/incidents?state=open").is_empty()).then_some(())
    });
    publish_garbage(mqtt_port, "tocsin/v1/dc1/web-01/report");
    wait_for("the malformed payload counted", WAIT, || {
        let (_, m) = api.get_raw("/metrics")?;
        m.contains("tocsin_ingest_rejected_total{reason=")
            .then_some(())
    });
}

#[test]
fn grafana_queries_answer_against_a_seeded_collector() {
    let boards = dashboards();
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto = Mosquitto::start(dir.path());
    let (broker, mqtt_port) = match &mosquitto {
        Some(m) => (format!("url = \"mqtt://127.0.0.1:{}\"", m.port), m.port),
        None => {
            let p = free_port();
            (format!("embedded = true\nlisten = \"127.0.0.1:{p}\""), p)
        }
    };
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    write(&rules.join("test.toml"), RULES);
    write(&rules.join("policy.toml"), POLICY);
    let viewer = dir.path().join("viewer.token");
    let operator = dir.path().join("operator.token");
    write(&viewer, VIEWER);
    write(&operator, OPERATOR);
    let http = free_port();
    let config = dir.path().join("collector.toml");
    // Tokens required even on loopback: every query goes with the viewer token, as the
    // Infinity data source sends it. The default query limits: the overview's six SQL panels
    // load at once, and the queue lets them wait for the two running slots.
    write(
        &config,
        &format!(
            "[broker]\n{broker}\nclient_id = \"collector-grafana\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             viewer_token_file = \"{}\"\noperator_token_file = \"{}\"\nopen_on_loopback = false\n\
             [store]\npath = \"{}\"\n[rules]\ndir = \"{}\"\n",
            viewer.display(),
            operator.display(),
            dir.path().join("tocsin.duckdb").display(),
            rules.display()
        ),
    );
    let mut cmd = Command::new(bin("tocsin-collector"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut collector = Proc::spawn("collector", cmd, dir.path());
    let api = Api::new(http);
    api.wait_healthy(WAIT);
    wait_for("collector connected", WAIT, || {
        api.get_raw("/readyz").filter(|(s, _)| *s == 200)
    });
    seed(&api, mqtt_port);

    let (_, metrics) = api.get_raw("/metrics").expect("/metrics");
    let exposition = Exposition::parse(&metrics);
    let mut bad = Vec::new();
    let mut checked = 0;
    for (file, d) in &boards {
        let range = Range::of(d);
        for v in variables(d) {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_default();
            if let Err(e) = check_label_values(q, &exposition) {
                bad.push(format!(
                    "{file}: variable ${}: {e}\n  query: {q}",
                    v["name"].as_str().unwrap_or_default()
                ));
            }
        }
        for p in all_panels(d) {
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or_default();
            let kind = resolve_datasource(d, &p["datasource"]).unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                let at = format!(
                    "{file}: panel {title:?} target {}",
                    t["refId"].as_str().unwrap_or("?")
                );
                checked += 1;
                match kind.as_str() {
                    INFINITY => {
                        if let Err(e) = run_infinity(&api, t, &range) {
                            bad.push(format!(
                                "{at}: {e}\n  query: {} {}",
                                t["url"].as_str().unwrap_or_default(),
                                t["url_options"]["data"].as_str().unwrap_or_default()
                            ));
                        }
                    }
                    "prometheus" => {
                        let expr = t["expr"].as_str().unwrap_or_default();
                        if let Err(e) = check_promql(expr, &exposition) {
                            bad.push(format!("{at}: {e}\n  query: {expr}"));
                        }
                    }
                    other => bad.push(format!("{at}: no check for data source {other:?}")),
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}\n(collector log: {})",
        bad.len(),
        bad.join("\n"),
        collector.log.display()
    );
    eprintln!("{checked} dashboard queries answered");

    // Grafana loads a dashboard by sending every panel's queries at once.
    for (file, d) in &boards {
        let range = Range::of(d);
        let results: Vec<(String, Result<String, String>)> = std::thread::scope(|s| {
            let running: Vec<_> = all_panels(d)
                .into_iter()
                .filter(|p| resolve_datasource(d, &p["datasource"]).is_ok_and(|k| k == INFINITY))
                .flat_map(|p| {
                    p["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |t| (p, t))
                })
                .map(|(p, t)| {
                    let (api, range) = (&api, &range);
                    let title = p["title"].as_str().unwrap_or_default().to_string();
                    s.spawn(move || (title, run_infinity(api, t, range)))
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().expect("query thread"))
                .collect()
        });
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|(title, r)| r.err().map(|e| format!("{file}: panel {title:?}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "loading {file} as Grafana does (all panels at once), {} queries failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
    assert_eq!(collector.terminate(), Some(0), "{}", collector.log_text());
}
