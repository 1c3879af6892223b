//! The `tocsin` operator CLI: a client of the HTTP API with table output, `--json` or `--csv`.

mod analytics;
pub mod config;
mod output;
mod query;
mod table;
mod ticket_view;
mod tickets;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

pub use analytics::{
    GroupBy, analytics_csv_table, analytics_path, analytics_table, analytics_text,
};
pub use output::{Cell, Column, Table, duration};
pub use query::{query_body, query_csv_warning, query_table, query_text, run_query};
pub use table::{
    incident_detail, incidents_table, maintenance_table, nodes_table, problem_detail,
    problems_table, reload_result,
};
pub use ticket_view::{notifications_table, ticket_detail, tickets_table};
pub use tickets::{NewTicket, TicketCommand, ticket_command};

/// The exit codes, one table for the docs of [`CliError::exit_code`] and `tocsin --help`.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  internal error (the CLI could not start)
  2  usage: a bad command line, --json with --csv, a bad or missing config file,
     an unreadable token file
  3  the collector is unreachable (or gave no answer within 30s)
  4  not found (HTTP 404)
  5  any other API error (HTTP 400, 401, 403, 500..., an answer that is not JSON,
     a refused rule reload)
  6  conflict: the ticket's state does not allow the action (HTTP 409)
  7  query refused: not one SELECT, or an SQL error (HTTP 422 of tocsin query)
  8  query stopped at the time limit (HTTP 408)
  9  the collector is busy: too many queries at once (HTTP 429); try again later
"
    };
}

/// The exit-code table.
pub const EXIT_CODES: &str = exit_codes!();

/// The end of `tocsin --help`: where settings come from, and the exit codes.
pub const HELP_FOOTER: &str = concat!(
    "Settings: a flag beats the environment, which beats the config file, which beats the default.
The config file is $XDG_CONFIG_HOME/tocsin/cli.toml (else ~/.config/tocsin/cli.toml), or the one
named by --config or TOCSIN_CONFIG; its keys: api, token_file, token, actor.

",
    exit_codes!()
);

/// Why a CLI call failed; the binary maps these to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the collector at {url}: {message} (is it running? set --api, TOCSIN_API or api in cli.toml)"
    )]
    Unreachable { url: String, message: String },
    #[error("{url}: HTTP {status}: {message}{}", .details.iter().map(|d| format!("\n  {d}")).collect::<String>())]
    Http {
        url: String,
        status: u16,
        message: String,
        /// Further lines (a refused reload's errors, one per line).
        details: Vec<String>,
    },
    #[error("{url}: the answer is not JSON: {message}")]
    BadAnswer { url: String, message: String },
    /// The command line is incomplete (checked before anything is sent).
    #[error("{0}")]
    Usage(String),
    /// cli.toml or a token file cannot be used (one line naming the file, and the line).
    #[error("{0}")]
    Config(String),
    /// `tocsin query`: the API refused the SQL or DuckDB failed on it (HTTP 422): the API's
    /// one-line reason as it is.
    #[error("{message}")]
    QueryRefused { message: String },
    /// `tocsin query`: the time limit passed (HTTP 408): the API's one-line reason.
    #[error("{message}")]
    QueryTimeout { message: String },
}

impl CliError {
    /// The exit code scripts can rely on.
    ///
    /// ```text
    #[doc = exit_codes!()]
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Http { status: 404, .. } => 4,
            CliError::Http { status: 409, .. } => 6,
            CliError::QueryRefused { .. } => 7,
            CliError::QueryTimeout { .. } | CliError::Http { status: 408, .. } => 8,
            CliError::Http { status: 429, .. } => 9,
            CliError::Http { .. } | CliError::BadAnswer { .. } => 5,
        }
    }
}

/// A small JSON-over-HTTP client for the collector API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    actor: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("actor", &self.actor)
            .finish()
    }
}

