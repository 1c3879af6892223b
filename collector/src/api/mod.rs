//! HTTP API (hyper): health, Prometheus metrics, the read endpoints under `/api/v1`, and the
//! write endpoints (rule reload, maintenance windows, problem updates, tickets) that go to the
//! engine through the control queue.

mod analytics;
pub mod auth;
pub mod requests;
pub mod ticket_requests;
mod tickets;
mod web;

#[cfg(test)]
mod analytics_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod ticket_tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{
    ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::control::{ControlError, ControlHandle, LiveNode};
use crate::engine::{Command, CommandError, Reply};
use crate::metrics::Metrics;
use crate::store::{MaintenanceFilter, Reader, StoreError};
use crate::time::{Millis, now_millis, rfc3339};

pub use analytics::QueryGate;
pub use auth::{Access, Auth};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub reader: Reader,
    pub metrics: Arc<Metrics>,
    /// Operator commands and reloads into the engine pipeline.
    pub control: ControlHandle,
    pub auth: Arc<Auth>,
    /// Limits and counters of the read-only SQL endpoint.
    pub queries: Arc<QueryGate>,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_resp(status: StatusCode, v: &Json) -> Resp {
    respond(status, "application/json", v.to_string())
}

fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "error": msg.into() }))
}

fn query_of(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Run a blocking store read off the runtime; a failure is already the answer (500, logged).
pub(super) async fn read_store<T, F>(state: &ApiState, f: F) -> Result<T, Resp>
where
    F: FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let reader = state.reader.clone();
    match tokio::task::spawn_blocking(move || f(&reader)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "store read failed");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store read failed: {e}"),
            ))
        }
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store read task failed: {e}"),
        )),
    }
}

/// Run a blocking store read off the runtime and turn its result into a response.
async fn read<T, F>(state: &ApiState, f: F, not_found: Option<String>) -> Resp
where
    F: FnOnce(&Reader) -> Result<Option<T>, StoreError> + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    match read_store(state, f).await {
        Ok(Some(v)) => json_resp(
            StatusCode::OK,
            &serde_json::to_value(v).unwrap_or(Json::Null),
        ),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            not_found.unwrap_or_else(|| "not found".into()),
        ),
        Err(resp) => resp,
    }
}

fn one_of(name: &str, value: Option<&String>, allowed: &[&str]) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
        Some(v) => Err(format!("{name}={v:?} is not one of {}", allowed.join(", "))),
    }
}

const INCIDENT_STATES: &[&str] = &["open", "resolved", "closed", "merged"];
const ALERT_STATES: &[&str] = &["pending", "firing", "resolved"];
const TICKET_STATES: &[&str] = &[
    "new",
    "acknowledged",
    "in_progress",
    "pending",
    "resolved",
    "closed",
];
const PROBLEM_STATES: &[&str] = &["open", "known_error", "resolved"];
const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4"];

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The methods a path answers to; None for an unknown path.
fn allowed_methods(segments: &[&str]) -> Option<&'static [Method]> {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    const BOTH: &[Method] = &[Method::GET, Method::POST];
    Some(match segments {
        ["healthz"] | ["readyz"] | ["metrics"] => GET,
        [] | ["web", _] => GET,
        ["api", "v1", "analytics", "summary"] => GET,
        ["api", "v1", "query"] => POST,
        [
            "api",
            "v1",
            "nodes" | "alerts" | "incidents" | "rejected" | "problems" | "notifications",
        ] => GET,
        ["api", "v1", "tickets"] => BOTH,
        ["api", "v1", "incidents" | "tickets", _] => GET,
        ["api", "v1", "tickets", _, action] if ticket_requests::ACTIONS.contains(action) => POST,
        ["api", "v1", "problems", _] => BOTH,
        ["api", "v1", "maintenance"] => BOTH,
        ["api", "v1", "maintenance", _] => GET,
        ["api", "v1", "maintenance", _, "end"] => POST,
        ["api", "v1", "rules", "reload"] => POST,
        _ => return None,
    })
}

fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> Resp {
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} {path}: allowed here: {}", names.join(", ")),
    );
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        r.headers_mut().insert(ALLOW, v);
    }
    r
}

