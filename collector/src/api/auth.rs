//! Bearer tokens for the API: an operator token that may write, a viewer token that may read.
//!
//! Tokens live in files (`[http] operator_token_file`, `viewer_token_file`), read once at
//! start. Without an operator token, writes are accepted only while the API is open on
//! loopback (listens on a loopback address and `[http] open_on_loopback`, the default);
//! without a viewer token, the same holds for reads. On any other address every `/api/v1`
//! request needs a token.

use std::net::SocketAddr;
use std::path::Path;

use hyper::StatusCode;

use crate::config::{ConfigError, HttpConfig};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health and metrics: never needs a token.
    Open,
    Read,
    Write,
}

/// A refusal: status (401 or 403) and the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: StatusCode,
    pub message: String,
}

/// The configured tokens.
pub struct Auth {
    operator: Option<Vec<u8>>,
    viewer: Option<Vec<u8>>,
    /// Open on loopback: the listener is on a loopback address and tokenless local requests
    /// are allowed.
    loopback: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens.
        f.debug_struct("Auth")
            .field("operator", &self.operator.is_some())
            .field("viewer", &self.viewer.is_some())
            .field("loopback", &self.loopback)
            .finish()
    }
}

/// Read a token file: its content without surrounding whitespace, which must not be empty.
pub fn read_token_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            message: "the token file is empty".into(),
        });
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            message: "the token must be one word (no spaces or line breaks inside)".into(),
        });
    }
    Ok(token.as_bytes().to_vec())
}

/// Equal contents, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

impl Auth {
    /// Tokens as given (tests); `listen` decides whether tokenless writes are allowed.
    pub fn new(operator: Option<&str>, viewer: Option<&str>, listen: SocketAddr) -> Auth {
        Auth {
            operator: operator.map(|t| t.as_bytes().to_vec()),
            viewer: viewer.map(|t| t.as_bytes().to_vec()),
            loopback: listen.ip().is_loopback(),
        }
    }

    /// Read the token files named in `[http]`.
    pub fn load(http: &HttpConfig, listen: SocketAddr) -> Result<Auth, ConfigError> {
        let operator = http
            .operator_token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?;
        let viewer = http
            .viewer_token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?;
        Ok(Auth {
            operator,
            viewer,
            loopback: listen.ip().is_loopback() && http.open_on_loopback,
        })
    }

    /// Writes are checked against an operator token (else they come from open loopback).
    pub fn has_operator_token(&self) -> bool {
        self.operator.is_some()
    }

    /// Writes are possible at all (a token is set, or the listener is local).
    pub fn writes_enabled(&self) -> bool {
        self.operator.is_some() || self.loopback
    }

    /// Decide on a request given its `Authorization` header.
    pub fn check(&self, access: Access, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let presented = authorization.and_then(bearer);
        let is = |token: &Option<Vec<u8>>| match (token, presented) {
            (Some(t), Some(p)) => constant_time_eq(t, p),
            _ => false,
        };
        let (operator, viewer) = (is(&self.operator), is(&self.viewer));
        let unauthorized = |message: &str| Denied {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_string(),
        };
        match access {
            Access::Open => Ok(()),
            Access::Read => {
                if (self.viewer.is_none() && self.loopback) || operator || viewer {
                    Ok(())
                } else if self.viewer.is_none() && presented.is_none() {
                    Err(Denied {
                        status: StatusCode::FORBIDDEN,
                        message: "reads need a token: the API is not open on loopback and no viewer token is configured (set [http] viewer_token_file, or send the operator token)".into(),
                    })
                } else if presented.is_none() {
                    Err(unauthorized(
                        "this API needs a token: send Authorization: Bearer <viewer or operator token>",
                    ))
                } else {
                    Err(unauthorized("the token is not valid"))
                }
            }
            Access::Write => match &self.operator {
                None if self.loopback => Ok(()),
                None => Err(Denied {
                    status: StatusCode::FORBIDDEN,
                    message: "writes are disabled: the API listens on a non-loopback address and no operator token is configured (set [http] operator_token_file)".into(),
                }),
                Some(_) if operator => Ok(()),
                Some(_) if viewer => Err(Denied {
                    status: StatusCode::FORBIDDEN,
                    message: "the viewer token may only read; writes need the operator token".into(),
                }),
                Some(_) if presented.is_none() => Err(unauthorized(
                    "writes need the operator token: send Authorization: Bearer <operator token>",
                )),
                Some(_) => Err(unauthorized("the token is not valid")),
            },
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
    const PUBLIC: ([u8; 4], u16) = ([0, 0, 0, 0], 8080);

    fn status(r: Result<(), Denied>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(d) => d.status.as_u16(),
        }
    }

    #[test]
    fn compares_in_constant_time_and_correctly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }

