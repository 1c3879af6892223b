//! Ticket request bodies: operator actions (`POST /api/v1/tickets/{id}/{action}`) and manual
//! tickets (`POST /api/v1/tickets`), checked field by field so every error names its field.

use serde_json::{Map, Value as Json};

use super::requests::{Body, kind, parse_time};
use crate::engine::{ManualTicket, TicketAction};

/// The actions, as the last path segment names them.
pub const ACTIONS: &[&str] = &[
    "ack", "assign", "comment", "pending", "resume", "escalate", "resolve", "close", "reopen",
];

/// Longest note, comment, reason or description.
pub const MAX_TEXT: usize = 8192;
/// Longest name (assignee, group, reporter, site, node, service, cause code).
pub const MAX_NAME: usize = 128;
/// Longest summary.
pub const MAX_SUMMARY: usize = 256;
/// Most services on one ticket.
const MAX_SERVICES: usize = 64;

/// The body of one action; an empty body is fine where every field is optional.
pub fn action(name: &str, bytes: &[u8]) -> Result<TicketAction, String> {
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    let parse = |allowed: &[&str]| -> Result<Option<Body>, String> {
        if empty {
            Ok(None)
        } else {
            Body::parse(bytes, allowed).map(Some)
        }
    };
    // A body whose fields are all required: an empty one is refused with what it needs.
    let needs = |allowed: &[&str]| Body::parse(bytes, allowed);
    let text = |b: &Option<Body>, field: &str| match b {
        Some(b) => b.text(field, MAX_TEXT),
        None => Ok(None),
    };
    Ok(match name {
        "ack" => {
            let b = parse(&["note"])?;
            TicketAction::Acknowledge {
                note: text(&b, "note")?,
            }
        }
        "assign" => {
            let b = needs(&["assignee", "group", "reason"])?;
            let assignee = b.line("assignee", MAX_NAME)?;
            let group = b.line("group", MAX_NAME)?;
            if assignee.is_none() && group.is_none() {
                return Err(
                    "give assignee (a person) and/or group (a transfer, with a reason)".into(),
                );
            }
            TicketAction::Assign {
                assignee,
                group,
                reason: b.text("reason", MAX_TEXT)?,
            }
        }
        "comment" => TicketAction::Comment {
            text: needs(&["text"])?.required_text("text", MAX_TEXT)?,
        },
        "pending" => TicketAction::Pend {
            reason: needs(&["reason"])?.required_text("reason", MAX_TEXT)?,
        },
        "resume" => {
            let b = parse(&["note"])?;
            TicketAction::Resume {
                note: text(&b, "note")?,
            }
        }
        "escalate" => {
            let b = needs(&["reason", "complaint"])?;
            TicketAction::Escalate {
                reason: b.required_text("reason", MAX_TEXT)?,
                complaint: b.boolean("complaint")?.unwrap_or(false),
            }
        }
        "resolve" => {
            let b = needs(&["notes", "cause_code"])?;
            let notes = b.required_text("notes", MAX_TEXT)?;
            let cause_code = b.required("cause_code", MAX_NAME)?;
            TicketAction::Resolve { notes, cause_code }
        }
        "close" => {
            let b = parse(&["note"])?;
            TicketAction::Close {
                note: text(&b, "note")?,
            }
        }
        "reopen" => TicketAction::Reopen {
            reason: needs(&["reason"])?.required_text("reason", MAX_TEXT)?,
        },
        other => {
            return Err(format!(
                "no ticket action {other:?} (one of {})",
                ACTIONS.join(", ")
            ));
        }
    })
}

const MANUAL_FIELDS: &[&str] = &[
    "kind",
    "summary",
    "description",
    "reporter",
    "category",
    "impact",
    "urgency",
    "site",
    "node",
    "services",
    "environment",
    "started_at",
    "group",
    "assignee",
];
const REPORTER_FIELDS: &[&str] = &["name", "department", "contact"];
const LEVELS: &[&str] = &["high", "medium", "low"];
const CATEGORIES: &[&str] = &["hardware", "software", "network", "configuration"];
const KINDS: &[&str] = &["incident", "request"];

