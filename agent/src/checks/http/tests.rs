//! Tests of the HTTP(S) check against servers on 127.0.0.1 (certificates made with the openssl CLI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop<()>,
}

impl Server {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answer every request with `response` (over TLS when an acceptor is given).
async fn serve(response: Vec<u8>, tls: Option<TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (response, seen, tls) = (response.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer(tcp, &response, &seen).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            answer(stream, &response, &seen).await;
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        requests,
        _task: AbortOnDrop(task),
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    response: &[u8],
    seen: &Mutex<Vec<String>>,
) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    seen.lock()
        .expect("lock")
        .push(String::from_utf8_lossy(&request).into_owned());
    let _ = stream.write_all(response).await;
    let _ = stream.shutdown().await;
}

/// A CA and a leaf for 127.0.0.1/localhost valid `days` days, as PEM files in a tempdir.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki(days: u32) -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "30",
        "-subj",
        "/CN=tocsin-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(d, &ca);
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    openssl(d, &csr);
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    let days = days.to_string();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            &days,
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    Pki {
        ca: d.join("ca.pem"),
        cert: d.join("leaf.pem"),
        key: d.join("leaf.key"),
        _dir: dir,
    }
}

fn acceptor(pki: &Pki) -> TlsAcceptor {
    let cert_pem = std::fs::read(&pki.cert).expect("cert");
    let key_pem = std::fs::read(&pki.key).expect("key");
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .expect("key pem")
        .expect("a key");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

async fn run(config: &CheckConfig) -> CheckOutcome {
    check(config.report_name(), config).await
}

#[test]
fn targets() {
    let t = HttpTarget::parse("http://127.0.0.1:8080/health?x=1").expect("ok");
    assert_eq!(
        t,
        HttpTarget {
            https: false,
            host: "127.0.0.1".into(),
            port: 8080,
            authority: "127.0.0.1:8080".into(),
            path: "/health?x=1".into(),
        }
    );
    let t = HttpTarget::parse("https://example.org").expect("ok");
    assert_eq!((t.https, t.port, t.path.as_str()), (true, 443, "/"));
    let t = HttpTarget::parse("http://[::1]/x").expect("ok");
    assert_eq!(
        (t.host.as_str(), t.port, t.authority.as_str()),
        ("::1", 80, "[::1]")
    );
    for (bad, why) in [
        ("ftp://host/", "must start with http:// or https://"),
        ("example.org/x", "must start with http:// or https://"),
        (
            "http://user:pw@host/",
            "credentials in the URL are not supported",
        ),
        ("http://", "is not a valid URL"),
        ("http://host:0/", "port 0"),
    ] {
        let e = HttpTarget::parse(bad).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[tokio::test]
async fn status_ok_and_headers_sent() {
    let server = serve(response("200 OK", "fine"), None).await;
    let config = CheckConfig::http("web", server.url("http", "/health?x=1"));
    let out = run(&config).await;
    let r = &out.result;
    assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
    assert!(r.output.starts_with("HTTP 200 OK in "), "{}", r.output);
    assert!(r.latency_ms.is_some());
    assert!(out.metrics.is_empty(), "no certificate over plain http");
    let request = server.requests()[0].to_ascii_lowercase();
    assert!(
        request.starts_with("get /health?x=1 http/1.1\r\n"),
        "{request}"
    );
    for header in [
        format!("host: {}\r\n", server.addr),
        format!("user-agent: tocsin-agent/{}\r\n", env!("CARGO_PKG_VERSION")),
        "connection: close\r\n".to_string(),
    ] {
        assert!(request.contains(&header), "{header:?} missing in {request}");
    }
}

#[tokio::test]
async fn unexpected_status_is_critical_and_redirects_are_not_followed() {
    let server = serve(response("500 Internal Server Error", "boom"), None).await;
    let mut config = CheckConfig::http("web", server.url("http", "/"));
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        "HTTP 500 Internal Server Error (expected 200-399)"
    );
    config.expect_status = Some(StatusRanges::parse("500,503").expect("ranges"));
    assert_eq!(run(&config).await.result.status, CheckStatus::Ok);

    let moved = b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n".to_vec();
    let server = serve(moved, None).await;
    let mut config = CheckConfig::http("web", server.url("http", "/old"));
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
    assert!(
        r.output.starts_with("HTTP 301 Moved Permanently in"),
        "{}",
        r.output
    );
    assert_eq!(server.requests().len(), 1);
    config.expect_status = Some(StatusRanges::parse("200").expect("ranges"));
    let r = run(&config).await.result;
    assert_eq!(
        (r.status, r.output.as_str()),
        (
            CheckStatus::Critical,
            "HTTP 301 Moved Permanently (expected 200)"
        )
    );
}

#[tokio::test]
async fn body_contains_reads_at_most_one_mib() {
    let server = serve(response("200 OK", "<html>status: all good</html>"), None).await;
    let mut config = CheckConfig::http("web", server.url("http", "/"));
    config.body_contains = Some("all good".into());
    assert_eq!(run(&config).await.result.status, CheckStatus::Ok);
    config.body_contains = Some("database down".into());
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        "HTTP 200 OK, but the body does not contain \"database down\""
    );

    // The needle sits after the first MiB of a 3 MiB body: not seen, and not waited for.
    let body = format!(
        "{}needle{}",
        "x".repeat(BODY_LIMIT + 10),
        "y".repeat(2 * BODY_LIMIT)
    );
    let server = serve(response("200 OK", &body), None).await;
    let mut config = CheckConfig::http("big", server.url("http", "/"));
    config.body_contains = Some("needle".into());
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        "HTTP 200 OK, but the body does not contain \"needle\" in its first 1 MiB"
    );
}

