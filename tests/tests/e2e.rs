//! The whole path with real binaries: agent -> MQTT (Mosquitto or embedded) -> collector -> incident -> ticket.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tocsin_tests::write_file as write;
use tocsin_tests::{
    Api, Broker, Collector, CollectorOptions, Mosquitto, Proc, bin, free_port, wait_for,
};

const RULES: &str = r#"
[[rule]]
name = "check_critical"
check = "*"
severity = "critical"
category = "software"
summary = "{{node}}: check {{check}} is {{status}}: {{output}}"
runbook = "kb/check-failed.md"

[[rule]]
name = "node_offline"
when = "offline"
for = "0s"
severity = "critical"
category = "network"
summary = "{{node}} is offline"
"#;

const POLICY: &str = r#"
[incident]
verify_for = "3s"
[[route]]
match = { category = "network" }
group = "network"
"#;

const WAIT: Duration = Duration::from_secs(40);

struct Setup {
    dir: tempfile::TempDir,
    api: Api,
    collector: Proc,
    collector_config: std::path::PathBuf,
    mqtt_port: u16,
}

fn start_collector(dir: tempfile::TempDir, broker: Broker) -> Setup {
    let options = CollectorOptions {
        policy: POLICY,
        store: "data/tocsin.duckdb",
        ..CollectorOptions::new("collector-e2e", RULES)
    };
    let Collector {
        proc: collector,
        api,
        config,
        ..
    } = tocsin_tests::start_collector(dir.path(), broker, &options, WAIT);
    api.wait_ready(WAIT);
    Setup {
        dir,
        api,
        collector,
        collector_config: config,
        mqtt_port: broker.port(),
    }
}

