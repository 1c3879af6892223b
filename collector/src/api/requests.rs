//! Write request bodies: parsed by hand from JSON so every error names its field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::engine::model::{MaintenanceRow, ProblemState};
use crate::time::{Millis, millis};

/// Longest one-off maintenance window; recurring windows may be longer in total.
pub const MAX_WINDOW_MS: Millis = 31 * 86_400_000;
const MAX_NAME: usize = 128;
const MAX_REASON: usize = 1024;
const MAX_WORKAROUND: usize = 8192;
const MAX_GLOB: usize = 256;

/// A JSON object body with typed field access.
pub struct Body {
    fields: Map<String, Json>,
}

impl Body {
    /// Parse `bytes` as a JSON object whose keys are all in `allowed`.
    pub fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Body, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(format!(
                "the request needs a JSON object body with {}",
                allowed.join(", ")
            ));
        }
        let v: Json = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
        let Json::Object(fields) = v else {
            return Err("the body must be a JSON object".into());
        };
        if let Some(k) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "unknown field {k:?} (expected {})",
                allowed.join(", ")
            ));
        }
        Ok(Body { fields })
    }

    /// An object already parsed (a nested one, checked by the caller).
    pub fn from_fields(fields: Map<String, Json>) -> Body {
        Body { fields }
    }

    /// A string field; absent and `null` are None.
    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.fields.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name} must be a string, not {}", kind(other))),
        }
    }

    /// A string field that must be there and not blank.
    pub fn required(&self, name: &str, max: usize) -> Result<String, String> {
        let s = self
            .string(name)?
            .map(|s| s.trim().to_string())
            .ok_or_else(|| format!("{name} is required"))?;
        if s.is_empty() {
            return Err(format!("{name} must not be empty"));
        }
        if s.chars().count() > max {
            return Err(format!("{name} is longer than {max} characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(format!("{name} must not contain control characters"));
        }
        Ok(s)
    }

    /// A free-text field (line breaks and tabs allowed), trimmed; absent, `null` or blank is None.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, String> {
        let Some(s) = self.string(name)?.map(|s| s.trim().to_string()) else {
            return Ok(None);
        };
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > max {
            return Err(format!("{name} is longer than {max} characters"));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(format!(
                "{name} must not contain control characters other than line breaks and tabs"
            ));
        }
        Ok(Some(s))
    }

    /// A free-text field that must be there and not blank.
    pub fn required_text(&self, name: &str, max: usize) -> Result<String, String> {
        match self.string(name)? {
            None => Err(format!("{name} is required")),
            Some(_) => self
                .text(name, max)?
                .ok_or_else(|| format!("{name} must not be empty")),
        }
    }

    /// A one-line field (no control characters), trimmed; absent, `null` or blank is None.
    pub fn line(&self, name: &str, max: usize) -> Result<Option<String>, String> {
        match self.string(name)?.map(|s| s.trim().to_string()) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(_) => self.required(name, max).map(Some),
        }
    }

    /// A boolean field; absent and `null` are None.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, String> {
        match self.fields.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("{name} must be true or false, not {}", kind(other))),
        }
    }

    /// The raw value of a field (absent: None).
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.fields.get(name)
    }
}

/// What kind of JSON value `v` is, for error messages (`a string`, `an array`, ...).
pub fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// RFC 3339 (`2026-11-29T16:00:00Z`, `2026-11-29T17:00:00+01:00`, fractions allowed) as
/// milliseconds since the epoch.
pub fn parse_time(field: &str, s: &str) -> Result<Millis, String> {
    let bad = || format!("{field} {s:?} is not an RFC 3339 time like 2026-11-29T16:00:00Z");
    let s = s.trim();
    // Split a numeric offset off the end: ...[+-]HH:MM
    let (base, offset_min) = if s.ends_with(['Z', 'z']) {
        (s[..s.len() - 1].to_string(), 0i64)
    } else {
        let n = s.len();
        let tail = s.get(n.saturating_sub(6)..).ok_or_else(bad)?;
        let b = tail.as_bytes();
        if b.len() == 6 && (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let h: i64 = tail[1..3].parse().map_err(|_| bad())?;
            let m: i64 = tail[4..6].parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let sign = if b[0] == b'-' { -1 } else { 1 };
            (s[..n - 6].to_string(), sign * (h * 60 + m))
        } else {
            return Err(bad());
        }
    };
    if base.len() < 19
        || base
            .as_bytes()
            .get(10)
            .is_none_or(|c| !matches!(*c, b'T' | b't'))
    {
        return Err(bad());
    }
    let t = humantime::parse_rfc3339_weak(&base).map_err(|_| bad())?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(millis)
        .map_err(|_| format!("{field} {s:?} is before 1970"))?;
    Ok(ms - offset_min * 60_000)
}

/// A duration like `90s`, `2h`, `7d`, `1h 30m`.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{field} {s:?} is not a duration like 90s, 2h or 7d ({e})"))?;
    if d.is_zero() {
        return Err(format!("{field} must be longer than zero"));
    }
    Ok(d)
}

