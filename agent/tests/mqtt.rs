//! End-to-end test of the agent library against a real mosquitto broker on 127.0.0.1.
//!
//! Skipped (with a message) when /usr/sbin/mosquitto is missing, unless
//! TOCSIN_REQUIRE_MOSQUITTO=1, in which case a missing broker fails the test.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Broker, MOSQUITTO, WAIT, free_port, start_agent, subscribe};
use tocsin_agent::{AgentConfig, CheckConfig};
use tocsin_protocol::{CheckStatus, NodeState, decode_report, decode_status};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_publishes_birth_reports_and_clean_stop() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool dir");
    let node = format!("itest-{}", std::process::id());
    let closed_port = free_port();
    let mut config = AgentConfig::new("itest", node.clone());
    config.interval = Duration::from_secs(1);
    config.broker.url.host = "127.0.0.1".into();
    config.broker.url.port = broker.port;
    config.spool.dir = spool.path().to_path_buf();
    config.parents = vec!["core-sw-1".into()];
    config.labels.insert("service".into(), "itest".into());
    let mut check = CheckConfig::tcp("closed", format!("127.0.0.1:{closed_port}"));
    check.timeout = Duration::from_millis(500);
    config.checks.push(check);
    config.validate().expect("valid config");

    let status_topic = config.status_topic();
    let report_topic = config.report_topic();
    let mut live = subscribe(
        broker.port,
        "itest-live",
        &format!("tocsin/v1/itest/{node}/#"),
    )
    .await;

    // First run.
    let agent = start_agent(config.clone());
    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);

    let mut last_seq = None;
    for _ in 0..3 {
        let report = live.next_report(&report_topic).await;
        assert_eq!(report.node, node);
        assert_eq!(report.site, "itest");
        assert_eq!(report.interval_s, 1);
        if let Some(prev) = last_seq {
            assert_eq!(report.seq, prev + 1, "seq grows by one per report");
        }
        last_seq = Some(report.seq);
        let check = report
            .checks
            .iter()
            .find(|c| c.name == "tcp:closed")
            .expect("tcp:closed check in the report");
        assert_eq!(check.status, CheckStatus::Critical, "{}", check.output);
        assert!(
            check.output.contains("connection refused"),
            "{}",
            check.output
        );
        assert!(report.metrics.iter().any(|m| m.name == "cpu.usage_pct"));
    }
    let seq_after_three = last_seq.expect("saw reports");
    assert_eq!(seq_after_three, 3, "a fresh spool starts at seq 1");

    // A late subscriber gets the retained birth with inventory, parents and labels.
    {
        let mut late = subscribe(broker.port, "itest-late", &status_topic).await;
        let (retain, status) = late.next_status(&status_topic).await;
        assert!(retain, "birth status is retained");
        assert_eq!(status.state, NodeState::Online);
        assert!(status.ts.is_some_and(|ts| ts > 0));
        assert_eq!(
            status.agent.as_ref().map(|a| a.version.as_str()),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let inventory = status.inventory.expect("inventory in the birth status");
        assert!(inventory.hostname.is_some());
        assert!(inventory.cpu_cores.is_some_and(|c| c > 0));
        assert!(inventory.memory_bytes.is_some_and(|m| m > 0));
        assert!(!inventory.ip_addresses.is_empty());
        assert_eq!(status.parents, vec!["core-sw-1".to_string()]);
        assert_eq!(
            status.labels.get("service").map(String::as_str),
            Some("itest")
        );
    }

    // Clean stop: retained `stopped`, and no last will afterwards.
    agent.shutdown().await;
    let mut seen_last = seq_after_three;
    let stopped = loop {
        let (t, _, payload) = timeout(WAIT, live.rx.recv())
            .await
            .expect("stopped status in time")
            .expect("subscriber alive");
        if t == report_topic {
            seen_last = decode_report(&payload).expect("valid report").seq;
        } else if t == status_topic {
            break decode_status(&payload).expect("valid status");
        }
    };
    assert_eq!(stopped.state, NodeState::Stopped);
    // The broker must not announce the agent offline after a clean stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok((t, _, payload)) = live.rx.try_recv() {
        if t == status_topic {
            let s = decode_status(&payload).expect("valid status");
            panic!("unexpected status after a clean stop: {s:?}");
        }
    }
    {
        let mut late = subscribe(broker.port, "itest-late2", &status_topic).await;
        let (retain, status) = late.next_status(&status_topic).await;
        assert!(retain);
        assert_eq!(
            status.state,
            NodeState::Stopped,
            "retained status after stop"
        );
    }
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(spool.path().join("state.json")).expect("state.json written"),
    )
    .expect("state.json is JSON");
    assert_eq!(
        stored["seq"].as_u64(),
        Some(seen_last),
        "last published seq is stored"
    );

    // Restart with the same spool: seq continues.
    let agent = start_agent(config);
    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);
    let report = live.next_report(&report_topic).await;
    assert_eq!(report.seq, seen_last + 1, "seq survives a restart");
    agent.shutdown().await;
    let (_, status) = live.next_status(&status_topic).await;
    assert_eq!(status.state, NodeState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_announces_offline_when_the_agent_vanishes() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool dir");
    let node = format!("itest-will-{}", std::process::id());
    let mut config = AgentConfig::new("itest", node.clone());
    config.interval = Duration::from_secs(1);
    config.broker.url.port = broker.port;
    config.spool.dir = spool.path().to_path_buf();
    let status_topic = config.status_topic();
    let mut live = subscribe(broker.port, "itest-will", &status_topic).await;

    let agent = start_agent(config);
    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);
    // Kill the agent without a clean stop: its connection just closes.
    agent.handle.abort();
    let _ = agent.handle.await;
    let (_, will) = live.next_status(&status_topic).await;
    assert_eq!(will.state, NodeState::Offline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_reports_while_the_broker_is_down_and_connects_later() {
    if !Path::new(MOSQUITTO).exists() {
        // Broker::start_on prints the skip message (or panics when the broker is required).
        let _ = Broker::start();
        return;
    }
    let port = free_port();
    let spool = tempfile::tempdir().expect("spool dir");
    let node = format!("itest-late-{}", std::process::id());
    let mut config = AgentConfig::new("itest", node.clone());
    config.interval = Duration::from_secs(1);
    config.broker.url.port = port;
    config.spool.dir = spool.path().to_path_buf();
    let status_topic = config.status_topic();
    let report_topic = config.report_topic();

    // Nothing listens yet: the agent collects, queues and retries with backoff.
    let agent = start_agent(config);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let broker = Broker::start_on(port).expect("mosquitto present");
    let mut live = subscribe(
        broker.port,
        "itest-late-live",
        &format!("tocsin/v1/itest/{node}/#"),
    )
    .await;

    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);
    let mut prev: Option<u64> = None;
    loop {
        let report = live.next_report(&report_topic).await;
        if let Some(p) = prev {
            assert_eq!(
                report.seq,
                p + 1,
                "reports queued while the broker was down arrive in order"
            );
        }
        let dropped = report
            .metrics
            .iter()
            .find(|m| m.name == "agent.reports_dropped_count")
            .map(|m| m.value);
        assert_eq!(
            dropped,
            Some(0.0),
            "nothing dropped while the broker was down"
        );
        prev = Some(report.seq);
        if report.seq >= 4 {
            break;
        }
    }
    agent.shutdown().await;
}
