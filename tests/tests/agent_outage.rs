//! Store-and-forward across a broker outage: every report the agent made reaches the collector exactly once.

use std::process::Command;
use std::time::{Duration, Instant};

use tocsin_tests::write_file as write;
use tocsin_tests::{Api, Mosquitto, Proc, bin, free_port, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// The agent's last used `seq`, from its state file.
fn last_seq(spool: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(spool.join("state.json")).expect("state.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("state.json is JSON");
    v["seq"].as_u64().expect("seq")
}

fn queued_files(spool: &std::path::Path) -> usize {
    std::fs::read_dir(spool.join("queue"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn reports_survive_a_broker_outage_and_arrive_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut broker) = Mosquitto::start_persistent(dir.path()) else {
        return;
    };
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    write(&rules.join("policy.toml"), "");
    let http = free_port();
    let collector_toml = dir.path().join("collector.toml");
    write(
        &collector_toml,
        &format!(
            "[broker]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"collector-outage\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [store]\npath = \"{}\"\n[rules]\ndir = \"{}\"\n",
            broker.port,
            dir.path().join("data/tocsin.duckdb").display(),
            rules.display()
        ),
    );
    let mut cmd = Command::new(bin("tocsin-collector"));
    cmd.arg("run").arg("--config").arg(&collector_toml);
    let _collector = Proc::spawn("collector", cmd, dir.path());
    let api = Api::new(http);
    api.wait_healthy(WAIT);
    wait_for("the collector to connect", WAIT, || {
        api.get_raw("/readyz")
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });

    let spool = dir.path().join("agent-spool");
    let agent_toml = dir.path().join("agent.toml");
    write(
        &agent_toml,
        &format!(
            "site = \"outage\"\nnode = \"spooler\"\ninterval = \"1s\"\n[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = \"{}\"\n",
            broker.port,
            spool.display()
        ),
    );
    let mut cmd = Command::new(bin("tocsin-agent"));
    cmd.arg("run")
        .arg("--config")
        .arg(&agent_toml)
        .env("RUST_LOG", "info");
    let mut agent = Proc::spawn("agent", cmd, dir.path());

    wait_for("the first reports at the collector", WAIT, || {
        (api.metric("tocsin_reports_total") >= 3.0).then_some(())
    });

    // The broker goes away for several intervals; the agent keeps collecting into its spool.
    broker.stop();
    let down_since = Instant::now();
    wait_for("reports to pile up in the spool", WAIT, || {
        (queued_files(&spool) >= 5).then_some(())
    });
    let spooled = queued_files(&spool);
    assert!(down_since.elapsed() >= Duration::from_secs(4));
    broker.restart();

    // Back: the backlog drains, oldest first, and new reports follow.
    wait_for("the spool to drain", WAIT, || {
        (queued_files(&spool) == 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        agent.terminate(),
        Some(0),
        "agent log:\n{}",
        agent.log_text()
    );
    let last = last_seq(&spool);
    assert!(last >= 8, "the agent made {last} reports");
    assert_eq!(
        queued_files(&spool),
        0,
        "a clean stop leaves nothing behind"
    );

    // Exactly once: the collector accepted one report per seq, 1..=last, no more, no less
    // (redeliveries, if any, are counted as duplicates and dropped).
    wait_for(
        &format!("the collector to accept all {last} reports"),
        WAIT,
        || (api.metric("tocsin_reports_total") >= last as f64).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        api.metric("tocsin_reports_total"),
        last as f64,
        "every report arrives once (spooled during the outage: {spooled})"
    );
    let rejected = api.list("/api/v1/rejected");
    assert!(rejected.is_empty(), "nothing refused: {rejected:?}");
}