/// Read a request body of at most [`MAX_BODY`] bytes.
async fn body_bytes<B>(req: Request<B>) -> Result<Bytes, Resp>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {} KiB", MAX_BODY / 1024),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// A control request's failure as a response.
fn control_error(e: ControlError) -> Resp {
    match e {
        ControlError::Rules(lines) => json_resp(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({
                "error": ControlError::Rules(lines.clone()).to_string(),
                "errors": lines,
            }),
        ),
        ControlError::Command(CommandError::NotFound(m)) => error(StatusCode::NOT_FOUND, m),
        ControlError::Command(CommandError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        ControlError::Command(CommandError::Conflict(m)) => error(StatusCode::CONFLICT, m),
        ControlError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// A browser's request sent by a page of another site (cross-site request forgery): its
/// `Origin` names another host than the one it was sent to. A page may POST to a loopback
/// collector without a token, so such requests are refused; the CLI and other programs send no
/// `Origin`, the dashboard sends its own.
fn cross_site(headers: &hyper::HeaderMap) -> bool {
    let Some(origin) = headers.get(hyper::header::ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("null");
    let authority = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    !authority.eq_ignore_ascii_case(host)
}

/// A file of the web dashboard (dashboards/web, embedded in the binary).
fn static_asset(name: &str) -> Resp {
    match web::asset(name) {
        Some((content_type, bytes)) => {
            let mut r = respond(StatusCode::OK, content_type, Bytes::from_static(bytes));
            let h = r.headers_mut();
            h.insert(
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            // The page loads nothing from elsewhere and has no inline script or style.
            h.insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
            );
            h.insert(
                hyper::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        None => error(StatusCode::NOT_FOUND, format!("no such file: /web/{name}")),
    }
}

/// Route one request.
pub async fn handle<B>(state: ApiState, req: Request<B>) -> Resp
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q = query_of(req.uri());
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(allowed) = allowed_methods(&segments) else {
        if let ["api", "v1", "tickets", _, action] = segments.as_slice() {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no ticket action {action:?}: use one of {}",
                    ticket_requests::ACTIONS.join(", ")
                ),
            );
        }
        return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"));
    };
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    if !allowed.contains(&method) {
        return method_not_allowed(req.method(), &path, allowed);
    }
    let access = match (&method, segments.as_slice()) {
        (_, ["healthz"] | ["readyz"] | ["metrics"] | [] | ["web", _]) => Access::Open,
        // A read, although it is a POST (the SQL does not fit a URL).
        (_, ["api", "v1", "query"]) => Access::Read,
        (&Method::GET, _) => Access::Read,
        _ => Access::Write,
    };
    if method == Method::POST && cross_site(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            "a write from another web site is refused: use the dashboard served by this collector, the CLI or the API directly",
        );
    }
    let authorization = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if let Err(denied) = state.auth.check(access, authorization) {
        let mut r = error(denied.status, denied.message);
        if denied.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return r;
    }
    if method == Method::POST {
        // The name is self-declared; the audit trail also says which credential vouched for it.
        let credential = if state.auth.has_operator_token() {
            "operator token"
        } else {
            "open loopback"
        };
        let actor = format!(
            "{} via {credential}",
            requests::actor(
                req.headers()
                    .get("x-tocsin-actor")
                    .map(HeaderValue::as_bytes),
            )
        );
        let body = match body_bytes(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        if let ["api", "v1", "query"] = segments.as_slice() {
            return analytics::query(&state, &body).await;
        }
        return write(&state, &segments, &body, actor).await;
    }
    match segments.as_slice() {
        ["healthz"] => json_resp(StatusCode::OK, &json!({"status": "ok"})),
        ["readyz"] => {
            let connected = state.metrics.ingest.connected.load(Ordering::Relaxed);
            let reader = state.reader.clone();
            let store_ok = tokio::task::spawn_blocking(move || reader.counts().is_ok())
                .await
                .unwrap_or(false);
            let ready = connected && store_ok;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_resp(
                status,
                &json!({"ready": ready, "mqtt_connected": connected, "store": store_ok}),
            )
        }
        ["metrics"] => {
            let mut text = state.metrics.render();
            state.queries.render(&mut text);
            respond(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        [] => static_asset("index.html"),
        ["web", name] => static_asset(name),
        ["api", "v1", "analytics", "summary"] => analytics::summary(&state, &q).await,
        ["api", "v1", "nodes"] => nodes(&state).await,
        ["api", "v1", "alerts"] => {
            let st = match one_of("state", q.get("state"), ALERT_STATES) {
                Ok(s) => s,
                Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
            };
            read(&state, move |r| r.alerts(st.as_deref()).map(Some), None).await
        }
        ["api", "v1", "incidents"] => {
            let st = match one_of("state", q.get("state"), INCIDENT_STATES) {
                Ok(s) => s,
                Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
            };
            read(&state, move |r| r.incidents(st.as_deref()).map(Some), None).await
        }
        ["api", "v1", "incidents", id] => match id.parse::<i64>() {
            Ok(id) => {
                read(
                    &state,
                    move |r| r.incident(id),
                    Some(format!("incident {id} does not exist")),
                )
                .await
            }
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                format!("incident id {id:?} is not a number"),
            ),
        },
        ["api", "v1", "tickets"] => tickets::list(&state, &q).await,
        ["api", "v1", "tickets", key] => tickets::show(&state, key).await,
        ["api", "v1", "notifications"] => tickets::notifications(&state, &q).await,
        ["api", "v1", "problems"] => {
            let st = match one_of("state", q.get("state"), PROBLEM_STATES) {
                Ok(s) => s,
                Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
            };
            read(&state, move |r| r.problems(st.as_deref()).map(Some), None).await
        }
        ["api", "v1", "problems", key] => {
            let key = key.to_string();
            let msg = format!("problem {key} does not exist");
            read(&state, move |r| r.problem(&key), Some(msg)).await
        }
        ["api", "v1", "maintenance"] => {
            let filter = match q.get("active").map(String::as_str) {
                None | Some("false") => MaintenanceFilter::All,
                Some("true") => MaintenanceFilter::Active,
                Some(v) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("active={v:?} is not true or false"),
                    );
                }
            };
            let now = now_millis();
            read(&state, move |r| r.maintenance(filter, now).map(Some), None).await
        }
        ["api", "v1", "maintenance", id] => match id.parse::<i64>() {
            Ok(id) => {
                let now = now_millis();
                read(
                    &state,
                    move |r| r.maintenance_window(id, now),
                    Some(format!("maintenance window {id} does not exist")),
                )
                .await
            }
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                format!("maintenance id {id:?} is not a number"),
            ),
        },
        ["api", "v1", "rejected"] => {
            let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            read(&state, move |r| r.rejected(limit).map(Some), None).await
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// The write endpoints: every change goes to the engine through the control queue, and the
/// answer is the stored row, read back once the change is committed.
async fn write(state: &ApiState, segments: &[&str], body: &[u8], actor: String) -> Resp {
    let now = now_millis();
    match segments {
        ["api", "v1", "rules", "reload"] => match state.control.reload().await {
            Ok(r) => {
                tracing::info!(rules = r.rules, files = r.files, by = %actor, "rules reloaded through the API");
                json_resp(
                    StatusCode::OK,
                    &serde_json::to_value(&r).unwrap_or(Json::Null),
                )
            }
            Err(e) => {
                if let ControlError::Rules(lines) = &e {
                    for l in lines {
                        tracing::warn!(error = %l, "rules reload refused; the old rules stay in force");
                    }
                }
                control_error(e)
            }
        },
        ["api", "v1", "maintenance"] => {
            let row = match requests::maintenance(body, now, &actor) {
                Ok(r) => r,
                Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
            };
            match state.control.command(Command::AddMaintenance(row)).await {
                Ok(Reply::Maintenance(m)) => {
                    tracing::info!(id = m.id, name = %m.name, by = %m.created_by, "maintenance window added");
                    let id = m.id;
                    read_back(
                        state,
                        StatusCode::CREATED,
                        move |r| r.maintenance_window(id, now),
                        &m,
                    )
                    .await
                }
                Ok(other) => unexpected(&other),
                Err(e) => control_error(e),
            }
        }
        ["api", "v1", "maintenance", id, "end"] => {
            let Ok(id) = id.parse::<i64>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("maintenance id {id:?} is not a number"),
                );
            };
            if !body.iter().all(u8::is_ascii_whitespace)
                && let Err(msg) = requests::Body::parse(body, &[])
            {
                return error(StatusCode::BAD_REQUEST, msg);
            }
            let cmd = Command::EndMaintenance {
                id,
                actor: actor.clone(),
            };
            match state.control.command(cmd).await {
                Ok(Reply::Maintenance(m)) => {
                    tracing::info!(id, name = %m.name, by = %actor, "maintenance window ended");
                    read_back(
                        state,
                        StatusCode::OK,
                        move |r| r.maintenance_window(id, now),
                        &m,
                    )
                    .await
                }
                Ok(other) => unexpected(&other),
                Err(e) => control_error(e),
            }
        }
        ["api", "v1", "problems", key] => {
            let (new_state, workaround) = match requests::problem_update(body) {
                Ok(u) => u,
                Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
            };
            let key = key.to_string();
            let k = key.clone();
            let id = match read_store(state, move |r| r.problem_id(&k)).await {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return error(
                        StatusCode::NOT_FOUND,
                        format!("problem {key} does not exist"),
                    );
                }
                Err(resp) => return resp,
            };
            let cmd = Command::UpdateProblem {
                id,
                state: new_state,
                workaround,
                actor: actor.clone(),
            };
            match state.control.command(cmd).await {
                Ok(Reply::Problem(p)) => {
                    tracing::info!(problem = %p.number, state = p.state.as_str(), by = %actor, "problem updated");
                    read_back(
                        state,
                        StatusCode::OK,
                        move |r| r.problem(&id.to_string()),
                        &p,
                    )
                    .await
                }
                Ok(other) => unexpected(&other),
                Err(e) => control_error(e),
            }
        }
        ["api", "v1", "tickets"] => tickets::open(state, body, actor).await,
        ["api", "v1", "tickets", key, action] => {
            tickets::act(state, key, action, body, actor).await
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

fn unexpected(reply: &Reply) -> Resp {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "the engine answered with something else: {}",
            serde_json::to_string(reply).unwrap_or_default()
        ),
    )
}

/// Answer with the stored row (what a GET shows); the engine's own row if the read fails.
/// The stored nodes with the engine's state, sequence and times over the stored ones: the
/// store writes a node's row with its stored report (every `[store] report_interval`), a
/// state change or a status, not with every report. Read after the store, the engine is as
/// far or further. If the engine does not answer within 2 s (shutting down, or its queue
/// full), the stored rows as they are.
async fn nodes(state: &ApiState) -> Resp {
    let stored = match read_store(state, |r| r.nodes()).await {
        Ok(rows) => rows,
        Err(resp) => return resp,
    };
    let live = match tokio::time::timeout(Duration::from_secs(2), state.control.live_nodes()).await
    {
        Ok(Ok(live)) => live,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "nodes: the engine did not answer; stored rows only");
            Vec::new()
        }
        Err(_) => {
            tracing::debug!("nodes: the engine did not answer within 2 s; stored rows only");
            Vec::new()
        }
    };
    json_resp(StatusCode::OK, &Json::Array(with_live(stored, &live)))
}

