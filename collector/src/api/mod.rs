//! HTTP API (hyper): health, Prometheus metrics and the read endpoints under `/api/v1`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::store::{Reader, StoreError, TicketFilter};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub reader: Reader,
    pub metrics: Arc<Metrics>,
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

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Run a blocking store read off the runtime and turn its result into a response.
async fn read<T, F>(state: &ApiState, f: F, not_found: Option<String>) -> Resp
where
    F: FnOnce(&Reader) -> Result<Option<T>, StoreError> + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    let reader = state.reader.clone();
    match tokio::task::spawn_blocking(move || f(&reader)).await {
        Ok(Ok(Some(v))) => json_resp(
            StatusCode::OK,
            &serde_json::to_value(v).unwrap_or(Json::Null),
        ),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            not_found.unwrap_or_else(|| "not found".into()),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "store read failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store read failed: {e}"),
            )
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store read task failed: {e}"),
        ),
    }
}

fn one_of(name: &str, value: Option<&String>, allowed: &[&str]) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
        Some(v) => Err(format!("{name}={v:?} is not one of {}", allowed.join(", "))),
    }
}

const INCIDENT_STATES: &[&str] = &["open", "resolved", "closed"];
const ALERT_STATES: &[&str] = &["pending", "firing", "resolved"];
const TICKET_STATES: &[&str] = &["new", "acknowledged", "in_progress", "resolved", "closed"];
const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4"];

/// Route one request.
pub async fn handle(state: ApiState, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q = query(&req);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} {path}: only GET is served here", req.method()),
        );
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
        ["metrics"] => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        ["api", "v1", "nodes"] => read(&state, |r| r.nodes().map(Some), None).await,
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
        ["api", "v1", "tickets"] => {
            let filter = TicketFilter {
                state: match one_of("state", q.get("state"), TICKET_STATES) {
                    Ok(s) => s,
                    Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
                },
                priority: match one_of("priority", q.get("priority"), PRIORITIES) {
                    Ok(s) => s,
                    Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
                },
                limit: match q.get("limit").map(|l| l.parse::<usize>()) {
                    None => None,
                    Some(Ok(l)) => Some(l),
                    Some(Err(_)) => {
                        return error(StatusCode::BAD_REQUEST, "limit must be a positive number");
                    }
                },
            };
            read(&state, move |r| r.tickets(&filter).map(Some), None).await
        }
        ["api", "v1", "tickets", key] => {
            let key = key.to_string();
            let msg = format!("ticket {key} does not exist");
            read(&state, move |r| r.ticket(&key), Some(msg)).await
        }
        ["api", "v1", "rejected"] => {
            let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            read(&state, move |r| r.rejected(limit).map(Some), None).await
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
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
