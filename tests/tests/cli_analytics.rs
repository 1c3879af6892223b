//! The `tocsin` CLI's analytics, SQL query, CSV output, shell completions and cli.toml against
//! a real collector (tokens required, also on loopback): the figures as a table and as JSON,
//! a query as CSV with RFC 4180 quoting, a refused query's exit code, and settings taken from
//! `$XDG_CONFIG_HOME/tocsin/cli.toml` with flag > environment > file precedence.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tocsin_tests::write_file as write;
use tocsin_tests::{
    Broker, Collector, CollectorOptions, bin, free_port, start_collector, wait_for,
};

const WAIT: Duration = Duration::from_secs(40);
const OPERATOR: &str = "cli-e2e-operator-token";
const VIEWER: &str = "cli-e2e-viewer-token";
const RULES: &str = "[[rule]]\nname = \"check_critical\"\ncheck = \"*\"\nseverity = \"critical\"\n\
                     category = \"software\"\nsummary = \"{{node}}: {{check}}\"\n";

/// `tocsin` with a clean environment: no settings from the caller's shell or home directory;
/// `HOME` is an empty folder so no real cli.toml is read.
fn tocsin(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("tocsin"));
    cmd.args(args)
        .env("HOME", home)
        .env("USER", "e2e-user")
        .env_remove("XDG_CONFIG_HOME");
    for var in [
        "TOCSIN_API",
        "TOCSIN_TOKEN",
        "TOCSIN_TOKEN_FILE",
        "TOCSIN_CONFIG",
        "TOCSIN_ACTOR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tocsin")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Must succeed; its stdout.
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn analytics_query_csv_completions_and_cli_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_mosquitto, broker) = Broker::mosquitto_or_embedded(dir.path());
    let options = CollectorOptions {
        operator_token: Some(OPERATOR),
        viewer_token: Some(VIEWER),
        open_on_loopback: Some(false),
        ..CollectorOptions::new("collector-cli-analytics", RULES)
    };
    let Collector {
        proc: mut collector,
        api,
        ..
    } = start_collector(dir.path(), broker, &options, WAIT);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let base = api.base.clone();
    let op = |args: &[&str]| {
        let mut all = vec!["--api", base.as_str()];
        all.extend_from_slice(args);
        tocsin(&home, &all, &[("TOCSIN_TOKEN", OPERATOR)])
    };
    let view = |args: &[&str]| {
        let mut all = vec!["--api", base.as_str()];
        all.extend_from_slice(args);
        tocsin(&home, &all, &[("TOCSIN_TOKEN", VIEWER)])
    };

    // Two tickets, the first with a summary that needs CSV quoting; one acknowledged.
    let mut numbers = Vec::new();
    for summary in ["disk full, \"urgent\"", "printer jam"] {
        let out = ok(
            op(&[
                "--json",
                "ticket",
                "new",
                "--summary",
                summary,
                "--reporter",
                "Ann",
                "--impact",
                "medium",
                "--urgency",
                "high",
            ]),
            "ticket new",
        );
        let t: Value = serde_json::from_str(&out).expect("ticket JSON");
        numbers.push(t["number"].as_str().expect("number").to_string());
    }
    ok(op(&["ticket", "ack", &numbers[0]]), "ticket ack");

    // analytics --json: the API's answer as is.
    let out = ok(view(&["analytics", "--json"]), "analytics --json");
    let v: Value = serde_json::from_str(&out).expect("analytics JSON");
    assert_eq!(v["group_by"], "priority", "{v}");
    assert_eq!(v["totals"]["tickets"], 2, "{v}");
    assert_eq!(v["totals"]["acknowledged"], 1, "{v}");
    assert!(v["totals"]["mtta_ms"].is_number(), "{v}");
    assert!(v["now"]["open_tickets"].is_number(), "{v}");

    // analytics: the same figures as a table, totals first, then the groups, then "now".
    let t = ok(view(&["analytics"]), "analytics");
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("From ") && lines[0].ends_with("by priority"),
        "{t}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PRIORITY") && l.contains("MTTA")),
        "{t}"
    );
    let total: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("no TOTAL row:\n{t}"))
        .split_whitespace()
        .collect();
    for (i, key) in ["incidents", "tickets", "acknowledged", "resolved"]
        .iter()
        .enumerate()
    {
        assert_eq!(total[i + 1], v["totals"][key].to_string(), "{key}: {t}");
    }
    for g in v["groups"].as_array().expect("groups") {
        let key = g["key"].as_str().expect("key");
        assert!(lines.iter().any(|l| l.starts_with(key)), "group {key}: {t}");
    }
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("Now: ") && l.contains("open tickets")),
        "{t}"
    );

    // analytics --by none --csv: the totals as one CSV row.
    let csv = ok(
        view(&["analytics", "--by", "none", "--csv"]),
        "analytics csv",
    );
    let rows: Vec<&str> = csv.split("\r\n").collect();
    assert!(
        rows[0].starts_with("key,incidents,tickets,acknowledged"),
        "{csv:?}"
    );
    assert!(rows[1].starts_with("all,"), "{csv:?}");

    // query --csv: RFC 4180, a header row, quotes doubled, fields with , " or newline quoted.
    let out = ok(
        view(&[
            "query",
            "SELECT number, summary, 'two' || chr(10) || 'lines' AS note, CAST(NULL AS VARCHAR) AS nothing \
             FROM tickets ORDER BY number",
            "--csv",
        ]),
        "query --csv",
    );
    assert_eq!(
        out,
        format!(
            "number,summary,note,nothing\r\n\
             {},\"disk full, \"\"urgent\"\"\",\"two\nlines\",\r\n\
             {},printer jam,\"two\nlines\",\r\n",
            numbers[0], numbers[1]
        )
    );
    // As a table, with the truncation noted.
    let out = ok(
        view(&[
            "query",
            "SELECT number FROM tickets ORDER BY number",
            "--limit",
            "1",
        ]),
        "query --limit 1",
    );
    assert!(out.starts_with("number\n"), "{out}");
    assert!(
        out.contains(&numbers[0]) && !out.contains(&numbers[1]),
        "{out}"
    );
    assert!(out.contains("truncated"), "{out}");
    // The SQL from standard input.
    let mut child = Command::new(bin("tocsin"))
        .args(["--api", &base, "query", "-", "--json"])
        .env("HOME", &home)
        .env("TOCSIN_TOKEN", VIEWER)
        .env_remove("TOCSIN_API")
        .env_remove("TOCSIN_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tocsin");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"SELECT count(*) AS n FROM tickets")
            .expect("write sql");
    }
    let out = ok(child.wait_with_output().expect("wait"), "query -");
    let v: Value = serde_json::from_str(&out).expect("query JSON");
    assert_eq!(v["rows"][0][0], 2, "{v}");

    // A refused query: the API's one-line reason, exit code 7; an SQL error too.
    for sql in [
        "COPY tickets TO '/tmp/tocsin-e2e-copy.csv'",
        "SELECT * FROM no_such_table",
    ] {
        let out = view(&["query", sql]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{sql}: {err}");
        assert!(
            err.starts_with("error: refused: ") || err.starts_with("error: the query failed: "),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(!Path::new("/tmp/tocsin-e2e-copy.csv").exists());

    // --json with --csv is a usage error; so is --csv on a command without a table, before it acts.
    let out = view(&["analytics", "--json", "--csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = op(&["ticket", "ack", &numbers[1], "--csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = ok(view(&["--json", "ticket", &numbers[1]]), "ticket");
    let t: Value = serde_json::from_str(&out).expect("ticket JSON");
    assert_eq!(t["state"], "new", "the refused --csv ack must not act: {t}");
    // The lists take --csv too.
    let out = ok(view(&["tickets", "--csv"]), "tickets --csv");
    assert!(out.starts_with("ticket,state,prio,"), "{out:?}");
    assert_eq!(out.matches("\r\n").count(), 3, "{out:?}");

    // Shell completions, without any collector settings.
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(tocsin(&home, &["completions", shell], &[]), shell);
        assert!(
            out.contains("analytics") && out.contains("query"),
            "{shell}"
        );
    }

    // cli.toml in $XDG_CONFIG_HOME: the API address, a token file next to it, the actor.
    let xdg = dir.path().join("xdg");
    write(&xdg.join("tocsin/operator.token"), &format!("{OPERATOR}\n"));
    write(
        &xdg.join("tocsin/cli.toml"),
        &format!(
            "# tocsin CLI settings\napi = \"{base}\"\ntoken_file = \"operator.token\"\nactor = \"cfg-operator\"\n"
        ),
    );
    let xdg_env = ("XDG_CONFIG_HOME", xdg.to_str().expect("utf-8 path"));
    let out = ok(
        tocsin(&home, &["analytics", "--json"], &[xdg_env]),
        "analytics from cli.toml",
    );
    let v: Value = serde_json::from_str(&out).expect("analytics JSON");
    assert_eq!(v["totals"]["tickets"], 2, "{v}");
    ok(
        tocsin(
            &home,
            &["ticket", "comment", &numbers[1], "checked", "the", "disk"],
            &[xdg_env],
        ),
        "comment from cli.toml",
    );
    let out = ok(
        tocsin(&home, &["--json", "ticket", &numbers[1]], &[xdg_env]),
        "ticket",
    );
    let t: Value = serde_json::from_str(&out).expect("ticket JSON");
    let comment = t["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["message"] == "checked the disk"))
        .cloned()
        .unwrap_or_else(|| panic!("no comment: {t}"));
    // The API adds how the writer authenticated: "cfg-operator via operator token".
    assert!(
        comment["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("cfg-operator")),
        "{comment}"
    );
    // The environment beats the file, and a flag beats the environment.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = tocsin(&home, &["analytics"], &[xdg_env, ("TOCSIN_API", &dead)]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&dead), "{}", text(&out.stderr));
    ok(
        tocsin(
            &home,
            &["--api", &base, "analytics"],
            &[xdg_env, ("TOCSIN_API", &dead)],
        ),
        "--api beats TOCSIN_API",
    );
    // --config / TOCSIN_CONFIG name another file; a missing or bad one is a usage error.
    let other = dir.path().join("other.toml");
    write(&other, &format!("api = \"{dead}\"\n"));
    let other_s = other.to_str().expect("utf-8 path");
    let out = tocsin(&home, &["--config", other_s, "nodes"], &[xdg_env]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = tocsin(&home, &["nodes"], &[xdg_env, ("TOCSIN_CONFIG", other_s)]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let missing = dir.path().join("missing.toml");
    let out = tocsin(
        &home,
        &["--config", missing.to_str().expect("utf-8 path"), "nodes"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    write(&other, &format!("api = \"{base}\"\nsecret = \"x\"\n"));
    let out = tocsin(&home, &["--config", other_s, "nodes"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!("error: {other_s}:2: unknown field `secret`")),
        "{err}"
    );
    // Without a token the API says 401: exit 5.
    write(&other, &format!("api = \"{base}\"\n"));
    let out = tocsin(&home, &["--config", other_s, "nodes"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));

    wait_for("collector still up", WAIT, || {
        collector.alive().then_some(())
    });
    assert_eq!(
        collector.terminate(),
        Some(0),
        "collector log:\n{}",
        collector.log_text()
    );
}
