//! Bad input through the real collector: refused, counted, kept with its reason, nothing else disturbed.

use std::process::Command;
use std::time::Duration;

use rumqttc::{Client, MqttOptions, QoS};
use serde_json::{Value, json};
use tocsin_tests::{Api, Mosquitto, Proc, bin, free_port, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn report(node: &str, seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "node": node, "site": "e2e", "kind": "host", "seq": seq, "ts": 1_764_412_345_123u64 + seq,
        "interval_s": 10, "metrics": [{"name": "cpu.usage_pct", "value": 1.5}], "checks": []
    }))
    .expect("json")
}

#[test]
fn bad_payloads_are_refused_counted_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto = Mosquitto::start(dir.path());
    let http = free_port();
    let (broker, mqtt_port) = match &mosquitto {
        Some(m) => (format!("url = \"mqtt://127.0.0.1:{}\"", m.port), m.port),
        None => {
            let p = free_port();
            (format!("embedded = true\nlisten = \"127.0.0.1:{p}\""), p)
        }
    };
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules");
    std::fs::write(
        rules.join("r.toml"),
        "[[rule]]\nname = \"cpu\"\nexpr = \"cpu.usage_pct > 99\"\nseverity = \"warning\"\ncategory = \"hardware\"\nsummary = \"hot\"\n",
    )
    .expect("rules");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\n{broker}\n[http]\nlisten = \"127.0.0.1:{http}\"\n[store]\npath = \"{}\"\n[rules]\ndir = \"{}\"\n",
            dir.path().join("t.duckdb").display(),
            rules.display()
        ),
    )
    .expect("config");
    let mut cmd = Command::new(bin("tocsin-collector"));
    cmd.arg("run").arg("--config").arg(&config);
    let mut collector = Proc::spawn("collector", cmd, dir.path());
    let api = Api::new(http);
    api.wait_healthy(WAIT);
    wait_for("collector connected", WAIT, || {
        api.get_raw("/readyz").filter(|(s, _)| *s == 200)
    });

    let mut opts = MqttOptions::new("e2e-bad-publisher", "127.0.0.1", mqtt_port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(opts, 100);
    std::thread::spawn(move || {
        for ev in connection.iter() {
            if ev.is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let publish = |topic: &str, payload: Vec<u8>| {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .expect("publish");
    };
    publish("tocsin/v1/e2e/bad-01/report", b"{not json".to_vec());
    publish("tocsin/v1/e2e/bad-01/report", vec![b' '; 300 * 1024]);
    publish(
        "tocsin/v1/e2e/bad-01/report",
        br#"{"v":7,"node":"bad-01","site":"e2e","seq":1,"ts":1}"#.to_vec(),
    );
    publish("tocsin/v1/e2e/bad-01/report", report("someone-else", 1));
    publish("tocsin/v1/e2e/bad-01/report", br#"{"v":1,"node":"bad-01","site":"e2e","seq":1,"ts":1,"metrics":[{"name":"Bad Name","value":1}]}"#.to_vec());
    publish(
        "tocsin/v1/e2e/bad-01/status",
        br#"{"v":1,"state":"dancing"}"#.to_vec(),
    );
    // A good node keeps being heard, and its redelivered report changes nothing.
    publish("tocsin/v1/e2e/good-01/report", report("good-01", 5));
    publish("tocsin/v1/e2e/good-01/report", report("good-01", 5));
    publish("tocsin/v1/e2e/good-01/report", report("good-01", 6));

    let rejected = wait_for("six refusals stored", WAIT, || {
        let r = api.list("/api/v1/rejected");
        (r.len() >= 6).then_some(r)
    });
    let mut reasons: Vec<&str> = rejected
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "invalid",
            "invalid",
            "malformed",
            "malformed",
            "too_large",
            "unknown_version"
        ]
    );
    let big = rejected
        .iter()
        .find(|r| r["reason"] == "too_large")
        .expect("too_large row");
    assert_eq!(big["payload_size"], 300 * 1024);
    assert!(
        big["payload"].as_str().is_some_and(|p| p.len() <= 4096),
        "only a bounded excerpt is kept"
    );
    assert_eq!(big["node"], "bad-01");

    wait_for("good node's reports counted", WAIT, || {
        (api.metric("tocsin_reports_total") >= 2.0).then_some(())
    });
    assert_eq!(api.metric("tocsin_reports_total"), 2.0);
    assert_eq!(api.metric("tocsin_reports_duplicate_total"), 1.0);
    assert_eq!(
        api.metric("tocsin_ingest_rejected_total{reason=\"malformed\"}"),
        2.0
    );
    assert_eq!(
        api.metric("tocsin_ingest_rejected_total{reason=\"too_large\"}"),
        1.0
    );
    assert_eq!(
        api.metric("tocsin_ingest_rejected_total{reason=\"unknown_version\"}"),
        1.0
    );
    assert_eq!(
        api.metric("tocsin_ingest_rejected_total{reason=\"invalid\"}"),
        2.0
    );
    let nodes = api.list("/api/v1/nodes");
    let good: Vec<&Value> = nodes.iter().filter(|n| n["node"] == "good-01").collect();
    assert_eq!(good.len(), 1);
    assert_eq!(good[0]["last_seq"], 6);
    assert!(
        nodes.iter().all(|n| n["node"] != "bad-01"),
        "refused payloads create no node"
    );
    assert!(collector.alive());
    // Bad API input is a clear JSON error too.
    let (status, body) = api.get_raw("/api/v1/tickets?state=sleepy").expect("answer");
    assert_eq!(status, 400);
    assert!(body.contains("\"error\""));
    let (status, _) = api.get_raw("/api/v1/tickets/INC-424242").expect("answer");
    assert_eq!(status, 404);
    assert_eq!(collector.terminate(), Some(0));
}

fn run_collector(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin("tocsin-collector"))
        .args(args)
        .output()
        .expect("run collector");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_or_invalid_config_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let (code, err) = run_collector(&["run", "--config", missing.to_str().expect("path")]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("nope.toml") && err.contains("cannot read"),
        "{err}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[broker]\nembeded = true\n").expect("write");
    let (code, err) = run_collector(&["run", "--config", bad.to_str().expect("path")]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml") && err.contains("embeded"), "{err}");

    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules");
    std::fs::write(rules.join("x.toml"), "[[rule]]\nname = \"x\"\nexpr = \"cpu > lots\"\nseverity = \"info\"\ncategory = \"software\"\nsummary = \"s\"\n").expect("write");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[rules]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n",
            rules.display(),
            dir.path().join("d.duckdb").display()
        ),
    )
    .expect("write");
    let (code, err) = run_collector(&["run", "--config", cfg.to_str().expect("path")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("x.toml") && err.contains("lots"), "{err}");
    let (code, err) = run_collector(&["check-config", "--config", cfg.to_str().expect("path")]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn agent_config_errors_are_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |path: &std::path::Path| {
        let out = Command::new(bin("tocsin-agent"))
            .arg("run")
            .arg("--config")
            .arg(path)
            .output()
            .expect("run agent");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&dir.path().join("missing.toml"));
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("missing.toml"), "{err}");
    for (name, text, needle) in [
        (
            "unknown-key.toml",
            "site = \"dc1\"\nintervall = \"10s\"\n",
            "intervall",
        ),
        (
            "bad-duration.toml",
            "site = \"dc1\"\ninterval = \"soon\"\n",
            "soon",
        ),
        (
            "bad-node.toml",
            "site = \"dc1\"\nnode = \"web 01\"\n",
            "web 01",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let (code, err) = run(&path);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
    }
}