/// The bearer token for the CLI: from `--token-file`, else the `TOCSIN_TOKEN` value.
pub fn token_from(
    file: Option<&std::path::Path>,
    env: Option<String>,
) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the token file: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("{}: the token file is empty", path.display()));
        }
        return Ok(Some(token.to_string()));
    }
    Ok(env.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

impl ApiClient {
    /// `base` like `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Self {
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            actor: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Send `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Name the operator in the collector's audit trail (`X-Tocsin-Actor`).
    pub fn with_actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` (with query) and parse the JSON answer.
    pub async fn get(&self, path: &str) -> Result<Json, CliError> {
        self.request(Method::GET, path, None).await
    }

    /// POST `path` with an optional JSON body and parse the JSON answer.
    pub async fn post(&self, path: &str, body: Option<&Json>) -> Result<Json, CliError> {
        self.request(Method::POST, path, body).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, CliError> {
        let url = format!("{}{path}", self.base);
        let uri: hyper::Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| CliError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            req = req.header(AUTHORIZATION, v);
        }
        if let Some(a) = &self.actor
            && let Ok(v) = HeaderValue::from_str(a)
        {
            req = req.header("x-tocsin-actor", v);
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| CliError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
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
            let details = json
                .get("errors")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            return Err(CliError::Http {
                url,
                status: status.as_u16(),
                message,
                details,
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

    #[test]
    fn tokens_from_file_or_env() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("t");
        std::fs::write(&f, "abc\n").expect("write");
        assert_eq!(
            token_from(Some(&f), Some("env".into())).expect("file wins"),
            Some("abc".into())
        );
        assert_eq!(
            token_from(None, Some(" env ".into())).expect("env"),
            Some("env".into())
        );
        assert_eq!(token_from(None, Some(String::new())).expect("blank"), None);
        assert!(token_from(Some(&dir.path().join("nope")), None).is_err());
    }

    #[test]
    fn http_errors_list_their_details() {
        let e = CliError::Http {
            url: "u".into(),
            status: 422,
            message: "rules not reloaded".into(),
            details: vec!["a.toml:3: rule \"x\": bad".into()],
        };
        assert_eq!(e.exit_code(), 5);
        assert_eq!(
            e.to_string(),
            "u: HTTP 422: rules not reloaded\n  a.toml:3: rule \"x\": bad"
        );
        let conflict = CliError::Http {
            url: "u".into(),
            status: 409,
            message: "cannot close a ticket that is in_progress (allowed: pend, resolve)".into(),
            details: Vec::new(),
        };
        assert_eq!(conflict.exit_code(), 6);
        assert_eq!(conflict.to_string().lines().count(), 1);
    }

    #[test]
    fn the_exit_code_table_matches_the_codes() {
        let http = |status: u16| CliError::Http {
            url: "u".into(),
            status,
            message: "m".into(),
            details: Vec::new(),
        };
        let message = || "m".to_string();
        for (err, code, words) in [
            (CliError::Usage(message()), 2, "usage"),
            (CliError::Config(message()), 2, "config file"),
            (
                CliError::Unreachable {
                    url: "u".into(),
                    message: message(),
                },
                3,
                "unreachable",
            ),
            (http(404), 4, "HTTP 404"),
            (http(400), 5, "HTTP 400"),
            (http(401), 5, "401"),
            (
                CliError::BadAnswer {
                    url: "u".into(),
                    message: message(),
                },
                5,
                "not JSON",
            ),
            (http(409), 6, "HTTP 409"),
            (CliError::QueryRefused { message: message() }, 7, "HTTP 422"),
            (CliError::QueryTimeout { message: message() }, 8, "HTTP 408"),
            (http(408), 8, "HTTP 408"),
            (http(429), 9, "HTTP 429"),
        ] {
            assert_eq!(err.exit_code(), code, "{err:?}");
            let row = EXIT_CODES
                .split(&format!("\n  {code}  "))
                .nth(1)
                .and_then(|rest| rest.split("\n  ").next())
                .unwrap_or_default();
            assert!(row.contains(words), "code {code}: {words:?} not in {row:?}");
        }
        let refused = CliError::QueryRefused {
            message: "refused: only one SELECT statement is allowed".into(),
        };
        assert_eq!(
            refused.to_string(),
            "refused: only one SELECT statement is allowed"
        );
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
