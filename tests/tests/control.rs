//! The control path with the real collector binary and a real broker: rule reloads (SIGHUP and
//! API), maintenance windows, operator tokens, problem records, and the `tocsin` CLI for each.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tocsin_tests::{
    Api, Broker, Collector, CollectorOptions, Mosquitto, Proc, Publisher, bin, start_collector,
    wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn rule(name: &str, check: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\ncheck = \"{check}\"\nseverity = \"critical\"\ncategory = \"software\"\n\
         summary = \"{{{{node}}}}: {{{{check}}}} is {{{{status}}}}\"\n"
    )
}

struct Setup {
    dir: tempfile::TempDir,
    rules: PathBuf,
    api: Api,
    collector: Proc,
    mqtt_port: u16,
    _mosquitto: Option<Mosquitto>,
}

/// A collector on Mosquitto (or its embedded broker when Mosquitto is not installed) with the
/// given rule file, policy and extra `[http]` lines.
fn start(rules_toml: &str, policy: &str, http_extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mosquitto, broker) = Broker::mosquitto_or_embedded(dir.path());
    let options = CollectorOptions {
        policy,
        http_extra,
        store: "t.duckdb",
        ..CollectorOptions::new("collector-control", rules_toml)
    };
    let Collector {
        proc: collector,
        api,
        rules,
        ..
    } = start_collector(dir.path(), broker, &options, WAIT);
    api.wait_ready(WAIT);
    Setup {
        dir,
        rules,
        api,
        collector,
        mqtt_port: broker.port(),
        _mosquitto: mosquitto,
    }
}

impl Setup {
    fn tocsin(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin("tocsin"));
        cmd.arg("--api")
            .arg(&self.api.base)
            .args(args)
            .env_remove("TOCSIN_TOKEN")
            .env_remove("TOCSIN_TOKEN_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run tocsin")
    }

    /// Run `tocsin`, which must succeed; its stdout.
    fn tocsin_ok(&self, args: &[&str]) -> String {
        let out = self.tocsin(args, &[]);
        assert!(
            out.status.success(),
            "tocsin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alerts_of(&self, node: &str) -> Vec<Value> {
        self.api
            .list("/api/v1/alerts")
            .into_iter()
            .filter(|a| a["node"] == node)
            .collect()
    }

    fn incidents_of(&self, node: &str) -> Vec<Value> {
        self.api
            .list("/api/v1/incidents")
            .into_iter()
            .filter(|i| i["node"] == node)
            .collect()
    }

    /// Wait until the collector stored `node`'s report number `seq`.
    fn seen(&self, node: &str, seq: u64) {
        wait_for(&format!("{node}'s report {seq} stored"), WAIT, || {
            self.api
                .list("/api/v1/nodes")
                .into_iter()
                .find(|n| n["node"] == node && n["last_seq"].as_u64() >= Some(seq))
        });
    }

    fn stop(mut self) {
        assert_eq!(
            self.collector.terminate(),
            Some(0),
            "collector log:\n{}",
            self.collector.log_text()
        );
    }
}