    #[test]
    fn operator_token_guards_writes() {
        let auth = Auth::new(Some("op"), None, LOCAL.into());
        assert_eq!(status(auth.check(Access::Write, None)), 401);
        assert_eq!(status(auth.check(Access::Write, Some(b"Bearer nope"))), 401);
        assert_eq!(status(auth.check(Access::Write, Some(b"Bearer op"))), 200);
        // No viewer token: reads are open.
        assert_eq!(status(auth.check(Access::Read, None)), 200);
    }

    #[test]
    fn viewer_token_guards_reads_and_cannot_write() {
        let auth = Auth::new(Some("op"), Some("view"), PUBLIC.into());
        assert_eq!(status(auth.check(Access::Read, None)), 401);
        assert_eq!(status(auth.check(Access::Read, Some(b"Bearer x"))), 401);
        assert_eq!(status(auth.check(Access::Read, Some(b"Bearer view"))), 200);
        assert_eq!(status(auth.check(Access::Read, Some(b"Bearer op"))), 200);
        assert_eq!(status(auth.check(Access::Write, Some(b"Bearer view"))), 403);
        assert_eq!(status(auth.check(Access::Open, None)), 200);
    }

    #[test]
    fn without_operator_token_only_loopback_may_write() {
        let local = Auth::new(None, None, LOCAL.into());
        assert_eq!(status(local.check(Access::Write, None)), 200);
        let public = Auth::new(None, None, PUBLIC.into());
        let denied = public.check(Access::Write, None).expect_err("refused");
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert!(denied.message.contains("operator_token_file"));
        assert!(!denied.message.contains('\n'));
        assert!(!public.writes_enabled());
        // Nor reads: a public listener without a viewer token is not open to anyone.
        let denied = public.check(Access::Read, None).expect_err("refused");
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert!(denied.message.contains("viewer_token_file"));
        let v6 = Auth::new(None, None, "[::1]:8080".parse().expect("addr"));
        assert!(v6.writes_enabled());
        assert_eq!(status(v6.check(Access::Read, None)), 200);
        // Loopback can be closed too.
        let http = HttpConfig {
            open_on_loopback: false,
            ..HttpConfig::default()
        };
        let closed = Auth::load(&http, LOCAL.into()).expect("load");
        assert_eq!(status(closed.check(Access::Read, None)), 403);
        assert_eq!(status(closed.check(Access::Write, None)), 403);
    }

    #[test]
    fn token_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = dir.path().join("op.token");
        std::fs::write(&good, "s3cret\n").expect("write");
        assert_eq!(read_token_file(&good).expect("read"), b"s3cret");
        let empty = dir.path().join("empty.token");
        std::fs::write(&empty, "\n  \n").expect("write");
        let err = read_token_file(&empty).expect_err("empty").to_string();
        assert!(
            err.contains("empty.token: the token file is empty"),
            "{err}"
        );
        let err = read_token_file(&dir.path().join("missing")).expect_err("missing");
        assert!(err.to_string().contains("cannot read"));
        let http = HttpConfig {
            operator_token_file: Some(good),
            ..HttpConfig::default()
        };
        let auth = Auth::load(&http, PUBLIC.into()).expect("load");
        assert_eq!(
            status(auth.check(Access::Write, Some(b"Bearer s3cret"))),
            200
        );
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
