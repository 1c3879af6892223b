//! Webhook delivery: the payload as a JSON POST, with the idempotency key and event as headers.
//!
//! 2xx is delivered; 4xx other than 408 and 429 is a permanent failure (the receiver refused
//! this request and will refuse it again); anything else, a timeout or no connection is retried.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{NotifyError, SendError, chain};
use crate::engine::targets::Webhook;
use crate::store::PendingNotification;

/// Most bytes of a refusing response body quoted in `last_error`.
const QUOTED_BODY: usize = 200;

/// What a response status means for the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Permanent,
    Retry,
}

/// Classify a response status.
pub fn classify(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        Verdict::Permanent
    } else {
        Verdict::Retry
    }
}

/// One HTTP(S) client for every webhook (connections are pooled per host).
pub struct WebhookSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSender")
    }
}

impl WebhookSender {
    /// A client trusting the system's CA certificates (https) that also speaks plain http.
    pub fn new() -> Result<Self, NotifyError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e,
                    "no system CA certificates found; https webhooks will fail until they are installed (ca-certificates)");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| NotifyError::Tls(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(WebhookSender { client })
    }

    /// POST `n`'s payload to the target named `name`.
    pub async fn send(
        &self,
        name: &str,
        target: &Webhook,
        n: &PendingNotification,
    ) -> Result<(), SendError> {
        let uri: Uri = target.url.parse().map_err(|e| {
            SendError::Permanent(format!(
                "webhook {name}: url {:?} is not valid: {e}",
                target.url
            ))
        })?;
        // The URL's path and query may hold a secret (many services put the token there).
        let place = format!(
            "webhook {name} ({}://{})",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or("?")
        );
        let body = serde_json::to_vec(&n.payload)
            .map_err(|e| SendError::Permanent(format!("{place}: payload: {e}")))?;
        let mut req = Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &target.headers {
            let key = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                SendError::Permanent(format!("{place}: header name {k:?} is not valid"))
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                SendError::Permanent(format!("{place}: the value of header {k:?} is not valid"))
            })?;
            req = req.header(key, value);
        }
        let key = HeaderValue::from_str(&n.key).map_err(|_| {
            SendError::Permanent(format!(
                "{place}: idempotency key {:?} is not a valid header",
                n.key
            ))
        })?;
        let event = HeaderValue::from_str(&n.event).map_err(|_| {
            SendError::Permanent(format!(
                "{place}: event {:?} is not a valid header",
                n.event
            ))
        })?;
        let req = req
            .header("Idempotency-Key", key)
            .header("X-Tocsin-Event", event)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Permanent(format!("{place}: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SendError::Retry(format!("{place}: {}", chain(&e))))?;
            let status = resp.status();
            let verdict = classify(status);
            if verdict == Verdict::Delivered {
                // Read the (small) answer so the connection can be reused; its content is not needed.
                let _ = Limited::new(resp.into_body(), 64 * 1024).collect().await;
                return Ok(());
            }
            let text = match Limited::new(resp.into_body(), 64 * 1024).collect().await {
                Ok(b) => quote(&b.to_bytes()),
                Err(_) => String::new(),
            };
            let message = format!("{place}: HTTP {status}{text}");
            Err(match verdict {
                Verdict::Permanent => SendError::Permanent(message),
                _ => SendError::Retry(message),
            })
        };
        match tokio::time::timeout(target.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Retry(format!(
                "{place}: no answer within {}",
                humantime::format_duration(target.timeout)
            ))),
        }
    }
}

/// `: <the start of the body>` on one line, or nothing for an empty body.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(QUOTED_BODY)
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}
