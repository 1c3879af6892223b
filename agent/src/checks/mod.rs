//! Active checks (one module per kind), run concurrently once per cycle, each bounded by its timeout.

pub mod tcp;

use std::time::Duration;

use tocsin_protocol::{CheckResult, CheckStatus};

use crate::config::{CheckConfig, CheckKind, format_duration};

/// Extra time granted past a check's own timeout before the runner gives up on it.
const GRACE: Duration = Duration::from_millis(250);

/// Run one check. Each kind enforces its own timeout; this is the dispatch point new kinds join.
pub async fn run_check(check: &CheckConfig) -> CheckResult {
    let name = check.report_name();
    match check.kind {
        CheckKind::Tcp => tcp::check(name, &check.target, check.timeout).await,
    }
}

/// Run all checks concurrently; results come back in config order. No check holds the
/// result longer than its timeout (plus a short grace): a check that overruns is `critical`.
pub async fn run_checks(checks: &[CheckConfig]) -> Vec<CheckResult> {
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in checks.iter().enumerate() {
        let check = check.clone();
        set.spawn(async move {
            let limit = check.timeout + GRACE;
            let result = match tokio::time::timeout(limit, run_check(&check)).await {
                Ok(result) => result,
                Err(_) => CheckResult {
                    name: check.report_name(),
                    status: CheckStatus::Critical,
                    output: format!("timed out after {}", format_duration(check.timeout)),
                    latency_ms: None,
                },
            };
            (i, result)
        });
    }
    let mut results: Vec<Option<CheckResult>> = vec![None; checks.len()];
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, result)) => results[i] = Some(result),
            Err(e) => tracing::error!(error = %e, "check task failed"),
        }
    }
    results
        .into_iter()
        .zip(checks)
        .map(|(r, c)| {
            r.unwrap_or_else(|| CheckResult {
                name: c.report_name(),
                status: CheckStatus::Unknown,
                output: "check task failed".to_string(),
                latency_ms: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A loopback listener whose accept queue is full, so further connects hang.
    async fn black_hole() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut held = Vec::new();
        // Fill the accept queue; each connect either completes or stalls (then the queue is full).
        for _ in 0..4 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                held.push(s);
            }
        }
        (listener, held, addr.to_string())
    }

    #[tokio::test]
    async fn checks_run_concurrently_and_respect_their_timeouts() {
        let (_listener, _held, hole) = black_hole().await;
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open_addr = open.local_addr().expect("addr").to_string();
        let mut slow1 = CheckConfig::tcp("slow1", hole.clone());
        slow1.timeout = Duration::from_millis(600);
        let mut slow2 = CheckConfig::tcp("slow2", hole);
        slow2.timeout = Duration::from_millis(600);
        let checks = vec![slow1, CheckConfig::tcp("open", open_addr), slow2];

        let start = Instant::now();
        let results = run_checks(&checks).await;
        let took = start.elapsed();

        assert_eq!(results.len(), 3);
        assert_eq!(results[0].name, "tcp:slow1");
        assert_eq!(results[1].name, "tcp:open");
        assert_eq!(results[1].status, CheckStatus::Ok);
        assert_eq!(results[2].name, "tcp:slow2");
        for slow in [&results[0], &results[2]] {
            assert_eq!(slow.status, CheckStatus::Critical, "{}", slow.output);
            assert!(
                slow.output.contains("timed out after 600ms"),
                "{}",
                slow.output
            );
        }
        // Concurrent: both slow checks together take about one timeout, not two.
        assert!(took < Duration::from_millis(1100), "took {took:?}");
    }

    #[tokio::test]
    async fn no_checks_no_results() {
        assert!(run_checks(&[]).await.is_empty());
    }
}
