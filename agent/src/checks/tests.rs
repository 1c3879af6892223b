//! Tests of running checks: concurrency and bounds of [`run_all`], and the [`Scheduler`].

use std::collections::HashMap;
use std::sync::Mutex;
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

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
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
    let (results, metrics) = run_all(&checks).await;
    let took = start.elapsed();

    assert!(metrics.is_empty());
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
    assert_eq!(run_all(&[]).await, (Vec::new(), Vec::new()));
    let (results, metrics) = run_all(&[]).await;
    assert!(results.is_empty() && metrics.is_empty());
}

/// Runs per check name, shared with the test.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

fn runs(counts: &Counts, name: &str) -> usize {
    counts.lock().expect("lock").get(name).copied().unwrap_or(0)
}

/// Counts each run; a check named `hang` never finishes, one named `panic` panics.
fn counting_runner(counts: Counts) -> Runner {
    Arc::new(move |check: CheckConfig| {
        let counts = counts.clone();
        Box::pin(async move {
            let n = {
                let mut counts = counts.lock().expect("lock");
                let n = counts.entry(check.name.clone()).or_default();
                *n += 1;
                *n
            };
            match check.name.as_str() {
                "hang" => std::future::pending::<()>().await,
                "panic" => panic!("check {} exploded", check.name),
                _ => {}
            }
            CheckOutcome {
                result: CheckResult {
                    name: check.report_name(),
                    status: CheckStatus::Ok,
                    output: format!("run {n}"),
                    latency_ms: Some(0.1),
                },
                metrics: vec![
                    Metric::new("test.runs_count", n as f64)
                        .with_label("check", check.report_name()),
                ],
            }
        })
    })
}

fn every(name: &str, interval: Duration, timeout: Duration) -> CheckConfig {
    let mut check = CheckConfig::tcp(name, "127.0.0.1:1");
    check.interval = Some(interval);
    check.timeout = timeout;
    check
}

const AGENT_INTERVAL: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn each_check_runs_on_its_own_interval() {
    let counts = Counts::default();
    let ms = Duration::from_millis;
    let scheduler = Scheduler::start_with(
        vec![
            every("fast", ms(100), ms(50)),
            every("slow", ms(300), ms(50)),
        ],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    tokio::time::sleep(ms(1050)).await;
    let (fast, slow) = (runs(&counts, "fast"), runs(&counts, "slow"));
    // Simulated time: exactly 0, 100, ..., 1000 ms and 0, 300, 600, 900 ms.
    assert_eq!((fast, slow), (11, 4));
    let (results, metrics) = scheduler.latest();
    assert_eq!(
        results.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["tcp:fast", "tcp:slow"]
    );
    assert_eq!(metrics.len(), 2);
    assert_eq!(
        metrics[1].labels.get("check").map(String::as_str),
        Some("tcp:slow")
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_never_delays_the_others() {
    let counts = Counts::default();
    let ms = Duration::from_millis;
    let scheduler = Scheduler::start_with(
        vec![
            every("hang", Duration::from_secs(5), ms(300)),
            every("quick", Duration::from_secs(5), ms(300)),
        ],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    tokio::time::sleep(ms(100)).await;
    let asked = tokio::time::Instant::now();
    let (results, _) = scheduler.latest();
    assert!(asked.elapsed() < ms(20));
    // The hanging check has no result yet: left out, the quick one is there.
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].name, "tcp:quick");

    // Past its timeout + grace the hanging run is given up as critical.
    tokio::time::sleep(ms(600)).await;
    let (results, _) = scheduler.latest();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].name, "tcp:hang");
    assert_eq!(results[0].status, CheckStatus::Critical);
    assert_eq!(results[0].output, "timed out after 300ms");
    assert_eq!(results[1].status, CheckStatus::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_is_unknown_and_keeps_being_scheduled() {
    let counts = Counts::default();
    let ms = Duration::from_millis;
    let scheduler = Scheduler::start_with(
        vec![every("panic", ms(100), ms(50))],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    // Simulated time: wait for the runs, not for a fixed time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runs(&counts, "panic") < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(ms(50)).await;
    }
    let (results, _) = scheduler.latest();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].status, CheckStatus::Unknown);
    assert_eq!(results[0].output, "check task failed");
    assert!(
        runs(&counts, "panic") >= 3,
        "ran {}",
        runs(&counts, "panic")
    );
}