/// (a) A changed rule file is put in force by SIGHUP; a broken one is refused by the API
/// reload with its file:line, and the old rules keep firing.
#[test]
fn rules_reload_by_sighup_and_api() {
    let s = start(
        &rule("web_down", "web*"),
        "[incident]\nverify_for = \"2s\"\n",
        "",
    );
    let mut p = Publisher::connect(s.mqtt_port, "e2e-reload");
    // The rule watches web* checks only: a failing db check raises nothing.
    p.check("e2e", "n1", "db", "critical");
    s.seen("n1", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.alerts_of("n1").is_empty(), "{:?}", s.alerts_of("n1"));

    // Widen the rule and send SIGHUP.
    std::fs::write(s.rules.join("test.toml"), rule("any_down", "*")).expect("rewrite");
    s.collector.signal(Signal::SIGHUP);
    wait_for("the SIGHUP reload", WAIT, || {
        (s.api.metric("tocsin_rules_reloads_total{result=\"ok\"}") >= 1.0).then_some(())
    });
    assert_eq!(s.api.metric("tocsin_rules_loaded"), 1.0);
    assert!(
        s.collector.log_text().contains("SIGHUP: rules reloaded"),
        "{}",
        s.collector.log_text()
    );
    p.check("e2e", "n1", "db", "critical");
    let alert = wait_for("the new rule fires", WAIT, || {
        s.alerts_of("n1")
            .into_iter()
            .find(|a| a["rule"] == "any_down" && a["state"] == "firing")
    });
    assert_eq!(alert["labels"]["check"], "db");
    wait_for("an incident from the new rule", WAIT, || {
        s.incidents_of("n1").into_iter().next()
    });

    // A broken file: the reload is refused with file:line, the old rules stay.
    std::fs::write(
        s.rules.join("broken.toml"),
        "[[rule]]\nname = \"broken\"\nexpr = \"cpu.usage_pct >\"\nseverity = \"warning\"\ncategory = \"hardware\"\nsummary = \"x\"\n",
    )
    .expect("broken file");
    let (status, answer) = s.api.post("/api/v1/rules/reload", None, None);
    assert_eq!(status, 422, "{answer}");
    let errors: Vec<&str> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors.iter().any(|e| has_file_line(e, "broken.toml")),
        "every error names file:line: {errors:?}"
    );
    let out = s.tocsin(&["rules", "reload"], &[]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 422") && err.contains("broken.toml:"),
        "{err}"
    );
    assert_eq!(
        s.api
            .metric("tocsin_rules_reloads_total{result=\"failed\"}"),
        2.0
    );
    // The same with SIGHUP: logged, nothing changes.
    s.collector.signal(Signal::SIGHUP);
    wait_for("the refused SIGHUP reload", WAIT, || {
        (s.api
            .metric("tocsin_rules_reloads_total{result=\"failed\"}")
            >= 3.0)
            .then_some(())
    });
    assert!(s.collector.log_text().contains("broken.toml:"));
    p.check("e2e", "n2", "db", "critical");
    wait_for("the old rule still fires for another node", WAIT, || {
        s.alerts_of("n2")
            .into_iter()
            .find(|a| a["rule"] == "any_down" && a["state"] == "firing")
    });

    // Fixed again: the API reload answers with the count.
    std::fs::remove_file(s.rules.join("broken.toml")).expect("remove");
    let out = s.tocsin_ok(&["rules", "reload"]);
    assert!(
        out.starts_with("rules reloaded: 1 rules in 1 files"),
        "{out}"
    );
    assert!(s.dir.path().exists());
    s.stop();
}

