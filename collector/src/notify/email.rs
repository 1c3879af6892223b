//! E-mail delivery through the `[smtp]` relay: a readable plain-text message plus the JSON.
//!
//! Subject: `[prefix] <event> <ticket number> <summary>`. The body names the ticket, then the
//! event's own parts (an escalation's level, triggers and reason; a log entry), then an
//! escalation's handover section by section (state, record, SLA, diagnosis, actions, history,
//! and whatever else it holds), then the whole notification as JSON. The
//! idempotency key is in the `Message-ID` (made header-safe) and, verbatim, in
//! `X-Tocsin-Idempotency-Key`. A 5xx answer from the relay is permanent; anything else is retried.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Map, Value as Json};

use super::{NotifyError, SendError, chain};
use crate::config::{SmtpConfig, SmtpTls};
use crate::engine::targets::EmailTarget;
use crate::store::PendingNotification;
use crate::time::rfc3339;

/// Handover sections in the order a reader wants them; others follow alphabetically.
const SECTION_ORDER: &[&str] = &[
    "record",
    "ticket",
    "sla",
    "diagnosis",
    "comments",
    "actions",
    "history",
];
/// Top-level payload keys shown elsewhere (the header, the handover).
const SHOWN: &[&str] = &["ticket", "handover", "event"];