/// Each stored node row with its live state, sequence and times (as the store formats them).
fn with_live(rows: Vec<serde_json::Map<String, Json>>, live: &[LiveNode]) -> Vec<Json> {
    let by_key: HashMap<(&str, &str), &LiveNode> = live
        .iter()
        .map(|l| ((l.site.as_str(), l.node.as_str()), l))
        .collect();
    let time = |t: Option<Millis>| t.map_or(Json::Null, |t| Json::String(rfc3339(t)));
    rows.into_iter()
        .map(|mut row| {
            let key = (
                row.get("site").and_then(Json::as_str).unwrap_or_default(),
                row.get("node").and_then(Json::as_str).unwrap_or_default(),
            );
            if let Some(l) = by_key.get(&key).copied() {
                row.insert("state".into(), Json::from(l.state.as_str()));
                row.insert("state_changed_at".into(), time(Some(l.state_changed_at)));
                row.insert("last_seq".into(), l.last_seq.map_or(Json::Null, Json::from));
                row.insert("last_ts".into(), time(l.last_ts));
                row.insert("last_report_at".into(), time(l.last_report_at));
                row.insert("updated_at".into(), time(Some(l.updated_at)));
            }
            Json::Object(row)
        })
        .collect()
}

async fn read_back<T, F>(state: &ApiState, status: StatusCode, f: F, fallback: &T) -> Resp
where
    F: FnOnce(&Reader) -> Result<Option<Json>, StoreError> + Send + 'static,
    T: serde::Serialize,
{
    let reader = state.reader.clone();
    match tokio::task::spawn_blocking(move || f(&reader)).await {
        Ok(Ok(Some(v))) => json_resp(status, &v),
        _ => json_resp(
            status,
            &serde_json::to_value(fallback).unwrap_or(Json::Null),
        ),
    }
}

/// Serve until `shutdown` fires, then let open requests finish (up to 5 s).
pub async fn serve(listener: TcpListener, state: ApiState, mut shutdown: broadcast::Receiver<()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let svc = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "http connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http connections still open after 5s; closing them");
    }
}
