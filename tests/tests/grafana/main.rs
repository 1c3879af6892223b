//! The Grafana dashboards under `dashboards/grafana`: their structure is what Grafana needs to
//! import them (ids, grid, refIds, data sources picked at import), and every query they hold
//! answers against a real collector with seeded data. Infinity targets are sent as the plugin
//! sends them (Grafana's time macros substituted, the viewer token as the data source's
//! Authorization header); Prometheus targets name only metrics the collector's `/metrics`
//! exports, counters inside rate()/increase(), with labels that exist.

mod infinity;
mod prometheus;
mod structure;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_tests::{
    Api, Broker, Collector, CollectorOptions, Publisher, start_collector, wait_for,
};

use infinity::{Range, run_infinity};
use prometheus::{Exposition, check_label_values, check_promql};
use structure::{all_panels, resolve_datasource, structure_problems, variables};

const WAIT: Duration = Duration::from_secs(40);
const INFINITY: &str = "yesoreyeram-infinity-datasource";
const VIEWER: &str = "grafana-viewer-token";
const OPERATOR: &str = "grafana-operator-token";

const RULES: &str = tocsin_tests::CHECK_CRITICAL_RULE;

/// Every priority misses its response target after 2s, so the seeded ticket escalates; two
/// incidents of one signature open a problem record.
const POLICY: &str = r#"
[incident]
verify_for = "1s"
[problem]
threshold = 2
window = "1h"
[sla.P1]
response = "2s"
resolution = "1h"
[sla.P2]
response = "2s"
resolution = "1h"
[sla.P3]
response = "2s"
resolution = "1h"
[sla.P4]
response = "2s"
resolution = "1h"
[[escalation]]
name = "on-duty"
after = "0s"
notify = ["mqtt:bus"]
[notify.mqtt.bus]
topic = "tickets"
"#;

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("dashboards")
        .join("grafana")
}

/// Every `dashboards/grafana/*.json`, parsed: (file name, dashboard).
fn dashboards() -> Vec<(String, Value)> {
    let dir = dashboard_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            (name, v)
        })
        .collect()
}