#[tokio::test(start_paused = true)]
async fn ready_waits_for_first_results_but_not_past_its_limit() {
    let counts = Counts::default();
    let ms = Duration::from_millis;
    let scheduler = Scheduler::start_with(
        vec![every("a", Duration::from_secs(5), ms(100))],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    scheduler.ready(Duration::from_secs(5)).await;
    assert_eq!(scheduler.latest().0.len(), 1);

    let scheduler = Scheduler::start_with(
        vec![every(
            "hang",
            Duration::from_secs(5),
            Duration::from_secs(5),
        )],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    let start = tokio::time::Instant::now();
    scheduler.ready(ms(200)).await;
    let took = start.elapsed();
    assert!(took >= ms(190) && took < ms(600), "took {took:?}");
    assert!(scheduler.latest().0.is_empty());
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_checks_stops_removed_and_starts_new() {
    let counts = Counts::default();
    let ms = Duration::from_millis;
    let long = Duration::from_secs(60);
    let a = every("a", long, ms(100));
    let b = every("b", ms(100), ms(50));
    let mut inherits = CheckConfig::tcp("d", "127.0.0.1:1");
    inherits.timeout = ms(100);
    let mut scheduler = Scheduler::start_with(
        vec![a.clone(), b.clone(), inherits.clone()],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    scheduler.ready(Duration::from_secs(2)).await;
    assert_eq!(runs(&counts, "a"), 1);

    let c = every("c", long, ms(100));
    scheduler.reload(vec![c.clone(), a.clone(), inherits.clone()], AGENT_INTERVAL);
    scheduler.ready(Duration::from_secs(2)).await;
    let (results, _) = scheduler.latest();
    assert_eq!(
        results.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["tcp:c", "tcp:a", "tcp:d"],
        "new order, b gone"
    );
    // `a` kept its task and result: not run again.
    assert_eq!(runs(&counts, "a"), 1);
    assert_eq!(results[1].output, "run 1");
    assert_eq!(runs(&counts, "c"), 1);
    // `b` is stopped.
    let b_runs = runs(&counts, "b");
    tokio::time::sleep(ms(350)).await;
    assert_eq!(runs(&counts, "b"), b_runs);

    // A changed check restarts; so does one whose inherited interval changed.
    let mut a2 = a.clone();
    a2.timeout = ms(200);
    scheduler.reload(
        vec![c.clone(), a2, inherits.clone()],
        Duration::from_secs(20),
    );
    scheduler.ready(Duration::from_secs(2)).await;
    assert_eq!(runs(&counts, "a"), 2);
    assert_eq!(runs(&counts, "d"), 2);
    assert_eq!(runs(&counts, "c"), 1);

    scheduler.reload(Vec::new(), AGENT_INTERVAL);
    assert_eq!(scheduler.latest(), (Vec::new(), Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_scheduler_stops_its_checks() {
    let counts = Counts::default();
    let ms = Duration::from_millis;
    let scheduler = Scheduler::start_with(
        vec![every("fast", ms(100), ms(50))],
        AGENT_INTERVAL,
        counting_runner(counts.clone()),
    );
    tokio::time::sleep(ms(250)).await;
    drop(scheduler);
    tokio::time::sleep(ms(50)).await;
    let n = runs(&counts, "fast");
    tokio::time::sleep(ms(350)).await;
    assert_eq!(runs(&counts, "fast"), n);
}

#[tokio::test]
async fn real_checks_through_the_scheduler() {
    let closed = closed_port();
    let scheduler = Scheduler::start(
        vec![
            CheckConfig::tcp("closed", closed.clone()),
            CheckConfig::process("missing", "no-such-proc-xyz"),
        ],
        AGENT_INTERVAL,
    );
    scheduler.ready(Duration::from_secs(6)).await;
    let (results, metrics) = scheduler.latest();
    assert!(metrics.is_empty());
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].status, CheckStatus::Critical);
    assert_eq!(
        results[0].output,
        format!("connect {closed}: connection refused")
    );
    assert_eq!(results[1].status, CheckStatus::Critical);
}