/// `<...>name:<digits>:` somewhere in the line.
fn has_file_line(line: &str, name: &str) -> bool {
    line.match_indices(&format!("{name}:")).any(|(i, m)| {
        let rest = &line[i + m.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    })
}

/// (b) A window for one node: its failing check raises a suppressed alert and no incident;
/// another node's failure opens one as usual.
#[test]
fn maintenance_suppresses_matching_nodes_only() {
    let s = start(
        &rule("any_down", "*"),
        "[incident]\nverify_for = \"2s\"\n",
        "",
    );
    let mut p = Publisher::connect(s.mqtt_port, "e2e-maintenance");
    p.online("e2e", "m1", json!({"role": "db"}));
    p.online("e2e", "m2", json!({"role": "db"}));
    let (status, window) = s.api.post(
        "/api/v1/maintenance",
        Some(
            &json!({"name": "patch m1", "match": {"node": "m1"}, "duration": "1h",
                     "reason": "kernel update"}),
        ),
        None,
    );
    assert_eq!(status, 201, "{window}");
    let id = window["id"].as_i64().expect("id");
    assert_eq!(window["in_effect"], true);

    p.check("e2e", "m1", "db", "critical");
    let alert = wait_for("m1's suppressed alert", WAIT, || {
        s.alerts_of("m1")
            .into_iter()
            .find(|a| a["state"] == "firing")
    });
    assert_eq!(alert["suppressed_by"], "patch m1", "{alert}");
    assert!(alert["incident_id"].is_null(), "{alert}");
    p.check("e2e", "m2", "db", "critical");
    wait_for("m2's incident", WAIT, || {
        s.incidents_of("m2").into_iter().next()
    });
    assert!(
        s.incidents_of("m1").is_empty(),
        "{:?}",
        s.incidents_of("m1")
    );
    let tickets = s.api.list("/api/v1/tickets");
    assert_eq!(tickets.len(), 1, "only m2 has a ticket: {tickets:?}");
    assert_eq!(tickets[0]["node"], "m2");

    // The CLI lists, adds and ends windows.
    let table = s.tocsin_ok(&["maintenance", "list", "--active"]);
    assert!(
        table.contains("patch m1") && table.contains("node=m1"),
        "{table}"
    );
    let added = s.tocsin_ok(&[
        "maintenance",
        "add",
        "weekly backup",
        "--label",
        "role=db",
        "--for",
        "2h",
        "--every",
        "7d",
        "--reason",
        "backups",
    ]);
    assert!(
        added.contains("weekly backup") && added.contains("labels.role=db"),
        "{added}"
    );
    let ended = s.tocsin_ok(&["maintenance", "end", &id.to_string()]);
    assert!(ended.contains("ended"), "{ended}");
    let json: Value =
        serde_json::from_str(&s.tocsin_ok(&["maintenance", "list", "--active", "--json"]))
            .expect("json");
    let names: Vec<&str> = json
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["weekly backup"]);
    let out = s.tocsin(&["maintenance", "end", "999"], &[]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop();
}

/// (c) With an operator token configured, writes need it; the CLI sends it from a file or
/// TOCSIN_TOKEN.
#[test]
fn writes_need_the_operator_token() {
    let token_dir = tempfile::tempdir().expect("tmp");
    let token_file = token_dir.path().join("operator.token");
    std::fs::write(&token_file, "e2e-operator-token\n").expect("token");
    let s = start(
        &rule("any_down", "*"),
        "",
        &format!("operator_token_file = \"{}\"", token_file.display()),
    );
    let body = json!({"name": "w", "match": {"node": "x"}, "duration": "1h", "reason": "r"});
    let (status, answer) = s.api.post("/api/v1/maintenance", Some(&body), None);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("operator token"))
    );
    let (status, _) = s.api.post("/api/v1/rules/reload", None, Some("guess"));
    assert_eq!(status, 401);
    let (status, answer) = s.api.post(
        "/api/v1/maintenance",
        Some(&body),
        Some("e2e-operator-token"),
    );
    assert_eq!(status, 201, "{answer}");
    // Reads stay open without a viewer token.
    assert_eq!(s.api.list("/api/v1/maintenance").len(), 1);

    let out = s.tocsin(&["rules", "reload"], &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let tf = token_file.display().to_string();
    assert!(
        s.tocsin_ok(&["--token-file", &tf, "rules", "reload"])
            .starts_with("rules reloaded")
    );
    let out = s.tocsin(
        &["rules", "reload"],
        &[("TOCSIN_TOKEN", "e2e-operator-token")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.tocsin(
        &["--token-file", "/nonexistent/token", "rules", "reload"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    s.stop();
}

/// (d) Three incidents of one signature within the problem window open a problem record;
/// the operator marks it a known error through the CLI.
#[test]
fn recurring_incidents_open_a_problem() {
    let s = start(
        &rule("any_down", "*"),
        "[incident]\nverify_for = \"1s\"\n[problem]\nthreshold = 3\nwindow = \"1h\"\n",
        "",
    );
    assert_eq!(s.api.list("/api/v1/problems"), Vec::<Value>::new());
    assert!(s.tocsin_ok(&["problems"]).contains("(none)"));
    let mut p = Publisher::connect(s.mqtt_port, "e2e-problems");
    for n in 1..=3usize {
        p.check("e2e", "p1", "db", "critical");
        wait_for(&format!("incident {n} open"), WAIT, || {
            let open: Vec<Value> = s
                .incidents_of("p1")
                .into_iter()
                .filter(|i| i["state"] == "open")
                .collect();
            (s.incidents_of("p1").len() == n && open.len() == 1).then_some(())
        });
        if n < 3 {
            p.check("e2e", "p1", "db", "ok");
            wait_for(&format!("incident {n} closed"), WAIT, || {
                s.incidents_of("p1")
                    .iter()
                    .all(|i| i["state"] == "closed")
                    .then_some(())
            });
        }
    }
    let problems = wait_for("a problem record", WAIT, || {
        let p = s.api.list("/api/v1/problems?state=open");
        (!p.is_empty()).then_some(p)
    });
    assert_eq!(problems.len(), 1, "{problems:?}");
    let number = problems[0]["number"].as_str().expect("number").to_string();
    assert!(number.starts_with("PRB-"), "{number}");
    assert_eq!(problems[0]["incident_count"], 3);
    let detail = s.api.get(&format!("/api/v1/problems/{number}"));
    assert_eq!(
        detail["incidents"].as_array().map(Vec::len),
        Some(3),
        "{detail}"
    );
    let table = s.tocsin_ok(&["problems"]);
    assert!(table.contains(&number), "{table}");
    let out = s.tocsin_ok(&[
        "problem",
        &number,
        "known-error",
        "--workaround",
        "restart the db",
    ]);
    assert!(
        out.contains("known_error") && out.contains("restart the db"),
        "{out}"
    );
    assert_eq!(s.api.list("/api/v1/problems?state=known_error").len(), 1);
    let incident = s.api.get(&format!(
        "/api/v1/incidents/{}",
        s.incidents_of("p1")[0]["id"]
    ));
    assert_eq!(incident["problem"]["number"], number.as_str(), "{incident}");
    s.stop();
}
