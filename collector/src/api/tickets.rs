//! Ticket routes: the list with its filters, one ticket, tickets opened by people, operator
//! actions on tickets (through the engine), and the notification outbox.

use std::collections::HashMap;

use hyper::StatusCode;
use hyper::header::{HeaderValue, LOCATION};
use serde_json::{Map, Value as Json};

use super::ticket_requests;
use super::{
    ApiState, PRIORITIES, Resp, TICKET_STATES, control_error, error, one_of, read, read_back,
    read_store, unexpected,
};
use crate::engine::{Command, Reply, TicketState};
use crate::store::TicketFilter;

const KINDS: &[&str] = &["incident", "request"];
const NOTIFICATION_STATES: &[&str] = &["pending", "delivered", "failed"];

/// Ticket columns the store returns as JSON text: parsed, so clients get objects.
const JSON_TEXT_FIELDS: &[&str] = &["affected", "similar", "sla"];

/// A ticket row as the API shows it: JSON columns as JSON (left alone when already parsed).
pub fn ticket_json(mut t: Map<String, Json>) -> Map<String, Json> {
    for k in JSON_TEXT_FIELDS {
        if let Some(Json::String(s)) = t.get(*k)
            && let Ok(v) = serde_json::from_str::<Json>(s)
            && (v.is_object() || v.is_array())
        {
            t.insert((*k).to_string(), v);
        }
    }
    t
}

fn ticket_value(v: Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(ticket_json(m)),
        other => other,
    }
}

/// A free-text query filter: trimmed, not empty, at most 128 characters.
fn name_filter(name: &str, value: Option<&String>) -> Result<Option<String>, String> {
    match value.map(|v| v.trim()) {
        None => Ok(None),
        Some("") => Err(format!("{name}= is empty; leave it out to list all")),
        Some(v) if v.chars().count() > 128 => Err(format!("{name} is longer than 128 characters")),
        Some(v) => Ok(Some(v.to_string())),
    }
}

fn limit(q: &HashMap<String, String>) -> Result<Option<usize>, String> {
    match q.get("limit").map(|l| l.parse::<usize>()) {
        None => Ok(None),
        Some(Ok(l)) if l > 0 => Ok(Some(l)),
        Some(_) => Err("limit must be a positive number".into()),
    }
}

