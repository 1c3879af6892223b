//! HTTP(S) check: one GET with hyper (HTTP/1.1, rustls for https); status, body substring and certificate days left.
//!
//! No redirect is followed: the status is reported as it is. For `https://` the server
//! certificate's remaining validity is reported as the metric [`CERT_DAYS_METRIC`] and turns
//! the check `warning`/`critical` under `cert_warning_days`/`cert_critical_days`.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::{Serialize, Serializer};
use tocsin_protocol::{CheckResult, CheckStatus, Metric};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{AbortOnDrop, CheckOutcome, millis, result};
use crate::config::{CheckConfig, format_duration};

/// Days of validity the server certificate has left (negative once expired); label `check`.
pub const CERT_DAYS_METRIC: &str = "check.tls_cert_remaining_days";
/// Bytes of the body read to look for `body_contains`.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("tocsin-agent/", env!("CARGO_PKG_VERSION"));

/// A parsed `http://` or `https://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub https: bool,
    /// Host to connect to, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written: the `Host` header.
    pub authority: String,
    /// Path and query (`/` when empty).
    pub path: String,
}

impl HttpTarget {
    /// Parse a check target; the error is one line.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "target {url:?} must start with http:// or https://"
            ));
        }
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("target {url:?} is not a valid URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "target {url:?} must start with http:// or https://"
                ));
            }
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("target {url:?} has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "target {url:?}: credentials in the URL are not supported"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("target {url:?} has no host"));
        }
        let port = match authority.port_u16() {
            Some(0) => return Err(format!("target {url:?}: port 0 is not valid")),
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        Ok(HttpTarget {
            https,
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".to_string()),
        })
    }
}

/// What came back, before judging it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub status: u16,
    /// The first [`BODY_LIMIT`] bytes, when `body_contains` asked for them.
    pub body: Option<Vec<u8>>,
    /// Whether the body went on past what was read.
    pub body_truncated: bool,
    /// For https: the certificate's notAfter (seconds since the epoch), or why it is unreadable.
    pub cert_not_after: Option<Result<i64, String>>,
}

/// Why no response came back. `Unknown` is a local problem (e.g. an unreadable `ca_file`).
#[derive(Debug)]
enum Failure {
    Critical(String),
    Unknown(String),
}

/// GET the check's URL within its timeout and judge the answer.
pub async fn check(name: String, config: &CheckConfig) -> CheckOutcome {
    let target = match HttpTarget::parse(&config.target) {
        Ok(t) => t,
        Err(e) => return result(name, CheckStatus::Unknown, e).into(),
    };
    let start = Instant::now();
    let url = &config.target;
    let fetched = match tokio::time::timeout(config.timeout, fetch(&target, config)).await {
        Ok(Ok(f)) => f,
        Ok(Err(failure)) => {
            let (status, why) = match failure {
                Failure::Critical(why) => (CheckStatus::Critical, why),
                Failure::Unknown(why) => (CheckStatus::Unknown, why),
            };
            return CheckResult {
                name,
                status,
                output: format!("GET {url}: {why}"),
                latency_ms: Some(millis(start.elapsed())),
            }
            .into();
        }
        Err(_) => {
            return result(
                name,
                CheckStatus::Critical,
                format!(
                    "GET {url}: timed out after {}",
                    format_duration(config.timeout)
                ),
            )
            .into();
        }
    };
    let latency = start.elapsed();
    evaluate(name, config, &fetched, latency, unix_now())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Judge a response: status range, body, certificate days (`now` in seconds since the epoch).
pub fn evaluate(
    name: String,
    config: &CheckConfig,
    fetched: &Fetched,
    latency: Duration,
    now: i64,
) -> CheckOutcome {
    let latency_ms = millis(latency);
    let code = fetched.status;
    let reason = hyper::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let expected = config.expect_status();
    let (mut status, mut output) = if !expected.contains(code) {
        (
            CheckStatus::Critical,
            format!("HTTP {code}{reason} (expected {expected})"),
        )
    } else {
        match (&config.body_contains, &fetched.body) {
            (Some(needle), Some(body)) if !contains(body, needle.as_bytes()) => {
                let scope = if fetched.body_truncated {
                    " in its first 1 MiB"
                } else {
                    ""
                };
                (
                    CheckStatus::Critical,
                    format!("HTTP {code}{reason}, but the body does not contain {needle:?}{scope}"),
                )
            }
            _ => (
                CheckStatus::Ok,
                format!("HTTP {code}{reason} in {latency_ms:.1} ms"),
            ),
        }
    };
    let mut metrics = Vec::new();
    match &fetched.cert_not_after {
        None => {}
        Some(Err(why)) => {
            status = worse(status, CheckStatus::Unknown);
            output.push_str(&format!("; certificate expiry unreadable: {why}"));
        }
        Some(Ok(not_after)) => {
            let days = ((not_after - now) as f64 / 86_400.0 * 100.0).round() / 100.0;
            metrics.push(Metric::new(CERT_DAYS_METRIC, days).with_label("check", name.clone()));
            let date = humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(u64::try_from(*not_after).unwrap_or(0)),
            )
            .to_string();
            let date = date.get(..10).unwrap_or(&date).to_string();
            if days < 0.0 {
                output.push_str(&format!(
                    "; certificate expired {:.1} days ago ({date})",
                    -days
                ));
            } else {
                output.push_str(&format!("; certificate expires in {days:.1} days ({date})"));
            }
            let (warn, crit) = (config.cert_warning_days(), config.cert_critical_days());
            if days < f64::from(crit) {
                status = worse(status, CheckStatus::Critical);
                output.push_str(&format!(", under {crit}"));
            } else if days < f64::from(warn) {
                status = worse(status, CheckStatus::Warning);
                output.push_str(&format!(", under {warn}"));
            }
        }
    }
    CheckOutcome {
        result: CheckResult {
            name,
            status,
            output,
            latency_ms: Some(latency_ms),
        },
        metrics,
    }
}

