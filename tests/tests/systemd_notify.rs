//! systemd `Type=notify` readiness: the real binaries tell the notify socket when they are
//! ready, reloading (SIGHUP) and stopping (SIGTERM), as packaging/systemd's units expect.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tocsin_tests::{
    Broker, Collector, CollectorOptions, Proc, bin, free_port, start_collector, write_file,
};

const WAIT: Duration = Duration::from_secs(30);

/// The socket systemd would hold: the service's messages arrive as datagrams.
fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(WAIT))
        .expect("read timeout on the notify socket");
    (socket, path.display().to_string())
}

/// The next message, as `KEY=value` lines.
fn next_message(socket: &UnixDatagram, waiting_for: &str) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notify message while waiting for {waiting_for}: {e}"));
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_string)
        .collect()
}

fn has(message: &[String], line: &str) -> bool {
    message.iter().any(|l| l == line)
}

fn status(message: &[String]) -> &str {
    message
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_default()
}

/// The next message that is more than a status update (the agent's status line follows its
/// broker connection, so one may come at any time).
fn next_state(socket: &UnixDatagram, waiting_for: &str) -> Vec<String> {
    loop {
        let m = next_message(socket, waiting_for);
        if !m.iter().all(|l| l.starts_with("STATUS=")) {
            return m;
        }
    }
}

/// READY, then RELOADING + READY on SIGHUP, then STOPPING on SIGTERM and a clean exit.
/// SIGHUP is sent as soon as READY=1 arrives: the handler must already be there.
fn reload_and_stop(proc: &mut Proc, socket: &UnixDatagram) {
    proc.signal(Signal::SIGHUP);
    let reloading = next_state(socket, "RELOADING=1");
    assert!(has(&reloading, "RELOADING=1"), "{reloading:?}");
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING carries MONOTONIC_USEC for Type=notify-reload: {reloading:?}"
    );
    let ready = next_state(socket, "READY=1 after the reload");
    assert!(has(&ready, "READY=1"), "{ready:?}");
    assert_eq!(proc.terminate(), Some(0), "clean exit on SIGTERM");
    let stopping = next_state(socket, "STOPPING=1");
    assert!(has(&stopping, "STOPPING=1"), "{stopping:?}");
}

#[test]
fn agent_notifies_ready_reloading_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, socket_path) = notify_socket(dir.path());
    // No broker listens: the agent is ready anyway, it spools until one answers.
    let port = free_port();
    let config = dir.path().join("agent.toml");
    write_file(
        &config,
        &format!(
            "site = \"dc1\"\nnode = \"notify-01\"\ninterval = \"1s\"\n\
             [broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n[spool]\ndir = \"{}\"\n",
            dir.path().join("spool").display()
        ),
    );
    let mut cmd = Command::new(bin("tocsin-agent"));
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "info");
    let mut agent = Proc::spawn("agent", cmd, dir.path());
    let ready = next_message(&socket, "READY=1");
    assert!(has(&ready, "READY=1"), "{ready:?}");
    assert!(
        status(&ready).starts_with("dc1/notify-01: reporting every 1s to mqtt://127.0.0.1:"),
        "status line: {ready:?}"
    );
    reload_and_stop(&mut agent, &socket);
}

#[test]
fn collector_notifies_ready_once_the_api_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, socket_path) = notify_socket(dir.path());
    let broker = Broker::Embedded(free_port());
    let env = [("NOTIFY_SOCKET", socket_path.as_str())];
    let options = CollectorOptions {
        env: &env,
        ..CollectorOptions::new("collector-notify", tocsin_tests::CHECK_CRITICAL_RULE)
    };
    let Collector {
        proc: mut collector,
        api,
        ..
    } = start_collector(dir.path(), broker, &options, WAIT);
    let ready = next_message(&socket, "READY=1");
    assert!(has(&ready, "READY=1"), "{ready:?}");
    let line = status(&ready);
    assert!(
        line.starts_with(&format!("api {}", api.base)),
        "status names the API: {line}"
    );
    assert!(
        line.contains(&format!("broker mqtt://127.0.0.1:{}", broker.port())),
        "status names the broker: {line}"
    );
    reload_and_stop(&mut collector, &socket);
}
