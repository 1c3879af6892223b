//! The fleet simulator against a real Mosquitto and the real collector with the shipped rule
//! pack: every injected failure (a service dying, an agent crashing, a switch going down with
//! its hosts) becomes one ticket, and every message the broker took is accounted for.

use std::process::Command;
use std::time::Duration;

use tocsin_tests::{Broker, CollectorOptions, Mosquitto, bin, start_collector, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// The shipped rules as one file (each file holds only `[[rule]]` tables).
fn shipped_rules() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("rules/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.ends_with("policy.toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("a rule file"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn shipped_policy_with_ticket_events() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/policy.toml");
    let policy = std::fs::read_to_string(path).expect("policy.toml");
    format!(
        "{policy}\n[notify]\nevents = [\"mqtt:bench\"]\n[notify.mqtt.bench]\ntopic = \"tickets\"\n"
    )
}

#[test]
fn injected_failures_become_tickets_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mosquitto) = Mosquitto::start(dir.path()) else {
        return;
    };
    let rules = shipped_rules();
    let policy = shipped_policy_with_ticket_events();
    let collector = start_collector(
        dir.path(),
        Broker::Mosquitto(mosquitto.port),
        &CollectorOptions {
            policy: &policy,
            ..CollectorOptions::new("collector-sim", &rules)
        },
        WAIT,
    );
    let api = &collector.api;
    api.wait_ready(WAIT);

    // 120 nodes (4 monitoring hosts, 4 switches, 112 hosts), each agent its own MQTT
    // connection with its last will; failures every 5 s from 5 s to about 25 s in.
    let out = Command::new(bin("tocsin-sim"))
        .args([
            "run",
            "--nodes",
            "120",
            "--interval",
            "5s",
            "--duration",
            "75s",
        ])
        .args([
            "--failures-per-minute",
            "12",
            "--quiet-start",
            "5s",
            "--hold",
            "40s",
        ])
        .args([
            "--faults",
            "service-down,agent-crash,switch-down",
            "--linger",
            "30s",
        ])
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{}", mosquitto.port))
        .arg("--rules")
        .arg(&collector.rules)
        .arg("--injections")
        .arg(dir.path().join("injections.jsonl"))
        .arg("--quiet")
        .output()
        .expect("tocsin-sim runs");
    assert!(
        out.status.success(),
        "tocsin-sim failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let injected = summary["failures_injected"].as_u64().expect("injected");
    assert!(injected >= 3, "{summary}");
    assert_eq!(summary["failures_planned"].as_u64(), Some(injected));
    assert_eq!(summary["dropped"].as_u64(), Some(0), "{summary}");
    // The agent crash and the hosts behind the switch dropped without DISCONNECT, and the
    // broker published their wills (a subscriber to every status counted them).
    assert!(
        summary["unclean_disconnects"].as_u64() > Some(1),
        "{summary}"
    );
    assert!(summary["wills_published"].as_u64() > Some(1), "{summary}");

    // Every failure led to a ticket for its node (the switch, not the hosts behind it).
    let latency = &summary["latency"];
    assert_eq!(
        latency["matched"].as_u64(),
        Some(injected),
        "unmatched: {}",
        latency["unmatched"]
    );
    let log = std::fs::read_to_string(dir.path().join("injections.jsonl")).expect("injection log");
    assert_eq!(log.lines().count() as u64, injected);

    // Zero loss: the collector took every message the broker acknowledged, plus every last
    // will the broker published.
    let expected = summary["expected_at_collector"].as_f64().expect("expected");
    let handled = || {
        api.metric("tocsin_reports_total")
            + api.metric("tocsin_reports_duplicate_total")
            + api.metric("tocsin_statuses_total")
    };
    wait_for("the collector to take every message", WAIT, || {
        (handled() >= expected).then_some(())
    });
    // Exactly that, unless a connection was lost on a loaded machine: an agent's publishes
    // in flight then may reach the collector twice (it counts the second as a duplicate),
    // and when the collector's own connection drops, the broker redelivers what it had not
    // acknowledged and sends the retained statuses again on the new subscription.
    let in_doubt = summary["in_doubt"].as_f64().expect("in_doubt");
    let collector_reconnects = api.metric("tocsin_mqtt_connects_total") - 1.0;
    // The wills are counted by a subscriber of the simulator's; one that lost its connection
    // missed those published meanwhile.
    let watch_reconnects = summary["watch_reconnects"]
        .as_f64()
        .expect("watch_reconnects");
    let breakdown = || {
        format!(
            "reports {}, duplicates {}, statuses {}, collector reconnects {collector_reconnects}",
            api.metric("tocsin_reports_total"),
            api.metric("tocsin_reports_duplicate_total"),
            api.metric("tocsin_statuses_total"),
        )
    };
    if collector_reconnects == 0.0 && watch_reconnects == 0.0 {
        assert!(
            handled() <= expected + in_doubt,
            "the collector counted {} messages ({}), the broker took {expected} (+{in_doubt} in doubt): {summary}",
            handled(),
            breakdown()
        );
    }
    // Every report once, whatever was delivered twice; those an agent had not yet sent when it
    // crashed are gone with it.
    let reports = summary["reports"].as_f64().expect("reports");
    let stored = api.metric("tocsin_reports_total");
    assert!(
        stored <= reports && stored >= reports - in_doubt,
        "{stored} of {reports} reports stored ({in_doubt} in doubt): {}",
        breakdown()
    );

    // One ticket per failure: the hosts cut off behind the switch are symptoms of its incident.
    let tickets = api.list("/api/v1/tickets");
    assert_eq!(tickets.len() as u64, injected, "{tickets:#?}");
    let switch_down = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "switch_down")
        .expect("a switch went down");
    let incidents = api.list("/api/v1/incidents");
    let of_switch = incidents
        .iter()
        .find(|i| i["node"] == switch_down["node"])
        .expect("an incident for the switch");
    assert!(
        of_switch["root_cause"]
            .as_str()
            .is_some_and(|r| r.contains(switch_down["node"].as_str().unwrap_or("?"))),
        "{of_switch:#}"
    );
}