fn start_agent(s: &Setup, check_port: u16, name: &str) -> Proc {
    let config = s.dir.path().join(format!("{name}.toml"));
    write(
        &config,
        &format!(
            "site = \"e2e\"\nnode = \"{name}\"\ninterval = \"1s\"\nlabels = {{ criticality = \"high\" }}\n\
             [broker]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = \"{}\"\n\
             [[check]]\nname = \"db\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{check_port}\"\ntimeout = \"1s\"\n",
            s.mqtt_port,
            s.dir.path().join(format!("{name}-spool")).display()
        ),
    );
    let mut cmd = Command::new(bin("tocsin-agent"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info");
    Proc::spawn(name, cmd, s.dir.path())
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Fail a check, see one incident and one ticket; pass it, see both resolved then closed;
/// stop the agent cleanly, then kill one and see the last will open a node_offline incident.
fn incident_lifecycle(broker: Broker) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_collector(dir, broker);
    let check_port = free_port();
    let mut agent = start_agent(&s, check_port, "web-01");

    // Nothing listens on check_port: the check fails.
    let tickets = wait_for("a ticket for the failing check", WAIT, || {
        let t = s.api.list("/api/v1/tickets");
        (!t.is_empty()).then_some(t)
    });
    // Several more reports with the check still failing change nothing.
    std::thread::sleep(Duration::from_secs(3));
    let tickets_now = s.api.list("/api/v1/tickets");
    let incidents = s.api.list("/api/v1/incidents");
    assert_eq!(tickets_now.len(), 1, "exactly one ticket: {tickets_now:?}");
    assert_eq!(incidents.len(), 1, "exactly one incident: {incidents:?}");
    let ticket = &tickets[0];
    assert_eq!(field(ticket, "number"), "INC-000001");
    assert_eq!(field(ticket, "state"), "new");
    assert_eq!(
        field(ticket, "priority"),
        "P1",
        "criticality high x critical check"
    );
    assert_eq!(field(&incidents[0], "state"), "open");
    assert!(
        field(ticket, "summary").contains("check tcp:db is critical"),
        "{ticket}"
    );
    let detail = s.api.get("/api/v1/tickets/INC-000001");
    assert_eq!(detail["reporter"]["node"], "web-01");
    assert!(
        detail["environment"]["inventory"]["hostname"].is_string(),
        "inventory in ticket: {detail}"
    );
    assert_eq!(detail["events"][0]["kind"], "opened");
    // The operator CLI prints the same from the API, as a table and as JSON.
    let tocsin = |args: &[&str]| {
        let out = Command::new(bin("tocsin"))
            .arg("--api")
            .arg(&s.api.base)
            .args(args)
            .output()
            .expect("run tocsin");
        assert!(
            out.status.success(),
            "tocsin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = tocsin(&["tickets"]);
    assert!(
        table.starts_with("TICKET") && table.contains("INC-000001") && table.contains("P1"),
        "{table}"
    );
    let table = tocsin(&["incidents", "--state", "open"]);
    assert!(
        table.contains("INC-000001") && table.contains("e2e/web-01"),
        "{table}"
    );
    let json: Value =
        serde_json::from_str(&tocsin(&["tickets", "--json"])).expect("--json is JSON");
    assert_eq!(json[0]["number"], "INC-000001");
    let detail = tocsin(&["ticket", "INC-000001"]);
    assert!(
        detail.contains("Reporter:  monitoring node web-01")
            && detail.contains("opened by monitoring"),
        "{detail}"
    );
    let firing = s.api.list("/api/v1/alerts?state=firing");
    assert_eq!(firing.len(), 1);
    let nodes = s.api.list("/api/v1/nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(field(&nodes[0], "state"), "online");
    assert!(nodes[0]["last_seq"].as_u64().is_some_and(|s| s >= 3));

    // Make the check pass.
    let listener = TcpListener::bind(("127.0.0.1", check_port)).expect("bind the check port");
    // Resolved lasts only `verify_for` (3s) before it is closed: a slow poll on a loaded
    // machine may first see closed. The event log below proves it went through resolved.
    let done = |v: &Value| matches!(field(v, "state"), "resolved" | "closed");
    wait_for("incident and ticket resolved", WAIT, || {
        let inc = s.api.get("/api/v1/incidents/1");
        let t = s.api.get("/api/v1/tickets/INC-000001");
        (done(&inc) && done(&t)).then_some(())
    });
    wait_for(
        "incident and ticket closed after verification",
        WAIT,
        || {
            let t = s.api.get("/api/v1/tickets/INC-000001");
            (field(&t, "state") == "closed").then_some(t)
        },
    );
    assert_eq!(s.api.list("/api/v1/incidents?state=closed").len(), 1);
    let log: Vec<String> = s.api.get("/api/v1/tickets/INC-000001")["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| field(e, "kind").to_string())
        .collect();
    assert_eq!(log, ["opened", "resolved", "closed"]);

    // A clean stop publishes "stopped" and raises nothing.
    assert_eq!(
        agent.terminate(),
        Some(0),
        "agent log:\n{}",
        agent.log_text()
    );
    wait_for("node state stopped", WAIT, || {
        let n = s.api.list("/api/v1/nodes");
        (field(&n[0], "state") == "stopped").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.api.list("/api/v1/incidents?state=open").len(), 0);

    // A killed agent: the broker publishes its last will; node_offline opens an incident.
    let mut agent = start_agent(&s, check_port, "web-01");
    wait_for("node back online", WAIT, || {
        let n = s.api.list("/api/v1/nodes");
        (field(&n[0], "state") == "online").then_some(())
    });
    agent.signal(Signal::SIGKILL);
    let _ = agent.wait(Duration::from_secs(5));
    let offline = wait_for(
        "node_offline incident from the last will",
        Duration::from_secs(90),
        || {
            s.api
                .list("/api/v1/incidents?state=open")
                .into_iter()
                .find(|i| field(i, "title") == "web-01 is offline")
        },
    );
    let t = s.api.get(&format!(
        "/api/v1/tickets/{}",
        field(&offline, "ticket_number")
    ));
    assert_eq!(field(&t, "assignment_group"), "network");
    drop(listener);

    assert_eq!(
        s.collector.terminate(),
        Some(0),
        "collector log:\n{}",
        s.collector.log_text()
    );
    assert!(s.collector_config.exists());
}

#[test]
fn incident_lifecycle_with_mosquitto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(m) = Mosquitto::start(dir.path()) else {
        return;
    };
    incident_lifecycle(Broker::Mosquitto(m.port));
    drop(m);
}

#[test]
fn incident_lifecycle_with_embedded_broker() {
    incident_lifecycle(Broker::Embedded(free_port()));
}

/// The collector stops while the agent keeps reporting: the broker keeps the persistent
/// session's messages, and the restarted collector resumes its open incident from the store
/// and resolves it from the queued reports, without a second incident or ticket.
#[test]
fn collector_restart_resumes_from_store_and_broker_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(m) = Mosquitto::start(dir.path()) else {
        return;
    };
    let mut s = start_collector(dir, Broker::Mosquitto(m.port));
    let check_port = free_port();
    let _agent = start_agent(&s, check_port, "db-01");
    wait_for("a ticket", WAIT, || {
        let t = s.api.list("/api/v1/tickets");
        (t.len() == 1).then_some(())
    });
    let seq_before = s.api.list("/api/v1/nodes")[0]["last_seq"]
        .as_u64()
        .expect("seq");
    assert_eq!(
        s.collector.terminate(),
        Some(0),
        "collector log:\n{}",
        s.collector.log_text()
    );

    // While the collector is down the check recovers; the reports wait at the broker.
    let listener = TcpListener::bind(("127.0.0.1", check_port)).expect("bind the check port");
    std::thread::sleep(Duration::from_secs(4));

    let mut cmd = Command::new(bin("tocsin-collector"));
    cmd.arg("run").arg("--config").arg(&s.collector_config);
    s.collector = Proc::spawn("collector-2", cmd, s.dir.path());
    s.api.wait_healthy(WAIT);
    wait_for(
        "the resumed incident resolved by queued reports",
        WAIT,
        || {
            let t = s.api.get("/api/v1/tickets/INC-000001");
            (field(&t, "state") == "resolved" || field(&t, "state") == "closed").then_some(())
        },
    );
    assert_eq!(s.api.list("/api/v1/tickets").len(), 1, "no second ticket");
    assert_eq!(
        s.api.list("/api/v1/incidents").len(),
        1,
        "no second incident"
    );
    let seq_after = s.api.list("/api/v1/nodes")[0]["last_seq"]
        .as_u64()
        .expect("seq");
    assert!(
        seq_after > seq_before + 2,
        "queued reports were delivered: {seq_before} -> {seq_after}"
    );
    drop(listener);
    assert_eq!(s.collector.terminate(), Some(0));
}

/// The README's first command: the quickstart prints the incident and ticket within 60 s,
/// serves the API, and stops cleanly on Ctrl-C.
#[test]
fn quickstart_prints_incident_and_ticket_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mqtt, http) = (free_port(), free_port());
    let mut cmd = Command::new(bin("tocsin-collector"));
    cmd.arg("quickstart")
        .arg("--data-dir")
        .arg(dir.path().join("qs"))
        .args([
            "--mqtt-port",
            &mqtt.to_string(),
            "--http-port",
            &http.to_string(),
        ]);
    let mut qs = Proc::spawn("quickstart", cmd, dir.path());
    wait_for(
        "the quickstart to print its ticket",
        Duration::from_secs(60),
        || {
            let out = qs.log_text();
            out.contains("The API is up").then_some(out)
        },
    );
    let out = qs.log_text();
    assert!(out.contains("INC-000001"), "{out}");
    assert!(out.contains("demo-db"), "{out}");
    assert!(out.contains("Reporter:  monitoring node"), "{out}");
    let api = Api::new(http);
    let tickets = api.list("/api/v1/tickets");
    assert_eq!(tickets.len(), 1);
    assert_eq!(field(&tickets[0], "priority"), "P1");
    qs.signal(Signal::SIGINT);
    assert_eq!(
        qs.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        qs.log_text()
    );
    assert!(qs.log_text().contains("stopped."));
}
