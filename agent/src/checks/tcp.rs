//! TCP connect check: `ok` with the connect latency, `critical` with the reason otherwise.

use std::time::{Duration, Instant};

use tocsin_protocol::{CheckResult, CheckStatus};

use crate::config::format_duration;

/// Split `host:port` (IPv6 as `[::1]:22`) into host and port; `None` if it is not that shape.
pub fn split_target(target: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(v6) = target.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        (host, rest.strip_prefix(':')?)
    } else {
        let (host, port) = target.rsplit_once(':')?;
        if host.contains(':') {
            // A bare IPv6 address: the port is ambiguous.
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port))
}

/// Connect to `target` within `timeout` and close again.
pub async fn check(name: String, target: &str, timeout: Duration) -> CheckResult {
    let Some((host, port)) = split_target(target) else {
        return CheckResult {
            name,
            status: CheckStatus::Unknown,
            output: format!("target {target:?} is not host:port"),
            latency_ms: None,
        };
    };
    let start = Instant::now();
    // Name resolution counts against the timeout too.
    let outcome = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await;
    let elapsed_ms = (start.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    match outcome {
        Ok(Ok(stream)) => {
            drop(stream);
            CheckResult {
                name,
                status: CheckStatus::Ok,
                output: format!("connected to {target} in {elapsed_ms:.1} ms"),
                latency_ms: Some(elapsed_ms),
            }
        }
        Ok(Err(e)) => CheckResult {
            name,
            status: CheckStatus::Critical,
            output: format!("connect {target}: {}", describe(&e)),
            latency_ms: Some(elapsed_ms),
        },
        Err(_) => CheckResult {
            name,
            status: CheckStatus::Critical,
            output: format!(
                "connect {target}: timed out after {}",
                format_duration(timeout)
            ),
            latency_ms: None,
        },
    }
}

/// A short lower-case reason, without the `(os error N)` tail.
pub(crate) fn describe(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::TimedOut => "timed out".to_string(),
        ErrorKind::HostUnreachable => "host unreachable".to_string(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        ErrorKind::AddrNotAvailable => "address not available".to_string(),
        _ => {
            let text = e.to_string();
            let text = match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => "connect failed".to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("127.0.0.1:5432"), Some(("127.0.0.1", 5432)));
        assert_eq!(split_target("db.example:5432"), Some(("db.example", 5432)));
        assert_eq!(split_target("[::1]:22"), Some(("::1", 22)));
        for bad in [
            "nocolon",
            ":80",
            "host:",
            "host:0",
            "host:70000",
            "::1:22",
            "[::1]22",
            "[::1",
        ] {
            assert_eq!(split_target(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn open_port_is_ok_with_latency() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = listener.local_addr().expect("addr").to_string();
        let r = check("tcp:open".into(), &target, Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
        assert!(r.latency_ms.is_some_and(|l| l >= 0.0));
        assert_eq!(r.name, "tcp:open");
    }

    #[tokio::test]
    async fn closed_port_is_critical() {
        let target = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        };
        let r = check("tcp:closed".into(), &target, Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert_eq!(r.output, format!("connect {target}: connection refused"));
    }

    #[tokio::test]
    async fn bad_target_is_unknown() {
        let r = check("tcp:x".into(), "nocolon", Duration::from_secs(1)).await;
        assert_eq!(r.status, CheckStatus::Unknown);
    }
}