/// `POST /api/v1/tickets`: a service request or a fault reported by a person. `started_at` may
/// be milliseconds since the epoch or an RFC 3339 time.
pub fn manual(bytes: &[u8]) -> Result<ManualTicket, String> {
    let body = Body::parse(bytes, MANUAL_FIELDS)?;
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k.to_string(), Json::String(v));
        }
    };
    put("kind", choice(&body, "kind", KINDS)?);
    put("summary", Some(body.required("summary", MAX_SUMMARY)?));
    put("description", body.text("description", MAX_TEXT)?);
    put("category", choice(&body, "category", CATEGORIES)?);
    put("impact", choice(&body, "impact", LEVELS)?);
    put("urgency", choice(&body, "urgency", LEVELS)?);
    for k in ["site", "node", "group", "assignee"] {
        put(k, body.line(k, MAX_NAME)?);
    }
    out.insert("reporter".into(), reporter(body.get("reporter"))?);
    match body.get("services") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) => {
            if items.len() > MAX_SERVICES {
                return Err(format!("services lists more than {MAX_SERVICES} services"));
            }
            let mut services = Vec::new();
            for (i, s) in items.iter().enumerate() {
                let Json::String(s) = s else {
                    return Err(format!("services[{i}] must be a string, not {}", kind(s)));
                };
                let s = s.trim();
                if s.is_empty() || s.chars().count() > MAX_NAME || s.contains(char::is_control) {
                    return Err(format!(
                        "services[{i}] must be a name of 1 to {MAX_NAME} characters"
                    ));
                }
                services.push(Json::String(s.to_string()));
            }
            out.insert("services".into(), Json::Array(services));
        }
        Some(other) => {
            return Err(format!(
                "services must be an array of names, not {}",
                kind(other)
            ));
        }
    }
    match body.get("environment") {
        None | Some(Json::Null) => {}
        Some(v @ (Json::Object(_) | Json::String(_))) => {
            out.insert("environment".into(), v.clone());
        }
        Some(other) => {
            return Err(format!(
                "environment must be an object or a text, not {}",
                kind(other)
            ));
        }
    }
    match body.get("started_at") {
        None | Some(Json::Null) => {}
        Some(Json::Number(n)) => match n.as_i64() {
            Some(ms) if ms > 0 => {
                out.insert("started_at".into(), Json::from(ms));
            }
            _ => {
                return Err(
                    "started_at must be milliseconds since the epoch or an RFC 3339 time".into(),
                );
            }
        },
        Some(Json::String(s)) => {
            out.insert(
                "started_at".into(),
                Json::from(parse_time("started_at", s)?),
            );
        }
        Some(other) => {
            return Err(format!(
                "started_at must be an RFC 3339 time or milliseconds, not {}",
                kind(other)
            ));
        }
    }
    serde_json::from_value(Json::Object(out)).map_err(|e| format!("ticket: {e}"))
}

/// An optional field that must be one of `allowed`.
fn choice(body: &Body, name: &str, allowed: &[&str]) -> Result<Option<String>, String> {
    match body.string(name)?.map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(s) => Err(format!("{name} {s:?} is not one of {}", allowed.join(", "))),
    }
}

