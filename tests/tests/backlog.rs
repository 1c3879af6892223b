//! A backlog far larger than every queue inside the collector, sent all at once by a broker
//! with no in-flight limit, drains without a stall or a reconnect, and every message is
//! acknowledged once stored, the last ones by a clean stop (nothing comes back after a
//! restart).
//!
//! The collector used to stop polling its MQTT connection while its pipeline queue was full.
//! Acks travel on that connection, so with more unacknowledged messages than its queues held
//! the writer, the pipeline and the intake waited on each other for ever (the 50,000-node
//! stall in BENCHMARKS.md); with a bounded in-flight window it missed its keep-alive answer
//! instead, reconnected, and got the window redelivered.

use std::process::Command;
use std::time::Duration;

use tocsin_tests::{
    Broker, CHECK_CRITICAL_RULE, CollectorOptions, Mosquitto, bin, start_collector, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);
/// Far more than the old intake, pipeline, write and ack queues held together (about 7,000).
const BACKLOG: u64 = 25_000;

fn handled(api: &tocsin_tests::Api) -> f64 {
    api.metric("tocsin_reports_total") + api.metric("tocsin_reports_duplicate_total")
}

/// A broker that queues without limit for the collector's session, with `inflight` as its
/// `max_inflight_messages` (0: no limit, it sends a resumed session's whole backlog at
/// once). `None` where Mosquitto is missing (the test skips).
fn backlog_broker(dir: &std::path::Path, inflight: u32) -> Option<Mosquitto> {
    Mosquitto::start_with(
        dir,
        &format!("persistence false\nmax_inflight_messages {inflight}\nmax_queued_bytes 0\n"),
    )
}

/// Queue `messages` reports of 2,000 nodes at the broker.
fn flood(port: u16, messages: u64) {
    let out = Command::new(bin("tocsin-sim"))
        .args([
            "flood",
            "--messages",
            &messages.to_string(),
            "--nodes",
            "2000",
        ])
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .output()
        .expect("tocsin-sim flood runs");
    assert!(
        out.status.success(),
        "flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_backlog_beyond_every_queue_drains_and_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mosquitto) = backlog_broker(dir.path(), 0) else {
        return;
    };
    let broker = Broker::Mosquitto(mosquitto.port);
    let options = CollectorOptions {
        broker_extra: "keep_alive = \"5s\"",
        ..CollectorOptions::new("collector-backlog", CHECK_CRITICAL_RULE)
    };
    let start = || {
        let c = start_collector(dir.path(), broker, &options, WAIT);
        c.api.wait_ready(WAIT);
        c
    };

    let flood = || flood(mosquitto.port, BACKLOG);

    // Register the persistent session, then queue the backlog while the collector is away.
    let mut collector = start();
    assert_eq!(collector.proc.terminate(), Some(0), "a clean stop");
    flood();

    let collector = start();
    let api = &collector.api;
    wait_for(
        "the collector to drain the backlog",
        Duration::from_secs(300),
        || (handled(api) >= BACKLOG as f64).then_some(()),
    );
    assert_eq!(api.metric("tocsin_reports_total"), BACKLOG as f64);
    // One connection throughout: no missed keep-alive, no redelivery.
    assert_eq!(api.metric("tocsin_mqtt_connects_total"), 1.0);
    assert_eq!(api.metric("tocsin_mqtt_connection_errors_total"), 0.0);
    assert_eq!(api.metric("tocsin_ingest_acks_stale_total"), 0.0);
    assert_eq!(api.metric("tocsin_ingest_queue_full_waits_total"), 0.0);
    assert_eq!(api.metric("tocsin_ingest_messages_total"), BACKLOG as f64);

    // Every message was acknowledged, the last ones by the clean stop itself: a restarted
    // collector gets nothing redelivered.
    let mut collector = collector;
    assert_eq!(collector.proc.terminate(), Some(0), "a clean stop");
    let mut collector = start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(collector.api.metric("tocsin_ingest_messages_total"), 0.0);

    // A clean stop in the middle of a backlog: what was stored is acknowledged, what was
    // still queued is not, so the next run gets the rest and no duplicates.
    assert_eq!(collector.proc.terminate(), Some(0), "a clean stop");
    flood();
    let mut collector = start();
    wait_for("the collector to be draining", WAIT, || {
        (handled(&collector.api) >= 3_000.0).then_some(())
    });
    assert_eq!(
        collector.proc.terminate(),
        Some(0),
        "a clean stop mid-backlog"
    );
    let collector = start();
    let api = &collector.api;
    let mut last = -1.0;
    wait_for("the rest of the backlog", Duration::from_secs(300), || {
        let now = handled(api);
        let quiet = now > 0.0 && now == last;
        last = now;
        std::thread::sleep(Duration::from_secs(2));
        quiet.then_some(())
    });
    assert!(api.metric("tocsin_reports_total") > 0.0);
    assert!(api.metric("tocsin_reports_total") < BACKLOG as f64);
    assert_eq!(api.metric("tocsin_reports_duplicate_total"), 0.0);
    assert_eq!(api.metric("tocsin_ingest_acks_stale_total"), 0.0);
}

/// A broker that sends more than the pipeline's queue holds (Mosquitto sent a resumed
/// session's backlog of 300,000 beyond `max_inflight_messages` in `bench/e2e ceiling`;
/// here the queue is made small and the broker unlimited, so it happens every time).
/// Intake then waits for room, and that wait must not stall: when the writer handed its
/// acks to the client's bounded channel, which only intake's polling drains, the writer
/// waited on intake, the pipeline on the writer and intake on the pipeline.
#[test]
fn a_backlog_beyond_the_pipeline_queue_drains_without_a_stall() {
    const MORE: u64 = 25_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mosquitto) = backlog_broker(dir.path(), 0) else {
        return;
    };
    let broker = Broker::Mosquitto(mosquitto.port);
    let options = CollectorOptions {
        broker_extra: "intake_queue = 500",
        ..CollectorOptions::new("collector-backlog-big", CHECK_CRITICAL_RULE)
    };
    let start = || {
        let c = start_collector(dir.path(), broker, &options, WAIT);
        c.api.wait_ready(WAIT);
        c
    };
    let mut collector = start();
    assert_eq!(collector.proc.terminate(), Some(0), "a clean stop");
    flood(mosquitto.port, MORE);
    let collector = start();
    let api = &collector.api;
    wait_for(
        "the collector to drain the backlog",
        Duration::from_secs(600),
        || (handled(api) >= MORE as f64).then_some(()),
    );
    assert_eq!(api.metric("tocsin_reports_total"), MORE as f64);
    assert!(
        api.metric("tocsin_ingest_queue_full_waits_total") > 0.0,
        "the broker sent more than the queue holds (else this test shows nothing)"
    );
    assert_eq!(api.metric("tocsin_mqtt_connects_total"), 1.0);
    assert_eq!(api.metric("tocsin_ingest_acks_stale_total"), 0.0);
}
