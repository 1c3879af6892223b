//! The web dashboard in a real browser: a collector with an operator token, a failing check
//! (incident + ticket) and a person's ticket whose response target has passed; headless
//! Chromium (tests/browser/dashboard.mjs, playwright-core) loads `/`, must show the incident,
//! the ticket with its SLA figures and the breach in red, and acknowledges the ticket with the
//! page's button; the API then says the ticket is acknowledged by the name typed in the page.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in tests/browser; without them the test says so and
//! passes, unless TOCSIN_REQUIRE_BROWSER=1 (CI) makes it fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_tests::{Broker, Collector, CollectorOptions, Publisher, start_collector, wait_for};

const WAIT: Duration = Duration::from_secs(40);
const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "web-dashboard-operator-token";
const ACTOR: &str = "browser-e2e";

const RULES: &str = tocsin_tests::CHECK_CRITICAL_RULE;

/// P2 (the failing check) has an hour to be acknowledged; P4 (the person's low/low ticket)
/// one second, so it shows as breached.
const POLICY: &str = r#"
[sla.P2]
response = "1h"
resolution = "4h"
[sla.P4]
response = "1s"
resolution = "7d"
"#;

/// True when the browser test must run (CI sets TOCSIN_REQUIRE_BROWSER=1).
fn browser_required() -> bool {
    std::env::var("TOCSIN_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(browser_dir: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "{}/node_modules is missing (cd tests/browser && npm ci)",
            browser_dir.display()
        ));
    }
    None
}

#[test]
fn dashboard_shows_incident_ticket_and_sla_and_acknowledges_in_a_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    if let Some(why) = browser_missing(&browser_dir) {
        assert!(
            !browser_required(),
            "{why}, but TOCSIN_REQUIRE_BROWSER=1: the browser test must run"
        );
        eprintln!("SKIPPED: {why}; the web dashboard browser test did not run");
        return;
    }
    // Screenshots stay after the test, in the target folder.
    let out: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_dashboard");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("screenshot folder");

    let dir = tempfile::tempdir().expect("tempdir");
    let (_mosquitto, broker) = Broker::mosquitto_or_embedded(dir.path());
    let options = CollectorOptions {
        policy: POLICY,
        operator_token: Some(TOKEN),
        ..CollectorOptions::new("collector-web", RULES)
    };
    let Collector {
        proc: mut collector,
        api,
        ..
    } = start_collector(dir.path(), broker, &options, WAIT);

    // The page and its files are open: no token needed to load them.
    let (status, page) = api.get_raw("/").expect("GET /");
    assert_eq!(status, 200, "GET /: {page}");
    assert!(page.contains("<title>tocsin</title>"), "{page}");
    for file in ["app.js", "style.css"] {
        let (status, body) = api.get_raw(&format!("/web/{file}")).expect("GET /web");
        assert_eq!(status, 200, "/web/{file}: {body}");
    }

    // A failing check: incident + ticket (medium impact x high urgency: P2).
    let mut publisher = Publisher::connect(broker.port(), "web-dashboard-test");
    publisher.online(
        "dc1",
        "web-01",
        json!({"criticality": "medium", "service": "shop"}),
    );
    let ticket = wait_for("a ticket for the failing check", WAIT, || {
        publisher.check("dc1", "web-01", "db", "critical");
        api.list("/api/v1/tickets?kind=incident")
            .into_iter()
            .find(|t| t["incident_id"].is_number())
    });
    let number = ticket["number"]
        .as_str()
        .expect("ticket number")
        .to_string();
    assert_eq!(ticket["state"], "new", "{ticket}");
    assert_eq!(ticket["priority"], "P2", "{ticket}");
    assert!(ticket["response_due_at"].is_string(), "{ticket}");
    let incidents = api.list("/api/v1/incidents?state=open");
    assert_eq!(incidents.len(), 1, "{incidents:?}");

    // A person's ticket (low impact, low urgency: P4) whose response target passes at once.
    let (status, manual) = api.post(
        "/api/v1/tickets",
        Some(
            &json!({"summary": "printer on floor 2 jams", "reporter": {"name": "Ann"},
                     "impact": "low", "urgency": "low"}),
        ),
        Some(TOKEN),
    );
    assert_eq!(status, 201, "{manual}");
    assert_eq!(manual["priority"], "P4", "{manual}");
    let breached = manual["number"].as_str().expect("number").to_string();
    wait_for("the P4 response target breached", WAIT, || {
        let t = api.get(&format!("/api/v1/tickets/{breached}"));
        t["response_breached_at"].is_string().then_some(())
    });

    // The browser.
    let run = Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .args(["--url", &api.base, "--token", TOKEN, "--actor", ACTOR])
        .args(["--ticket", &number, "--breached", &breached])
        .arg("--out")
        .arg(&out)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("run node tests/browser/dashboard.mjs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("web dashboard screenshots: {}", out.display());
    assert!(
        run.status.success(),
        "dashboard.mjs failed ({}):\n{stderr}\n{stdout}\ncollector log: {}",
        run.status,
        collector.log.display()
    );
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON result line from dashboard.mjs: {stdout}"));
    eprintln!("dashboard.mjs: {result}");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["ticket"], number.as_str());
    assert_eq!(result["before"]["state"], "new");
    assert!(
        result["before"]["response"]
            .as_str()
            .is_some_and(|s| s.ends_with("left")),
        "{result}"
    );
    assert!(
        result["before"]["counts"]["breached_open_tickets"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{result}"
    );
    assert!(
        result["refused_without_token"]
            .as_str()
            .is_some_and(|s| s.contains("401")),
        "{result}"
    );
    assert_eq!(result["after"]["state"], "acknowledged");
    for shot in ["dashboard.png", "after-ack.png"] {
        let size = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 1000, "{shot} missing or empty in {}", out.display());
    }

    // The API agrees: acknowledged, by the name typed in the page, with the operator token.
    let acked = api.get(&format!("/api/v1/tickets/{number}"));
    assert_eq!(acked["state"], "acknowledged", "{acked}");
    assert!(acked["acknowledged_at"].is_string(), "{acked}");
    assert_eq!(acked["assignee"], ACTOR, "{acked}");
    let ack_event = acked["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["kind"] == "acknowledged"))
        .unwrap_or_else(|| panic!("no acknowledged event: {acked}"));
    assert_eq!(
        ack_event["actor"],
        format!("{ACTOR} via operator token"),
        "{ack_event}"
    );
    // The other ticket was left alone.
    let other = api.get(&format!("/api/v1/tickets/{breached}"));
    assert_eq!(other["state"], "new", "{other}");
    collector.terminate();
}
