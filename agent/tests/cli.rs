//! The `tocsin-agent` binary as an admin meets it: check-config, print-config, once, SIGHUP reload, and bad neighbours that must not stop the report.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, subscribe};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tocsin_protocol::{CheckStatus, NodeKind, Report, decode_report};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin-agent");

fn agent(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run tocsin-agent")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_print_config_and_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let closed = common::free_port();
    std::fs::write(
        &config,
        format!(
            "site = \"cli\"\nnode = \"box\"\n[spool]\ndir = \"{}\"\n\
             [[check]]\nname = \"db\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{closed}\"\n\
             [[check]]\nname = \"plugin\"\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"echo WARNING - almost; exit 1\"]\n",
            dir.path().join("spool").display()
        ),
    )
    .expect("write config");

    let out = agent(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok (site cli, node box"),
        "{}",
        text(&out.stdout)
    );

    // The effective config: every default filled in, and it reads back.
    let out = agent(&["print-config"], &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for want in [
        "interval = \"10s\"",
        "max_size = \"64MiB\"",
        "url = \"mqtt://127.0.0.1:1883\"",
        "timeout = \"5s\"",
    ] {
        assert!(printed.contains(want), "missing {want} in:\n{printed}");
    }
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &printed).expect("write");
    assert!(agent(&["check-config"], &again).status.success());

    // once: a full report on stdout, nothing published, seq not consumed.
    let started = Instant::now();
    let out = agent(&["once"], &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(8));
    let report: Report = serde_json::from_slice(&out.stdout).expect("a report as JSON");
    report.validate().expect("valid report");
    assert_eq!(
        (report.site.as_str(), report.node.as_str(), report.seq),
        ("cli", "box", 1)
    );
    let status = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.status, c.output.clone()))
    };
    assert_eq!(status("tcp:db").map(|s| s.0), Some(CheckStatus::Critical));
    assert_eq!(
        status("command:plugin"),
        Some((CheckStatus::Warning, "WARNING - almost".to_string()))
    );
    assert!(report.metrics.iter().any(|m| m.name == "mem.used_pct"));
    assert!(!dir.path().join("spool/state.json").exists());

    // Bad configs: one line naming the file and the problem, exit code 2.
    for (body, want) in [
        (
            "site = \"cli\"\nintervall = \"5s\"\n",
            "line 2: unknown field `intervall`",
        ),
        (
            "site = \"cli\"\ninterval = \"5 parsecs\"\n",
            "line 2: invalid duration",
        ),
        (
            "site = \"cli\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"h:1\"\nbody_contains = \"ok\"\n",
            "key body_contains applies only to http checks",
        ),
    ] {
        std::fs::write(&config, body).expect("write");
        let out = agent(&["check-config"], &config);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&config.display().to_string()) && err.contains(want),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }

    // check-config also reads the password file.
    std::fs::write(
        &config,
        "site = \"cli\"\n[broker]\nusername = \"a\"\npassword_file = \"/nonexistent/pw\"\n",
    )
    .expect("write");
    let out = agent(&["check-config"], &config);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/pw"),
        "{}",
        text(&out.stderr)
    );
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).expect("signal");
}