/// The more severe of two statuses (critical > warning > unknown > ok).
fn worse(a: CheckStatus, b: CheckStatus) -> CheckStatus {
    let rank = |s: CheckStatus| match s {
        CheckStatus::Ok => 0,
        CheckStatus::Unknown => 1,
        CheckStatus::Warning => 2,
        CheckStatus::Critical => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn fetch(target: &HttpTarget, config: &CheckConfig) -> Result<Fetched, Failure> {
    let tls = if target.https {
        Some(tls_config(config).await?)
    } else {
        None
    };
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::Critical(format!(
                "connect {}: {}",
                target.authority,
                super::tcp::describe(&e)
            ))
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return exchange(tcp, target, config, None).await;
    };
    let server_name = ServerName::try_from(target.host.clone()).map_err(|_| {
        Failure::Unknown(format!("{:?} is not a valid TLS server name", target.host))
    })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            Failure::Critical(format!(
                "TLS handshake with {}: {}",
                target.authority,
                describe_tls(&e)
            ))
        })?;
    let not_after = match stream.get_ref().1.peer_certificates() {
        Some([leaf, ..]) => not_after(leaf),
        _ => Err("the server sent no certificate".to_string()),
    };
    exchange(stream, target, config, Some(not_after)).await
}

/// Send the request over an open connection and read what the check needs.
async fn exchange<S>(
    io: S,
    target: &HttpTarget,
    config: &CheckConfig,
    cert_not_after: Option<Result<i64, String>>,
) -> Result<Fetched, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::Critical(describe_hyper(&e)))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let request = hyper::Request::get(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Unknown(format!("cannot build the request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Critical(describe_hyper(&e)))?;
    let status = response.status().as_u16();
    let (body, body_truncated) = if config.body_contains.is_some() {
        let (body, truncated) = read_body(response.into_body()).await?;
        (Some(body), truncated)
    } else {
        (None, false)
    };
    Ok(Fetched {
        status,
        body,
        body_truncated,
        cert_not_after,
    })
}

/// Read up to [`BODY_LIMIT`] bytes; `true` when the body went on past that.
async fn read_body(mut body: Incoming) -> Result<(Vec<u8>, bool), Failure> {
    let mut buf = Vec::new();
    while buf.len() < BODY_LIMIT {
        match body.frame().await {
            None => return Ok((buf, false)),
            Some(Err(e)) => {
                return Err(Failure::Critical(format!(
                    "reading the body: {}",
                    describe_hyper(&e)
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = BODY_LIMIT - buf.len();
                    buf.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok((buf, true))
}

/// A hyper error and its causes on one line.
fn describe_hyper(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TLS handshake failure in words an operator acts on.
fn describe_tls(e: &std::io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return super::tcp::describe(e);
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "certificate is not trusted (unknown issuer; add its CA with ca_file)".to_string()
            }
            CertificateError::Expired => "certificate has expired".to_string(),
            CertificateError::ExpiredContext { not_after, .. } => {
                let when = humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + Duration::from_secs(not_after.as_secs()),
                );
                format!("certificate expired at {when}")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate is not valid yet".to_string()
            }
            other => other.to_string(),
        },
        rustls::Error::AlertReceived(alert) => format!("the server refused: TLS alert {alert:?}"),
        other => other.to_string(),
    }
}

/// notAfter of a DER certificate, in seconds since the epoch.
fn not_after(der: &CertificateDer<'_>) -> Result<i64, String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .map_err(|e| e.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The system's CA certificates, loaded once per process (on a blocking thread).
async fn native_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return roots.clone();
    }
    let loaded = tokio::task::spawn_blocking(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "reading system CA certificates");
        }
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                ignored,
                "no system CA certificates found; https checks trust only their ca_file"
            );
        }
        Arc::new(store)
    })
    .await
    .unwrap_or_else(|_| Arc::new(RootCertStore::empty()));
    ROOTS.get_or_init(|| loaded).clone()
}

