//! The `tocsin` operator CLI: a client of the HTTP API with table output or `--json`.

mod table;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

pub use table::{incidents_table, nodes_table, ticket_detail, tickets_table};

/// Why a CLI call failed; the binary maps these to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the collector at {url}: {message} (is it running? set --api or TOCSIN_API)"
    )]
    Unreachable { url: String, message: String },
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: the answer is not JSON: {message}")]
    BadAnswer { url: String, message: String },
}

impl CliError {
    /// Exit code: 3 unreachable, 4 not found, 5 other API errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Unreachable { .. } => 3,
            CliError::Http { status: 404, .. } => 4,
            _ => 5,
        }
    }
}

/// A small JSON-over-HTTP client for the collector API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl ApiClient {
    /// `base` like `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Self {
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` (with query) and parse the JSON answer.
    pub async fn get(&self, path: &str) -> Result<Json, CliError> {
        let url = format!("{}{path}", self.base);
        let uri: hyper::Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| CliError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.get(uri))
            .await
            .map_err(|_| CliError::Unreachable {
                url: url.clone(),
                message: "no answer within 30s".into(),
            })?
            .map_err(|e| CliError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        let json: Json = serde_json::from_slice(&body).map_err(|e| CliError::BadAnswer {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if !status.is_success() {
            let message = json
                .get("error")
                .and_then(Json::as_str)
                .unwrap_or("no error message")
                .to_string();
            return Err(CliError::Http {
                url,
                status: status.as_u16(),
                message,
            });
        }
        Ok(json)
    }
}

/// `?k=v&...` from the given pairs, skipping empty ones, URL-encoded.
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", ser.finish())
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        assert_eq!(query_string(&[("state", None)]), "");
        assert_eq!(
            query_string(&[("state", Some("open")), ("priority", Some("P1"))]),
            "?state=open&priority=P1"
        );
        assert_eq!(query_string(&[("q", Some("a b&c"))]), "?q=a+b%26c");
    }

    #[tokio::test]
    async fn unreachable_collector_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let err = ApiClient::new(&format!("http://127.0.0.1:{port}"))
            .get("/api/v1/tickets")
            .await
            .expect_err("nothing listens");
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("cannot reach the collector"));
    }
}