fn start(config: &Path, log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log");
    Running(
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start agent"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_checks_and_devices_and_keeps_the_old_config_when_the_new_is_bad() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let base = format!(
        "site = \"hup\"\nnode = \"box\"\ninterval = \"1s\"\n[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = \"{}\"\n",
        broker.port,
        dir.path().join("spool").display()
    );
    let check = |name: &str| {
        format!(
            "[[check]]\nname = \"{name}\"\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"echo OK {name}\"]\ntimeout = \"1s\"\n"
        )
    };
    std::fs::write(&config, format!("{base}{}", check("one"))).expect("write");
    let mut live = subscribe(broker.port, "hup-live", "tocsin/v1/hup/#").await;
    let agent = start(&config, &dir.path().join("agent.log"));
    let topic = "tocsin/v1/hup/box/report";
    let names = |r: &Report| r.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let first = live.next_report(topic).await;
    assert_eq!(names(&first), vec!["command:one"]);

    // Add a check to the file and a device (ICMP to loopback) in a drop-in, then SIGHUP.
    std::fs::write(&config, format!("{base}{}{}", check("one"), check("two"))).expect("write");
    std::fs::create_dir(dir.path().join("agent.d")).expect("agent.d");
    std::fs::write(
        dir.path().join("agent.d/50-devices.toml"),
        "[[device]]\nname = \"sw-1\"\naddress = \"127.0.0.1\"\nicmp_count = 1\ntimeout = \"500ms\"\n",
    )
    .expect("write");
    signal(&agent.0, Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut saw_two, mut saw_device) = (false, false);
    while !(saw_two && saw_device) {
        assert!(
            Instant::now() < deadline,
            "reload not seen (two {saw_two}, device {saw_device})"
        );
        let (t, _, payload) = tokio::time::timeout(Duration::from_secs(10), live.rx.recv())
            .await
            .expect("messages keep coming")
            .expect("subscriber alive");
        if t == topic {
            let r = decode_report(&payload).expect("report");
            saw_two |= names(&r) == vec!["command:one", "command:two"];
        } else if t == "tocsin/v1/hup/sw-1/report" {
            let r = decode_report(&payload).expect("device report");
            assert_eq!((r.kind, r.via.as_deref()), (NodeKind::Network, Some("box")));
            saw_device = true;
        }
    }

    // A broken file: the reload is refused, the agent keeps running the last good config.
    std::fs::write(&config, format!("{base}interval = \"soon\"\n")).expect("write");
    signal(&agent.0, Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while live.rx.try_recv().is_ok() {}
    let after = live.next_report(topic).await;
    assert_eq!(names(&after), vec!["command:one", "command:two"]);

    let mut agent = agent;
    signal(&agent.0, Signal::SIGTERM);
    let status = agent.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("agent.log")).expect("log");
    assert!(
        log.contains("reload failed, keeping the running configuration"),
        "{log}"
    );
}

#[test]
fn drop_ins_are_merged_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "site = \"default\"\nnode = \"box\"\n[spool]\ndir = \"{}\"\n",
            dir.path().join("spool").display()
        ),
    )
    .expect("write config");
    let drop_ins = dir.path().join("agent.d");
    std::fs::create_dir(&drop_ins).expect("agent.d");
    std::fs::write(
        drop_ins.join("10-enrol.toml"),
        "site = \"dc7\"\n[broker]\nurl = \"mqtt://broker.example:1884\"\n",
    )
    .expect("write");
    std::fs::write(
        drop_ins.join("50-checks.toml"),
        "[[check]]\nname = \"db\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:5432\"\n",
    )
    .expect("write");
    std::fs::write(drop_ins.join("10-enrol.toml.dpkg-old"), "junk = = junk").expect("write");

    let out = agent(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok (site dc7, node box, broker mqtt://broker.example:1884")
            && stdout.contains("1 checks")
            && stdout.contains(&format!("(+2 drop-ins in {})", drop_ins.display())),
        "{stdout}"
    );
    let out = agent(&["print-config"], &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for want in [
        "site = \"dc7\"",
        "url = \"mqtt://broker.example:1884\"",
        "target = \"127.0.0.1:5432\"",
        "50-checks.toml",
    ] {
        assert!(printed.contains(want), "missing {want} in:\n{printed}");
    }

    // An error in a drop-in names it, with its line; exit code 2.
    std::fs::write(drop_ins.join("60-bad.toml"), "\n[broker]\nport = 1883\n").expect("write");
    let out = agent(&["check-config"], &config);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: line 3: unknown field `port`",
            drop_ins.join("60-bad.toml").display()
        )),
        "{stderr}"
    );
}

