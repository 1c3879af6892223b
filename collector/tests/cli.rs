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