/// `GET /api/v1/tickets?state=&priority=&group=&assignee=&kind=&limit=`
pub(super) async fn list(state: &ApiState, q: &HashMap<String, String>) -> Resp {
    let filter = (|| -> Result<TicketFilter, String> {
        Ok(TicketFilter {
            state: one_of("state", q.get("state"), TICKET_STATES)?,
            priority: one_of("priority", q.get("priority"), PRIORITIES)?,
            group: name_filter("group", q.get("group"))?,
            assignee: name_filter("assignee", q.get("assignee"))?,
            kind: one_of("kind", q.get("kind"), KINDS)?,
            limit: limit(q)?,
        })
    })();
    let filter = match filter {
        Ok(f) => f,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    read(
        state,
        move |r| {
            r.tickets(&filter)
                .map(|rows| Some(rows.into_iter().map(ticket_json).collect::<Vec<_>>()))
        },
        None,
    )
    .await
}

/// `GET /api/v1/tickets/{number or id}` with its event log.
pub(super) async fn show(state: &ApiState, key: &str) -> Resp {
    let key = key.to_string();
    let msg = format!("ticket {key} does not exist");
    read(
        state,
        move |r| r.ticket(&key).map(|t| t.map(ticket_value)),
        Some(msg),
    )
    .await
}

/// `GET /api/v1/notifications?state=&ticket=&limit=`: the outbox.
pub(super) async fn notifications(state: &ApiState, q: &HashMap<String, String>) -> Resp {
    let parsed = (|| -> Result<_, String> {
        Ok((
            one_of("state", q.get("state"), NOTIFICATION_STATES)?,
            name_filter("ticket", q.get("ticket"))?,
            limit(q)?.unwrap_or(1000),
        ))
    })();
    let (st, ticket, n) = match parsed {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    read(
        state,
        move |r| {
            r.notifications(st.as_deref(), ticket.as_deref(), n)
                .map(Some)
        },
        None,
    )
    .await
}

/// `POST /api/v1/tickets`: a ticket opened by a person; 201 with its record and `Location`.
pub(super) async fn open(state: &ApiState, body: &[u8], actor: String) -> Resp {
    let ticket = match ticket_requests::manual(body) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let cmd = Command::OpenTicket {
        ticket: Box::new(ticket),
        actor: actor.clone(),
    };
    match state.control.command(cmd).await {
        Ok(Reply::Ticket(t)) => {
            tracing::info!(ticket = %t.number, kind = %t.kind, by = %actor, "ticket opened through the API");
            let (id, number) = (t.id, t.number.clone());
            let mut r = read_back(
                state,
                StatusCode::CREATED,
                move |r| r.ticket(&id.to_string()).map(|v| v.map(ticket_value)),
                &t,
            )
            .await;
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tickets/{number}")) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        Ok(other) => unexpected(&other),
        Err(e) => control_error(e),
    }
}

/// `POST /api/v1/tickets/{number or id}/{action}`: an operator's action; 200 with the record.
pub(super) async fn act(
    state: &ApiState,
    key: &str,
    name: &str,
    body: &[u8],
    actor: String,
) -> Resp {
    let action = match ticket_requests::action(name, body) {
        Ok(a) => a,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let k = key.to_string();
    // A closed ticket comes with its log: a reopen hands the whole record over.
    let stored = read_store(state, move |reader| {
        let row = reader.ticket_row(&k)?;
        let log = match &row {
            Some(r) if r.state == TicketState::Closed => reader.ticket_log(r.id)?,
            _ => Vec::new(),
        };
        Ok(row.map(|r| (r, log)))
    })
    .await;
    let (row, history) = match stored {
        Ok(Some(found)) => found,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("ticket {key} does not exist"),
            );
        }
        Err(resp) => return resp,
    };
    let id = row.id;
    // The engine lets go of closed tickets: hand it the stored one (only reopen is allowed).
    let stored = (row.state == TicketState::Closed).then(|| Box::new(row));
    let cmd = Command::Ticket {
        id,
        action,
        actor: actor.clone(),
        stored,
        history,
    };
    match state.control.command(cmd).await {
        Ok(Reply::Ticket(t)) => {
            tracing::info!(ticket = %t.number, action = name, state = t.state.as_str(), by = %actor, "ticket action");
            read_back(
                state,
                StatusCode::OK,
                move |r| r.ticket(&id.to_string()).map(|v| v.map(ticket_value)),
                &t,
            )
            .await
        }
        Ok(other) => unexpected(&other),
        Err(e) => control_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_text_columns_become_json() {
        let Json::Object(m) = json!({"number": "INC-000001", "affected": "{\"nodes\":[\"web-01\"]}",
            "similar": "[]", "sla": "{\"response_target_ms\":900000}", "summary": "{not json"})
        else {
            unreachable!()
        };
        let t = ticket_json(m);
        assert_eq!(t["affected"]["nodes"][0], "web-01");
        assert_eq!(t["similar"], json!([]));
        assert_eq!(t["sla"]["response_target_ms"], 900_000);
        assert_eq!(t["summary"], "{not json");
        // Already parsed: unchanged.
        let Json::Object(m) = json!({"affected": {"nodes": []}, "similar": "plain text"}) else {
            unreachable!()
        };
        let t = ticket_json(m);
        assert_eq!(t["affected"], json!({"nodes": []}));
        assert_eq!(t["similar"], "plain text");
    }

    #[test]
    fn filters() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(name_filter("group", None), Ok(None));
        assert_eq!(
            name_filter("group", q(&[("group", " network ")]).get("group")),
            Ok(Some("network".into()))
        );
        assert!(name_filter("group", q(&[("group", "")]).get("group")).is_err());
        assert_eq!(limit(&q(&[("limit", "5")])), Ok(Some(5)));
        assert!(limit(&q(&[("limit", "0")])).is_err());
        assert!(limit(&q(&[("limit", "x")])).is_err());
    }
}