#[tokio::test]
async fn refused_and_silent_servers_are_critical() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let config = CheckConfig::http("down", format!("http://{closed}/"));
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        format!("GET http://{closed}/: connect {closed}: connection refused")
    );

    // Accepts, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _holder = AbortOnDrop(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    }));
    let mut config = CheckConfig::http("hang", format!("http://{addr}/"));
    config.timeout = Duration::from_millis(500);
    let start = Instant::now();
    let r = run(&config).await.result;
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        format!("GET http://{addr}/: timed out after 500ms")
    );
}

#[tokio::test]
async fn https_with_ca_file_reports_certificate_days() {
    let pki = pki(5);
    let server = serve(response("200 OK", "ok"), Some(acceptor(&pki))).await;
    let mut config = CheckConfig::http("tls", server.url("https", "/"));
    config.ca_file = Some(pki.ca.clone());
    let out = run(&config).await;
    let r = &out.result;
    // 5 days left is under the default cert_warning_days (14), above cert_critical_days (3).
    assert_eq!(r.status, CheckStatus::Warning, "{}", r.output);
    assert!(r.output.starts_with("HTTP 200 OK in "), "{}", r.output);
    assert!(
        r.output.contains("; certificate expires in 5.0 days ("),
        "{}",
        r.output
    );
    assert!(r.output.ends_with(", under 14"), "{}", r.output);
    assert_eq!(out.metrics.len(), 1);
    let m = &out.metrics[0];
    assert_eq!(m.name, CERT_DAYS_METRIC);
    assert_eq!(m.labels.get("check").map(String::as_str), Some("http:tls"));
    assert!((4.9..=5.0).contains(&m.value), "{}", m.value);

    config.cert_critical_days = Some(6);
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Critical, "{}", r.output);
    assert!(r.output.ends_with(", under 6"), "{}", r.output);

    config.cert_critical_days = Some(1);
    config.cert_warning_days = Some(2);
    assert_eq!(run(&config).await.result.status, CheckStatus::Ok);
}

#[tokio::test]
async fn https_untrusted_certificate_is_critical_unless_verification_is_off() {
    let pki = pki(5);
    let server = serve(response("200 OK", "ok"), Some(acceptor(&pki))).await;
    let mut config = CheckConfig::http("tls", server.url("https", "/"));
    let out = run(&config).await;
    assert_eq!(out.result.status, CheckStatus::Critical);
    assert_eq!(
        out.result.output,
        format!(
            "GET https://{}/: TLS handshake with {}: certificate is not trusted (unknown issuer; add its CA with ca_file)",
            server.addr, server.addr
        )
    );
    assert!(out.metrics.is_empty());

    config.tls_verify = Some(false);
    let out = run(&config).await;
    assert_eq!(
        out.result.status,
        CheckStatus::Warning,
        "{}",
        out.result.output
    );
    assert_eq!(
        out.metrics.len(),
        1,
        "expiry is reported without verification too"
    );
}

#[tokio::test]
async fn unreadable_ca_file_is_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = CheckConfig::http("tls", "https://127.0.0.1:1/");
    config.ca_file = Some(dir.path().join("missing.pem"));
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Unknown);
    assert_eq!(
        r.output,
        format!(
            "GET https://127.0.0.1:1/: ca_file {}: no such file or directory",
            dir.path().join("missing.pem").display()
        )
    );
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    config.ca_file = Some(not_pem);
    let r = run(&config).await.result;
    assert_eq!(r.status, CheckStatus::Unknown);
    assert!(
        r.output.ends_with("no PEM certificate in it"),
        "{}",
        r.output
    );
}

#[test]
fn expired_certificate_is_critical() {
    let config = CheckConfig::http("tls", "https://127.0.0.1/");
    let now = 1_800_000_000;
    let fetched = Fetched {
        status: 200,
        body: None,
        body_truncated: false,
        cert_not_after: Some(Ok(now - 2 * 86_400)),
    };
    let out = evaluate(
        "http:tls".into(),
        &config,
        &fetched,
        Duration::from_millis(3),
        now,
    );
    assert_eq!(out.result.status, CheckStatus::Critical);
    assert!(
        out.result
            .output
            .ends_with("certificate expired 2.0 days ago (2027-01-13), under 3"),
        "{}",
        out.result.output
    );
    assert_eq!(out.metrics[0].value, -2.0);

    // A failing status stays critical; the certificate part is still told.
    let fetched = Fetched {
        status: 503,
        cert_not_after: Some(Ok(now + 100 * 86_400)),
        ..fetched
    };
    let out = evaluate(
        "http:tls".into(),
        &config,
        &fetched,
        Duration::from_millis(3),
        now,
    );
    assert_eq!(out.result.status, CheckStatus::Critical);
    assert_eq!(
        out.result.output,
        "HTTP 503 Service Unavailable (expected 200-399); certificate expires in 100.0 days (2027-04-25)"
    );
}

#[test]
fn status_ranges() {
    let r = StatusRanges::parse("200-299, 304").expect("ok");
    assert!(r.contains(200) && r.contains(299) && r.contains(304));
    assert!(!r.contains(300) && !r.contains(500));
    assert_eq!(r.to_string(), "200-299,304");
    assert_eq!(StatusRanges::parse(&r.to_string()), Ok(r));
    for bad in ["", "99", "1000", "2xx", "300-200", "200-", "-200"] {
        assert!(StatusRanges::parse(bad).is_err(), "{bad}");
    }
}