#[test]
fn world_readable_credentials_stop_every_command_with_exit_code_2() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let password = dir.path().join("mqtt-password");
    std::fs::write(&password, "s3cret\n").expect("write");
    let chmod = |mode: u32| {
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    std::fs::write(
        &config,
        format!(
            "site = \"cli\"\nnode = \"box\"\n[broker]\nurl = \"mqtt://127.0.0.1:{}\"\nusername = \"box\"\npassword_file = \"{}\"\n[spool]\ndir = \"{}\"\n",
            common::free_port(),
            password.display(),
            dir.path().join("spool").display()
        ),
    )
    .expect("write config");
    chmod(0o644);
    for command in ["run", "once", "check-config"] {
        let out = agent(&[command], &config);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{command}: {stderr}");
        assert!(
            errors[0].contains(&format!(
                "{}: readable by every user (mode 0644); the agent refuses world-readable credentials: chmod 0640",
                password.display()
            )),
            "{command}: {stderr}"
        );
    }
    for mode in [0o640, 0o600] {
        chmod(mode);
        let out = agent(&["check-config"], &config);
        assert!(out.status.success(), "{mode:o}: {}", text(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_neighbours_never_stop_the_report() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The spool "directory" would live below a regular file: it cannot be created.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").expect("write");
    let closed_udp = common::free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "site = \"bad\"\nnode = \"box\"\ninterval = \"1s\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             [spool]\ndir = \"{spool}\"\n\
             [[check]]\nname = \"hangs\"\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 1000\"]\ninterval = \"3s\"\ntimeout = \"2s\"\n\
             [[check]]\nname = \"chatty\"\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"head -c 20000000 /dev/zero | tr '\\\\0' x; echo; exit 2\"]\ntimeout = \"1s\"\n\
             [[check]]\nname = \"fine\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n\
             [[device]]\nname = \"dead-sw\"\naddress = \"127.0.0.1\"\nicmp = false\nsnmp_community = \"public\"\nsnmp_port = {closed_udp}\ntimeout = \"300ms\"\n",
            port = broker.port,
            spool = blocker.join("spool").display(),
        ),
    )
    .expect("write");
    let mut live = subscribe(broker.port, "bad-live", "tocsin/v1/bad/#").await;
    let agent = start(&config, &dir.path().join("agent.log"));
    let started = Instant::now();

    let mut host = None;
    let mut device = None;
    while host.is_none() || device.is_none() {
        let (t, _, payload) = tokio::time::timeout(Duration::from_secs(15), live.rx.recv())
            .await
            .expect("reports keep coming")
            .expect("subscriber alive");
        if t == "tocsin/v1/bad/box/report" {
            let r = decode_report(&payload).expect("report");
            // Wait for a report made after the hanging plugin's first timeout.
            if r.checks.iter().any(|c| c.name == "command:hangs") {
                host = Some(r);
            }
        } else if t == "tocsin/v1/bad/dead-sw/report" {
            device = Some(decode_report(&payload).expect("device report"));
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let host = host.expect("host report");
    let check = |name: &str| {
        host.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} missing: {:?}", host.checks))
    };
    assert_eq!(check("tcp:fine").status, CheckStatus::Ok);
    assert_eq!(check("command:hangs").status, CheckStatus::Critical);
    assert!(check("command:hangs").output.contains("timed out after 2s"));
    assert_eq!(check("command:chatty").status, CheckStatus::Critical);
    assert!(check("command:chatty").output.len() <= 512);
    assert!(host.metrics.iter().any(|m| m.name == "cpu.usage_pct"));
    let metric = |name: &str| {
        host.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    };
    assert!(metric("agent.spool_errors_count").is_some_and(|v| v >= 1.0));
    let device = device.expect("device report");
    let reach = device
        .checks
        .iter()
        .find(|c| c.name == "reachability")
        .expect("reachability check");
    assert_eq!(reach.status, CheckStatus::Critical, "{}", reach.output);
    drop(agent);
}