/// Sends through one relay.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Longest a whole message may take.
    timeout: Duration,
    place: String,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl EmailSender {
    /// Set up the relay from `[smtp]` (reads the password file; connects only to send).
    pub fn new(cfg: &SmtpConfig) -> Result<Self, NotifyError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| NotifyError::Smtp(format!("from {:?}: {e}", cfg.from)))?;
        let tls_params = || {
            TlsParameters::new(cfg.host.clone())
                .map_err(|e| NotifyError::Smtp(format!("TLS for {}: {}", cfg.host, chain(&e))))
        };
        let tls = match cfg.effective_tls() {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .timeout(Some(cfg.timeout))
            .tls(tls);
        if let Some(user) = &cfg.username {
            let password = match &cfg.password_file {
                Some(path) => crate::config::read_password_file(path).map_err(|source| {
                    NotifyError::SmtpPassword {
                        path: path.clone(),
                        source,
                    }
                })?,
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(EmailSender {
            transport: builder.build(),
            from,
            timeout: cfg.timeout.saturating_mul(4),
            place: format!("smtp {}:{}", cfg.host, cfg.port),
        })
    }

    /// Mail `n` to the target's addresses.
    pub async fn send(
        &self,
        target: &EmailTarget,
        n: &PendingNotification,
    ) -> Result<(), SendError> {
        let msg = message(&self.from, target, n)
            .map_err(|e| SendError::Permanent(format!("{}: {e}", self.place)))?;
        match tokio::time::timeout(self.timeout, self.transport.send(msg)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let text = format!("{}: {}", self.place, chain(&e));
                Err(if e.is_permanent() {
                    SendError::Permanent(text)
                } else {
                    SendError::Retry(text)
                })
            }
            Err(_) => Err(SendError::Retry(format!(
                "{}: not sent within {}",
                self.place,
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

/// `X-Tocsin-Idempotency-Key`: the key, verbatim.
#[derive(Debug, Clone)]
struct IdempotencyKey(String);

impl Header for IdempotencyKey {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Tocsin-Idempotency-Key")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(IdempotencyKey(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `X-Tocsin-Event`: `ticket.escalated`, ...
#[derive(Debug, Clone)]
struct EventName(String);

impl Header for EventName {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Tocsin-Event")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(EventName(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The whole message for `n` to `target`.
pub fn message(
    from: &Mailbox,
    target: &EmailTarget,
    n: &PendingNotification,
) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(from.clone())
        .subject(subject(target.subject_prefix.as_deref(), n))
        .message_id(Some(message_id(&n.key, from.email.domain())))
        .header(IdempotencyKey(n.key.clone()))
        .header(EventName(n.event.clone()))
        .header(ContentType::TEXT_PLAIN);
    if target.to.is_empty() {
        return Err("the target lists no addresses".into());
    }
    for to in &target.to {
        let mbox: Mailbox = to
            .parse()
            .map_err(|e| format!("recipient {to:?} is not an address: {e}"))?;
        b = b.to(mbox);
    }
    b.body(body(n)).map_err(|e| e.to_string())
}

/// `<key made header-safe@domain>`: unique per notification, the same on every attempt.
pub fn message_id(key: &str, domain: &str) -> String {
    let left: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    let left = left.trim_matches('.');
    let left = if left.is_empty() { "tocsin" } else { left };
    // Dots must not repeat in a dot-atom.
    let mut id = String::with_capacity(left.len());
    for c in left.chars() {
        if !(c == '.' && id.ends_with('.')) {
            id.push(c);
        }
    }
    format!("<{id}@{domain}>")
}

/// The payload's ticket object, if it has one (else the payload itself, for flat payloads).
fn ticket(payload: &Json) -> Option<&Map<String, Json>> {
    match payload.get("ticket") {
        Some(Json::Object(t)) => Some(t),
        _ => payload.as_object(),
    }
}

fn field<'a>(t: Option<&'a Map<String, Json>>, names: &[&str]) -> Option<&'a str> {
    let t = t?;
    names
        .iter()
        .find_map(|n| t.get(*n).and_then(Json::as_str))
        .filter(|s| !s.trim().is_empty())
}

/// `[prefix] <event> <ticket number> <summary>`, skipping what the payload does not have.
pub fn subject(prefix: Option<&str>, n: &PendingNotification) -> String {
    let t = ticket(&n.payload);
    let parts = [
        prefix.filter(|p| !p.trim().is_empty()),
        Some(n.event.as_str()),
        field(t, &["number", "ticket_number"]),
        field(t, &["summary", "title"]),
    ];
    let line = parts.into_iter().flatten().collect::<Vec<_>>().join(" ");
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The plain-text body: who and what, the event's parts, the handover's sections, the JSON.
pub fn body(n: &PendingNotification) -> String {
    let mut out = String::new();
    let t = ticket(&n.payload);
    let number = field(t, &["number", "ticket_number"]).unwrap_or("(no ticket number)");
    out.push_str(&format!("{} - {number}", n.event));
    if let Some(p) = field(t, &["priority"]) {
        out.push_str(&format!(" ({p})"));
    }
    out.push('\n');
    if let Some(s) = field(t, &["summary", "title"]) {
        out.push_str(s);
        out.push('\n');
    }
    out.push('\n');
    if let Some(p) = n.payload.as_object() {
        let extra = || {
            p.iter()
                .filter(|(k, v)| !SHOWN.contains(&k.as_str()) && !v.is_null())
        };
        // Plain figures first, then each structured part (an escalation, a log entry).
        let mut plain = false;
        for (k, v) in extra().filter(|(_, v)| is_scalar(v)) {
            out.push_str(&format!("{}: {}\n", label(k), scalar(k, v)));
            plain = true;
        }
        if plain {
            out.push('\n');
        }
        for (k, v) in extra().filter(|(_, v)| !is_scalar(v)) {
            section(&mut out, k, v);
        }
    }
    match n.payload.get("handover") {
        Some(Json::Object(h)) => handover(&mut out, h),
        Some(other) if !other.is_null() => section(&mut out, "handover", other),
        _ => {
            if let Some(ticket @ Json::Object(_)) = n.payload.get("ticket") {
                section(&mut out, "ticket", ticket);
            }
        }
    }
    out.push_str(&format!("Idempotency key: {}\n\n", n.key));
    out.push_str("-- \nThe notification as JSON:\n");
    out.push_str(&serde_json::to_string_pretty(&n.payload).unwrap_or_default());
    out.push('\n');
    out
}

/// The handover: where the ticket stands (its plain figures), then its sections in
/// [`SECTION_ORDER`] and then alphabetically.
fn handover(out: &mut String, h: &Map<String, Json>) {
    let status: Map<String, Json> = h
        .iter()
        .filter(|(_, v)| is_scalar(v) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !status.is_empty() {
        section(out, "handover", &Json::Object(status));
    }
    for name in SECTION_ORDER {
        if let Some(v) = h.get(*name).filter(|v| !is_scalar(v)) {
            section(out, name, v);
        }
    }
    for (name, v) in h {
        if !SECTION_ORDER.contains(&name.as_str()) && !is_scalar(v) {
            section(out, name, v);
        }
    }
}

fn section(out: &mut String, name: &str, v: &Json) {
    if v.is_null() || v.as_array().is_some_and(Vec::is_empty) {
        return;
    }
    let title = if name.eq_ignore_ascii_case("sla") {
        "SLA".to_string()
    } else {
        label(name)
    };
    out.push_str(&format!("== {title} ==\n"));
    render(out, name, v, 0);
    out.push('\n');
}

/// `resolution_due_at` -> `Resolution due at`.
fn label(key: &str) -> String {
    let words = key.replace(['_', '-'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A scalar as text; milliseconds under a `*_at` / `at` key as a timestamp.
fn scalar(key: &str, v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(num) if key == "at" || key == "ts" || key.ends_with("_at") => num
            .as_i64()
            .filter(|ms| *ms > 100_000_000_000)
            .map(rfc3339)
            .unwrap_or_else(|| num.to_string()),
        Json::Null => "-".into(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Json) -> bool {
    !matches!(v, Json::Object(_) | Json::Array(_))
}

/// Readable lines for any JSON: `Key: value`, nested values indented, list items as `- `.
fn render(out: &mut String, key: &str, v: &Json, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Json::Object(m) if is_log_line(m) => out.push_str(&format!("{pad}{}\n", log_line(m))),
        Json::Object(m) => {
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                if is_scalar(v) {
                    out.push_str(&format!("{pad}{}: {}\n", label(k), scalar(k, v)));
                } else if v.as_array().is_some_and(|a| a.is_empty())
                    || v.as_object().is_some_and(|o| o.is_empty())
                {
                    continue;
                } else {
                    out.push_str(&format!("{pad}{}:\n", label(k)));
                    render(out, k, v, depth + 1);
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                match item {
                    Json::Object(m) if is_log_line(m) => {
                        out.push_str(&format!("{pad}- {}\n", log_line(m)));
                    }
                    Json::Object(m) if m.values().all(is_scalar) => {
                        let line = m
                            .iter()
                            .filter(|(_, v)| !v.is_null())
                            .map(|(k, v)| format!("{}: {}", label(k), scalar(k, v)))
                            .collect::<Vec<_>>()
                            .join(", ");
                        out.push_str(&format!("{pad}- {line}\n"));
                    }
                    Json::Object(_) | Json::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        render(out, key, item, depth + 1);
                    }
                    scalar_item => {
                        out.push_str(&format!("{pad}- {}\n", scalar(key, scalar_item)));
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(key, other))),
    }
}

/// A ticket log line: `{at, actor, kind, message}`.
fn is_log_line(m: &Map<String, Json>) -> bool {
    m.get("message").is_some_and(Json::is_string)
        && m.contains_key("kind")
        && m.values().all(is_scalar)
}

/// `<at> <kind> by <actor>: <message>`.
fn log_line(m: &Map<String, Json>) -> String {
    let text = |k: &str| m.get(k).filter(|v| !v.is_null()).map(|v| scalar(k, v));
    let mut line = [text("at"), text("kind")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(actor) = text("actor") {
        line.push_str(&format!(" by {actor}"));
    }
    line.push_str(&format!(": {}", text("message").unwrap_or_default()));
    line
}