#[test]
fn grafana_dashboards_have_what_grafana_needs() {
    let mut bad = Vec::new();
    for (file, d) in dashboards() {
        bad.extend(structure_problems(&file, &d));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// GET with the viewer token; 200 and JSON.
fn get(api: &Api, path: &str) -> Value {
    let (status, body) = api
        .request("GET", path, None, Some(VIEWER))
        .unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

fn list(api: &Api, path: &str) -> Vec<Value> {
    get(api, path).as_array().cloned().unwrap_or_default()
}

/// Publish bytes that are no report at all (for the rejected-payload counters).
fn publish_garbage(port: u16, topic: &str) {
    let opts = rumqttc::MqttOptions::new("grafana-garbage", "127.0.0.1", port);
    let (client, mut connection) = rumqttc::Client::new(opts, 10);
    std::thread::spawn(move || {
        for ev in connection.iter() {
            if ev.is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    client
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            b"this is not a report".to_vec(),
        )
        .expect("publish garbage");
}

/// Seed: a failing check opens an incident and a ticket, which misses its response target
/// and escalates; an operator acknowledges; the check recovers and the incident closes; it
/// fails again (second incident of the signature: a problem record); a malformed payload is
/// refused.
fn seed(api: &Api, mqtt_port: u16) {
    let mut p = Publisher::connect(mqtt_port, "grafana-seed");
    p.online(
        "dc1",
        "web-01",
        json!({"criticality": "medium", "service": "shop"}),
    );
    std::thread::sleep(Duration::from_millis(500));
    p.check("dc1", "web-01", "db", "critical");
    let ticket = wait_for("a ticket for the failing check", WAIT, || {
        list(api, "/api/v1/tickets").into_iter().next()
    });
    let number = ticket["number"].as_str().unwrap_or_default().to_string();
    wait_for(
        "the ticket escalated (response target missed)",
        WAIT,
        || {
            let t = get(api, &format!("/api/v1/tickets/{number}"));
            t["escalation_level"]
                .as_i64()
                .is_some_and(|l| l >= 1)
                .then_some(())
        },
    );
    let (status, body) = api
        .request(
            "POST",
            &format!("/api/v1/tickets/{number}/ack"),
            Some(r#"{"note": "looking"}"#),
            Some(OPERATOR),
        )
        .expect("ack answered");
    assert_eq!(status, 200, "ack {number}: {body}");
    p.check("dc1", "web-01", "db", "ok");
    wait_for("the first incident closed", WAIT, || {
        let all = list(api, "/api/v1/incidents");
        (!all.is_empty() && all.iter().all(|i| i["state"] == "closed")).then_some(())
    });
    p.check("dc1", "web-01", "db", "critical");
    wait_for("a problem record from the recurrence", WAIT, || {
        (!list(api, "/api/v1/problems").is_empty()).then_some(())
    });
    wait_for("the second incident open", WAIT, || {
        (!list(api, "/api/v1/incidents?state=open").is_empty()).then_some(())
    });
    publish_garbage(mqtt_port, "tocsin/v1/dc1/web-01/report");
    wait_for("the malformed payload counted", WAIT, || {
        let (_, m) = api.get_raw("/metrics")?;
        m.contains("tocsin_ingest_rejected_total{reason=")
            .then_some(())
    });
}

#[test]
fn grafana_queries_answer_against_a_seeded_collector() {
    let boards = dashboards();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_mosquitto, broker) = Broker::mosquitto_or_embedded(dir.path());
    // Tokens required even on loopback: every query goes with the viewer token, as the
    // Infinity data source sends it. The default query limits: the overview's six SQL panels
    // load at once, and the queue lets them wait for the two running slots.
    let options = CollectorOptions {
        policy: POLICY,
        viewer_token: Some(VIEWER),
        operator_token: Some(OPERATOR),
        open_on_loopback: Some(false),
        ..CollectorOptions::new("collector-grafana", RULES)
    };
    let Collector {
        proc: mut collector,
        api,
        ..
    } = start_collector(dir.path(), broker, &options, WAIT);
    api.wait_ready(WAIT);
    seed(&api, broker.port());

    let (_, metrics) = api.get_raw("/metrics").expect("/metrics");
    let exposition = Exposition::parse(&metrics);
    let mut bad = Vec::new();
    let mut checked = 0;
    for (file, d) in &boards {
        let range = Range::of(d);
        for v in variables(d) {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_default();
            if let Err(e) = check_label_values(q, &exposition) {
                bad.push(format!(
                    "{file}: variable ${}: {e}\n  query: {q}",
                    v["name"].as_str().unwrap_or_default()
                ));
            }
        }
        for p in all_panels(d) {
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or_default();
            let kind = resolve_datasource(d, &p["datasource"]).unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                let at = format!(
                    "{file}: panel {title:?} target {}",
                    t["refId"].as_str().unwrap_or("?")
                );
                checked += 1;
                match kind.as_str() {
                    INFINITY => {
                        if let Err(e) = run_infinity(&api, t, &range) {
                            bad.push(format!(
                                "{at}: {e}\n  query: {} {}",
                                t["url"].as_str().unwrap_or_default(),
                                t["url_options"]["data"].as_str().unwrap_or_default()
                            ));
                        }
                    }
                    "prometheus" => {
                        let expr = t["expr"].as_str().unwrap_or_default();
                        if let Err(e) = check_promql(expr, &exposition) {
                            bad.push(format!("{at}: {e}\n  query: {expr}"));
                        }
                    }
                    other => bad.push(format!("{at}: no check for data source {other:?}")),
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}\n(collector log: {})",
        bad.len(),
        bad.join("\n"),
        collector.log.display()
    );
    eprintln!("{checked} dashboard queries answered");

    // Grafana loads a dashboard by sending every panel's queries at once.
    for (file, d) in &boards {
        let range = Range::of(d);
        let results: Vec<(String, Result<String, String>)> = std::thread::scope(|s| {
            let running: Vec<_> = all_panels(d)
                .into_iter()
                .filter(|p| resolve_datasource(d, &p["datasource"]).is_ok_and(|k| k == INFINITY))
                .flat_map(|p| {
                    p["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |t| (p, t))
                })
                .map(|(p, t)| {
                    let (api, range) = (&api, &range);
                    let title = p["title"].as_str().unwrap_or_default().to_string();
                    s.spawn(move || (title, run_infinity(api, t, range)))
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().expect("query thread"))
                .collect()
        });
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|(title, r)| r.err().map(|e| format!("{file}: panel {title:?}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "loading {file} as Grafana does (all panels at once), {} queries failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
    assert_eq!(collector.terminate(), Some(0), "{}", collector.log_text());
}