const MAINTENANCE_FIELDS: &[&str] = &[
    "name",
    "match",
    "starts_at",
    "ends_at",
    "duration",
    "every",
    "reason",
];

/// `POST /api/v1/maintenance`: a new window (id 0: the engine numbers it).
pub fn maintenance(bytes: &[u8], now: Millis, actor: &str) -> Result<MaintenanceRow, String> {
    let body = Body::parse(bytes, MAINTENANCE_FIELDS)?;
    let name = body.required("name", MAX_NAME)?;
    let reason = body.required("reason", MAX_REASON)?;
    let match_ = match body.fields.get("match") {
        None | Some(Json::Null) => {
            return Err(
                "match is required: {\"node\": glob, \"site\": glob, \"labels.<key>\": glob} (use {\"node\": \"*\"} for every node)"
                    .into(),
            );
        }
        Some(Json::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let known = matches!(k.as_str(), "node" | "site")
                    || k.strip_prefix("labels.")
                        .is_some_and(|l| !l.is_empty() && !l.contains(char::is_whitespace));
                if !known {
                    return Err(format!(
                        "match key {k:?} is not one of node, site, labels.<key>"
                    ));
                }
                let Json::String(glob) = v else {
                    return Err(format!("match.{k} must be a string, not {}", kind(v)));
                };
                let glob = glob.trim();
                if glob.is_empty() || glob.len() > MAX_GLOB {
                    return Err(format!(
                        "match.{k} must be a glob of 1 to {MAX_GLOB} characters"
                    ));
                }
                out.insert(k.clone(), glob.to_string());
            }
            if out.is_empty() {
                return Err(
                    "match must name at least one of node, site, labels.<key> (use {\"node\": \"*\"} for every node)"
                        .into(),
                );
            }
            out
        }
        Some(other) => return Err(format!("match must be an object, not {}", kind(other))),
    };
    let starts_at = match body.string("starts_at")? {
        Some(s) => parse_time("starts_at", &s)?,
        None => now,
    };
    let ends_at = match (body.string("ends_at")?, body.string("duration")?) {
        (Some(_), Some(_)) => return Err("give ends_at or duration, not both".into()),
        (Some(e), None) => parse_time("ends_at", &e)?,
        (None, Some(d)) => starts_at.saturating_add(millis(parse_duration("duration", &d)?)),
        (None, None) => {
            return Err("ends_at (RFC 3339) or duration (like \"2h\") is required".into());
        }
    };
    if ends_at <= starts_at {
        return Err("the window must end after it starts (ends_at > starts_at)".into());
    }
    let length = ends_at - starts_at;
    let every_ms = match body.string("every")? {
        Some(e) => {
            let every = millis(parse_duration("every", &e)?);
            if every <= length {
                return Err(format!(
                    "every ({e}) must be longer than the window itself ({})",
                    crate::time::human(length)
                ));
            }
            Some(every)
        }
        None => {
            if length > MAX_WINDOW_MS {
                return Err(format!(
                    "the window lasts {}, longer than 31 days; make it recurring (every) or shorter",
                    crate::time::human(length)
                ));
            }
            if ends_at <= now {
                return Err("the window is already over (ends_at is in the past)".into());
            }
            None
        }
    };
    Ok(MaintenanceRow {
        id: 0,
        name,
        match_,
        starts_at,
        ends_at,
        every_ms,
        reason,
        created_by: actor.to_string(),
        created_at: now,
        cancelled_at: None,
    })
}

/// `POST /api/v1/problems/{id}`: new state and/or workaround.
pub fn problem_update(bytes: &[u8]) -> Result<(Option<ProblemState>, Option<String>), String> {
    let body = Body::parse(bytes, &["state", "workaround"])?;
    let state = match body.string("state")? {
        Some(s) => Some(
            ProblemState::parse(s.trim())
                .ok_or_else(|| format!("state {s:?} is not one of open, known_error, resolved"))?,
        ),
        None => None,
    };
    let workaround = body.string("workaround")?.map(|w| w.trim().to_string());
    if let Some(w) = &workaround
        && w.chars().count() > MAX_WORKAROUND
    {
        return Err(format!(
            "workaround is longer than {MAX_WORKAROUND} characters"
        ));
    }
    if state.is_none() && workaround.is_none() {
        return Err("give state (open, known_error, resolved) and/or workaround".into());
    }
    Ok((state, workaround))
}