/// `reporter`: `{"name", "department"?, "contact"?}`, or just the name as a string.
fn reporter(v: Option<&Json>) -> Result<Json, String> {
    let fields = match v {
        None | Some(Json::Null) => {
            return Err(
                "reporter is required: {\"name\": …, \"department\": …, \"contact\": …}".into(),
            );
        }
        Some(Json::String(name)) => {
            let mut m = Map::new();
            m.insert("name".into(), Json::String(name.clone()));
            m
        }
        Some(Json::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "reporter must be an object with name, department, contact, not {}",
                kind(other)
            ));
        }
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !REPORTER_FIELDS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field \"reporter.{k}\" (expected {})",
            REPORTER_FIELDS.join(", ")
        ));
    }
    let body = Body::from_fields(fields);
    let mut out = Map::new();
    out.insert(
        "name".into(),
        Json::String(
            body.required("name", MAX_NAME)
                .map_err(|e| format!("reporter.{e}"))?,
        ),
    );
    for k in ["department", "contact"] {
        if let Some(v) = body
            .line(k, MAX_NAME)
            .map_err(|e| format!("reporter.{e}"))?
        {
            out.insert(k.into(), Json::String(v));
        }
    }
    Ok(Json::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TicketKind;

    fn act(name: &str, body: &str) -> Result<TicketAction, String> {
        action(name, body.as_bytes())
    }

    #[test]
    fn actions_parse_with_their_fields() {
        assert_eq!(
            act("ack", "").expect("empty ack"),
            TicketAction::Acknowledge { note: None }
        );
        assert_eq!(
            act("ack", r#"{"note":" on it "}"#).expect("ack"),
            TicketAction::Acknowledge {
                note: Some("on it".into())
            }
        );
        assert_eq!(
            act(
                "assign",
                r#"{"assignee":"bob","group":"network","reason":"switch fault"}"#
            )
            .expect("assign"),
            TicketAction::Assign {
                assignee: Some("bob".into()),
                group: Some("network".into()),
                reason: Some("switch fault".into())
            }
        );
        assert_eq!(
            act("comment", r#"{"text":"line 1\nline 2"}"#).expect("comment"),
            TicketAction::Comment {
                text: "line 1\nline 2".into()
            }
        );
        assert_eq!(
            act("pending", r#"{"reason":"waiting for the vendor"}"#).expect("pending"),
            TicketAction::Pend {
                reason: "waiting for the vendor".into()
            }
        );
        assert_eq!(
            act("resume", "  ").expect("resume"),
            TicketAction::Resume { note: None }
        );
        assert_eq!(
            act(
                "escalate",
                r#"{"reason":"user complains","complaint":true}"#
            )
            .expect("esc"),
            TicketAction::Escalate {
                reason: "user complains".into(),
                complaint: true
            }
        );
        assert_eq!(
            act("escalate", r#"{"reason":"slow"}"#).expect("esc"),
            TicketAction::Escalate {
                reason: "slow".into(),
                complaint: false
            }
        );
        assert_eq!(
            act(
                "resolve",
                r#"{"notes":"replaced the disk","cause_code":"hardware-failure"}"#
            )
            .expect("resolve"),
            TicketAction::Resolve {
                notes: "replaced the disk".into(),
                cause_code: "hardware-failure".into()
            }
        );
        assert_eq!(
            act("close", "{}").expect("close"),
            TicketAction::Close { note: None }
        );
        assert_eq!(
            act("reopen", r#"{"reason":"back again"}"#).expect("reopen"),
            TicketAction::Reopen {
                reason: "back again".into()
            }
        );
        // The path name and the engine's name agree.
        for a in ACTIONS {
            let body = match *a {
                "assign" => r#"{"assignee":"x"}"#,
                "comment" => r#"{"text":"x"}"#,
                "pending" | "escalate" | "reopen" => r#"{"reason":"x"}"#,
                "resolve" => r#"{"notes":"x","cause_code":"y"}"#,
                _ => "",
            };
            assert_eq!(act(a, body).expect(a).name(), *a);
        }
    }

    #[test]
    fn bad_action_bodies_name_the_field() {
        for (name, body, needle) in [
            ("ack", r#"{"note":"x","nope":1}"#, "unknown field \"nope\""),
            ("ack", r#"{"note":5}"#, "note must be a string"),
            ("ack", "[1]", "must be a JSON object"),
            ("resolve", r#"{"cause_code":"x"}"#, "notes is required"),
            ("resolve", r#"{"notes":"x"}"#, "cause_code is required"),
            (
                "resolve",
                r#"{"notes":"  ","cause_code":"x"}"#,
                "notes must not be empty",
            ),
            (
                "resolve",
                "",
                "needs a JSON object body with notes, cause_code",
            ),
            (
                "resolve",
                r#"{"notes":"x","cause_code":"a\nb"}"#,
                "cause_code must not contain control characters",
            ),
            ("comment", "{}", "text is required"),
            ("pending", r#"{"text":"x"}"#, "unknown field \"text\""),
            ("reopen", "", "needs a JSON object body with reason"),
            ("assign", "{}", "give assignee"),
            ("assign", r#"{"reason":"x"}"#, "give assignee"),
            ("assign", r#"{"to":"bob"}"#, "unknown field \"to\""),
            (
                "escalate",
                r#"{"reason":"x","complaint":"yes"}"#,
                "complaint must be true or false",
            ),
            ("escalate", r#"{"complaint":true}"#, "reason is required"),
            ("frob", "", "no ticket action \"frob\""),
        ] {
            let err = act(name, body).expect_err(body);
            assert!(err.contains(needle), "{name} {body}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_TEXT + 1));
        assert!(
            act("comment", &long)
                .expect_err("long")
                .contains("longer than")
        );
    }

    #[test]
    fn manual_tickets() {
        let t = manual(
            br#"{"kind":"request","summary":" New VPN account ","reporter":{"name":"Ann","department":"Sales","contact":"ann@example.com"},
                 "category":"configuration","urgency":"low","services":["vpn"],"started_at":"2025-11-29T10:00:00Z",
                 "description":"please\ncreate it","environment":{"os":"Windows 11"}}"#,
        )
        .expect("request");
        assert_eq!(t.kind, TicketKind::Request);
        assert_eq!(t.summary, "New VPN account");
        assert_eq!(t.reporter.name, "Ann");
        assert_eq!(t.reporter.department.as_deref(), Some("Sales"));
        assert_eq!(t.services, vec!["vpn".to_string()]);
        assert_eq!(t.started_at, Some(1_764_410_400_000));
        assert_eq!(t.description, "please\ncreate it");
        assert_eq!(t.category.map(|c| c.as_str()), Some("configuration"));
        let t =
            manual(br#"{"summary":"printer jams","reporter":"Bob","started_at":1764410400000}"#)
                .expect("fault");
        assert_eq!(t.kind, TicketKind::Incident);
        assert_eq!(t.reporter.name, "Bob");
        assert_eq!(t.started_at, Some(1_764_410_400_000));
        assert!(t.impact.is_none() && t.urgency.is_none());
        for (body, needle) in [
            (r#"{"reporter":{"name":"a"}}"#, "summary is required"),
            (r#"{"summary":"s"}"#, "reporter is required"),
            (
                r#"{"summary":"s","reporter":{}}"#,
                "reporter.name is required",
            ),
            (
                r#"{"summary":"s","reporter":{"name":"a","phone":"1"}}"#,
                "unknown field \"reporter.phone\"",
            ),
            (
                r#"{"summary":"s","reporter":"a","priority":"P1"}"#,
                "unknown field \"priority\"",
            ),
            (
                r#"{"summary":"s","reporter":"a","kind":"change"}"#,
                "kind \"change\" is not one of incident, request",
            ),
            (
                r#"{"summary":"s","reporter":"a","impact":"huge"}"#,
                "impact \"huge\"",
            ),
            (
                r#"{"summary":"s","reporter":"a","category":"people"}"#,
                "category \"people\"",
            ),
            (
                r#"{"summary":"s","reporter":"a","services":"vpn"}"#,
                "services must be an array",
            ),
            (
                r#"{"summary":"s","reporter":"a","services":[1]}"#,
                "services[0] must be a string",
            ),
            (
                r#"{"summary":"s","reporter":"a","started_at":"yesterday"}"#,
                "started_at \"yesterday\"",
            ),
            (
                r#"{"summary":"s","reporter":"a","started_at":-5}"#,
                "started_at must be",
            ),
            (
                r#"{"summary":"s","reporter":"a","node":"a\nb"}"#,
                "node must not contain",
            ),
            (
                r#"{"summary":"s","reporter":5}"#,
                "reporter must be an object",
            ),
        ] {
            let err = manual(body.as_bytes()).expect_err(body);
            assert!(err.contains(needle), "{body}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
