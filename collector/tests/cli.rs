//! The `tocsin` and `tocsin-collector` binaries as scripts see them: exit codes and one-line errors.

use std::process::Command;

#[test]
fn tocsin_cli_reports_an_unreachable_collector_with_exit_code_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["--api", &format!("http://127.0.0.1:{port}"), "tickets"])
        .output()
        .expect("run tocsin");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot reach the collector"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
}

#[test]
fn collector_check_config_accepts_the_shipped_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("collector.toml");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    std::fs::write(&cfg, format!("[rules]\ndir = \"{rules}\"\n")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin-collector"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tocsin-collector");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config ok:"));
}

#[test]
fn rules_check_passes_the_shipped_rules() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin-collector"))
        .args(["rules", "check", rules])
        .output()
        .expect("run tocsin-collector");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split(' ').collect();
    assert!(
        matches!(words.as_slice(), [n, "rules", "in", m, "files:", "ok"]
            if n.parse::<u32>().is_ok_and(|n| n > 0) && m.parse::<u32>().is_ok()),
        "{stdout}"
    );
    assert!(stdout.contains("policy.toml: ok"), "{stdout}");
}

/// `tocsin-collector rules check DIR`: its exit code and what it printed.
fn rules_check(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin-collector"))
        .args(["rules", "check"])
        .arg(dir)
        .output()
        .expect("run tocsin-collector");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout)
}

#[test]
fn rules_check_prints_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.toml"),
        "[[rule]]\nname = \"good\"\ncheck = \"*\"\nseverity = \"critical\"\ncategory = \"software\"\nsummary = \"x\"\n\n\
         [[rule]]\nname = \"bad_expr\"\nexpr = \"cpu.usage_pct >\"\nseverity = \"warning\"\ncategory = \"hardware\"\nsummary = \"x\"\n",
    )
    .expect("a.toml");
    std::fs::write(
        dir.path().join("b.toml"),
        "[[rule]]\nname = \"bad_severity\"\ncheck = \"*\"\nseverity = \"huge\"\ncategory = \"software\"\nsummary = \"x\"\n",
    )
    .expect("b.toml");
    let (code, stdout) = rules_check(dir.path());
    assert_eq!(code, Some(1), "{stdout}");
    let has_file_line = |name: &str| {
        stdout.lines().any(|l| {
            l.match_indices(&format!("{name}:")).any(|(i, m)| {
                let rest = &l[i + m.len()..];
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                digits > 0 && rest[digits..].starts_with(':')
            })
        })
    };
    assert!(has_file_line("a.toml"), "a.toml:<line>: in {stdout}");
    assert!(has_file_line("b.toml"), "b.toml:<line>: in {stdout}");
    assert!(!stdout.contains("ok"), "{stdout}");

    // Fixed: the summary.
    std::fs::remove_file(dir.path().join("b.toml")).expect("rm");
    std::fs::write(
        dir.path().join("a.toml"),
        "[[rule]]\nname = \"good\"\ncheck = \"*\"\nseverity = \"critical\"\ncategory = \"software\"\nsummary = \"x\"\n",
    )
    .expect("a.toml");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[incident]\nverify_for = \"soon\"\n",
    )
    .expect("policy");
    let (code, stdout) = rules_check(dir.path());
    assert_eq!(code, Some(1), "a bad policy.toml fails too: {stdout}");
    assert!(stdout.contains("policy.toml"), "{stdout}");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[incident]\nverify_for = \"5m\"\n",
    )
    .expect("policy");
    let (code, stdout) = rules_check(dir.path());
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("1 rules in 1 files: ok"), "{stdout}");
}

#[test]
fn tocsin_cli_refuses_an_incomplete_maintenance_window_before_sending() {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args([
            "--api",
            "http://127.0.0.1:9",
            "maintenance",
            "add",
            "w",
            "--for",
            "2h",
            "--reason",
            "r",
        ])
        .output()
        .expect("run tocsin");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node"));
}