/// Who the audit trail names for a write: the `X-Tocsin-Actor` header, cleaned up, else `operator`.
pub fn actor(header: Option<&[u8]>) -> String {
    let name: String = header
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        .take(64)
        .collect();
    // `policy` marks windows from policy.toml.
    if name.is_empty() || name == "policy" {
        "operator".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_764_412_345_123; // 2025-11-29T10:32:25.123Z

    #[test]
    fn times() {
        assert_eq!(parse_time("t", "2025-11-29T10:32:25.123Z").expect("z"), NOW);
        assert_eq!(
            parse_time("t", "2025-11-29T11:32:25.123+01:00").expect("offset"),
            NOW
        );
        assert_eq!(
            parse_time("t", "2025-11-29T05:02:25.123-05:30").expect("negative offset"),
            NOW
        );
        for bad in [
            "tomorrow",
            "2025-11-29",
            "2025-11-29T10:32:25+1",
            "2025-13-01T00:00:00Z",
        ] {
            let err = parse_time("starts_at", bad).expect_err(bad);
            assert!(err.starts_with("starts_at "), "{err}");
        }
    }

    fn window(body: &str) -> Result<MaintenanceRow, String> {
        maintenance(body.as_bytes(), NOW, "alice")
    }

    #[test]
    fn maintenance_windows() {
        let w = window(r#"{"name":"patch","match":{"node":"web-*","labels.role":"db"},"duration":"2h","reason":"kernel"}"#)
            .expect("valid");
        assert_eq!(w.starts_at, NOW);
        assert_eq!(w.ends_at, NOW + 7_200_000);
        assert_eq!(w.match_["labels.role"], "db");
        assert_eq!(w.created_by, "alice");
        assert_eq!(w.every_ms, None);
        let w = window(r#"{"name":"weekly","match":{"site":"dc1"},"starts_at":"2025-11-30T02:00:00Z","ends_at":"2025-11-30T04:00:00Z","every":"7d","reason":"backups"}"#)
            .expect("recurring");
        assert_eq!(w.every_ms, Some(7 * 86_400_000));
        // A long recurring window is fine; a long one-off is not.
        assert!(
            window(
                r#"{"name":"n","match":{"node":"*"},"duration":"40d","every":"60d","reason":"r"}"#
            )
            .is_ok()
        );
        for (body, needle) in [
            ("", "needs a JSON object"),
            ("[1]", "must be a JSON object"),
            ("{not json", "invalid JSON"),
            (
                r#"{"name":"n","match":{"node":"*"},"duration":"2h","reason":"r","extra":1}"#,
                "unknown field \"extra\"",
            ),
            (
                r#"{"match":{"node":"*"},"duration":"2h","reason":"r"}"#,
                "name is required",
            ),
            (
                r#"{"name":5,"match":{"node":"*"},"duration":"2h","reason":"r"}"#,
                "name must be a string",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"duration":"2h"}"#,
                "reason is required",
            ),
            (
                r#"{"name":"n","duration":"2h","reason":"r"}"#,
                "match is required",
            ),
            (
                r#"{"name":"n","match":{},"duration":"2h","reason":"r"}"#,
                "at least one",
            ),
            (
                r#"{"name":"n","match":{"host":"x"},"duration":"2h","reason":"r"}"#,
                "match key \"host\"",
            ),
            (
                r#"{"name":"n","match":{"node":3},"duration":"2h","reason":"r"}"#,
                "match.node must be a string",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"reason":"r"}"#,
                "duration",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"duration":"soon","reason":"r"}"#,
                "duration \"soon\"",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"duration":"2h","ends_at":"2030-01-01T00:00:00Z","reason":"r"}"#,
                "not both",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"starts_at":"2025-11-30T00:00:00Z","ends_at":"2025-11-29T00:00:00Z","reason":"r"}"#,
                "end after",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"duration":"32d","reason":"r"}"#,
                "longer than 31 days",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"duration":"2h","every":"1h","reason":"r"}"#,
                "must be longer than the window",
            ),
            (
                r#"{"name":"n","match":{"node":"*"},"starts_at":"2020-01-01T00:00:00Z","duration":"2h","reason":"r"}"#,
                "already over",
            ),
        ] {
            let err = window(body).expect_err(body);
            assert!(err.contains(needle), "{body}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn problem_updates_and_actors() {
        assert_eq!(
            problem_update(br#"{"state":"known_error","workaround":" restart it "}"#).expect("ok"),
            (Some(ProblemState::KnownError), Some("restart it".into()))
        );
        assert_eq!(
            problem_update(br#"{"state":"resolved"}"#).expect("ok"),
            (Some(ProblemState::Resolved), None)
        );
        assert!(
            problem_update(b"{}")
                .expect_err("empty")
                .contains("give state")
        );
        assert!(
            problem_update(br#"{"state":"fixed"}"#)
                .expect_err("bad")
                .contains("state \"fixed\"")
        );
        assert!(
            problem_update(br#"{"workaround":1}"#)
                .expect_err("bad")
                .contains("workaround must be a string")
        );
        assert_eq!(actor(Some(b"alice")), "alice");
        assert_eq!(actor(Some(b"al ice\n<x>")), "alicex");
        assert_eq!(actor(Some(b"policy")), "operator");
        assert_eq!(actor(None), "operator");
    }
}