/// System roots plus the check's `ca_file`.
async fn roots(config: &CheckConfig) -> Result<Arc<RootCertStore>, Failure> {
    let system = native_roots().await;
    let Some(path) = &config.ca_file else {
        return Ok(system);
    };
    let shown = path.display();
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| Failure::Unknown(format!("ca_file {shown}: {}", super::tcp::describe(&e))))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Unknown(format!("ca_file {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(Failure::Unknown(format!(
            "ca_file {shown}: no PEM certificate in it"
        )));
    }
    let mut store = (*system).clone();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Failure::Unknown(format!(
            "ca_file {shown}: no usable CA certificate in it"
        )));
    }
    Ok(Arc::new(store))
}

async fn tls_config(config: &CheckConfig) -> Result<Arc<ClientConfig>, Failure> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Unknown(format!("TLS setup: {e}")))?;
    let tls = if config.tls_verify() {
        builder
            .with_root_certificates(roots(config).await?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(tls))
}

/// `tls_verify = false`: any certificate is accepted, but the handshake signatures are still
/// checked (the peer holds the key of the certificate it shows, whose expiry is reported).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// HTTP status codes a check accepts: `"200-399"`, `"200"`, `"200,301-302"` or a list of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(Vec<RangeInclusive<u16>>);

impl StatusRanges {
    /// Parse `"200-399"`, `"200"` or a comma-separated list of those.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::parse_items(&[s.to_string()])
    }

    pub(crate) fn parse_items(items: &[String]) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for item in items {
            for part in item.split(',') {
                ranges.push(
                    parse_status_range(part.trim())
                        .map_err(|why| format!("expect_status {:?}: {why}", item.trim()))?,
                );
            }
        }
        if ranges.is_empty() {
            return Err("expect_status must list at least one status code".to_string());
        }
        Ok(StatusRanges(ranges))
    }

    /// Whether no code is accepted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

fn parse_status_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    const SHAPE: &str = "expected a status code or a range like \"200-399\"";
    let code = |t: &str| -> Result<u16, String> {
        let n: u16 = t.trim().parse().map_err(|_| SHAPE.to_string())?;
        if (100..=599).contains(&n) {
            Ok(n)
        } else {
            Err(format!("status {n} is not between 100 and 599"))
        }
    };
    let (from, to) = match s.split_once('-') {
        Some((a, b)) => (code(a)?, code(b)?),
        None => {
            let c = code(s)?;
            (c, c)
        }
    };
    if from > to {
        return Err(format!("range {from}-{to} ends before it starts"));
    }
    Ok(from..=to)
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

impl Serialize for StatusRanges {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<RangeInclusive<u16>> for StatusRanges {
    fn from(range: RangeInclusive<u16>) -> Self {
        StatusRanges(vec![range])
    }
}

#[cfg(test)]
mod tests;
