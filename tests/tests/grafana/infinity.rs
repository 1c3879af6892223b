//! Infinity targets run as the plugin runs them: Grafana's time macros substituted for the
//! dashboard's default range, query parameters encoded as Go's url.Values, the viewer token as
//! the data source's Authorization header, and the rows and columns the panel reads checked.

use std::collections::BTreeSet;

use serde_json::Value;
use tocsin_tests::{Api, now_ms};

use crate::VIEWER;

// ------------------------------------------------------------------ time macros

/// What Grafana's `${__from:date:iso}` gives (moment's toISOString: always milliseconds, UTC).
fn iso(ms: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(ms).expect("a time range inside jiff's years");
    format!("{t:.3}")
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
pub(crate) struct Range {
    from: i64,
    to: i64,
}

impl Range {
    pub(crate) fn of(d: &Value) -> Range {
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
pub(crate) fn run_infinity(api: &Api, t: &Value, range: &Range) -> Result<String, String> {
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
