//! The `tocsin-sim` command line: clear one-line errors for bad input (and, as an integration
//! test of this package, it makes `cargo test --workspace` build the binary the end-to-end
//! suite in `tests/` drives).

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin-sim"))
}

fn rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

#[test]
fn refuses_a_bad_broker_url_in_one_line() {
    let out = sim()
        .args(["run", "--broker", "tcp://127.0.0.1:1", "--rules"])
        .arg(rules_dir())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected mqtt://HOST[:PORT]"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn refuses_a_rule_pack_without_the_rules_its_failures_need() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("only.toml"),
        "[[rule]]\nname = \"x\"\nexpr = \"cpu.usage_pct > 99\"\nseverity = \"info\"\ncategory = \"software\"\nsummary = \"x\"\n",
    )
    .expect("write");
    let out = sim()
        .args(["run", "--duration", "1s", "--rules"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no rule \"filesystem_full\""), "{err}");
}

#[test]
fn count_gives_up_when_the_broker_is_not_there() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = sim()
        .args(["count", "--first-within", "2s", "--broker"])
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:"), "{err}");
}
