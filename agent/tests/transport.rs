//! Transport security against a real mosquitto: TLS with a test CA, password file, client certificates, refused credentials.
//!
//! Certificates come from the `openssl` command line and the password file from
//! `mosquitto_passwd`, both generated per test run in a temporary directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Broker, free_port, start_agent, subscribe};
use tocsin_agent::AgentConfig;
use tocsin_protocol::NodeState;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn make_pki(dir: &Path) {
    let openssl = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir);
        run(&mut cmd);
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=tocsin test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    // rustls takes X.509 v3 certificates only: give both an extension.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, cn, ext) in [
        ("server", "127.0.0.1", Some("server.ext")),
        ("client", "agent-1", Some("client.ext")),
    ] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Some(ext) = ext {
            args.push("-extfile".into());
            args.push(ext.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&args);
    }
    // A second CA the broker does not know, for the "untrusted" case.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=other CA",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
    ]);
    // The agent refuses credentials every user may open.
    for key in ["client.key", "other.key"] {
        chmod(&dir.join(key), 0o600);
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The agent's password file, mode 0640 as the agent requires.
fn write_password(b: &SecureBroker, password: &str) {
    let path = b.files.join("agent-password");
    std::fs::write(&path, format!("{password}\n")).expect("password file");
    chmod(&path, 0o640);
}

struct SecureBroker {
    broker: Broker,
    /// Plain listener for the test's own subscriber.
    plain: u16,
    /// TLS + password.
    tls: u16,
    /// TLS + password + client certificate required.
    mtls: u16,
    files: PathBuf,
}

fn start_secure_broker() -> Option<SecureBroker> {
    if !Broker::available() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().to_path_buf();
    make_pki(&files);
    run(Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(files.join("passwd"))
        .args(["agent", "s3cret"]));
    let (plain, tls, mtls) = (free_port(), free_port(), free_port());
    let f = |name: &str| files.join(name).display().to_string();
    let conf = format!(
        "user root\nper_listener_settings true\npersistence false\nlog_dest stderr\n\
         listener {plain} 127.0.0.1\nallow_anonymous true\n\
         listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n\
         listener {mtls} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\nrequire_certificate true\n",
        pw = f("passwd"),
        ca = f("ca.crt"),
        crt = f("server.crt"),
        key = f("server.key"),
    );
    let broker = Broker::start_conf(plain, &conf, dir)?;
    // The TLS listeners open with the plain one; give them a moment anyway.
    for port in [tls, mtls] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "TLS listener {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Some(SecureBroker {
        broker,
        plain,
        tls,
        mtls,
        files,
    })
}

fn agent_config(b: &SecureBroker, node: &str, port: u16, spool: &Path) -> AgentConfig {
    let mut toml = format!(
        "site = \"sec\"\nnode = \"{node}\"\ninterval = \"1s\"\n[broker]\nurl = \"mqtts://127.0.0.1:{port}\"\n\
         client_id = \"agent-{node}\"\nusername = \"agent\"\npassword_file = \"{pw}\"\nca_file = \"{ca}\"\n",
        pw = b.files.join("agent-password").display(),
        ca = b.files.join("ca.crt").display(),
    );
    if port == b.mtls {
        toml.push_str(&format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            b.files.join("client.crt").display(),
            b.files.join("client.key").display()
        ));
    }
    toml.push_str(&format!("[spool]\ndir = \"{}\"\n", spool.display()));
    AgentConfig::from_toml_str(&toml).expect("valid agent config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_password_and_client_certificate() {
    let Some(b) = start_secure_broker() else {
        return;
    };
    write_password(&b, "s3cret");
    let spool = tempfile::tempdir().expect("spool");
    let mut live = subscribe(b.plain, "sec-live", "tocsin/v1/sec/#").await;

    // TLS + username/password.
    let config = agent_config(&b, "tls-pw", b.tls, &spool.path().join("a"));
    let agent = start_agent(config.clone());
    let (_, birth) = live.next_status(&config.status_topic()).await;
    assert_eq!(birth.state, NodeState::Online);
    let report = live.next_report(&config.report_topic()).await;
    assert_eq!(report.node, "tls-pw");
    agent.shutdown().await;
    let (_, stopped) = live.next_status(&config.status_topic()).await;
    assert_eq!(stopped.state, NodeState::Stopped);

    // TLS + client certificate + password on the listener that requires a certificate.
    let config = agent_config(&b, "mtls", b.mtls, &spool.path().join("b"));
    let agent = start_agent(config.clone());
    let (_, birth) = live.next_status(&config.status_topic()).await;
    assert_eq!(birth.state, NodeState::Online);
    agent.shutdown().await;
    drop(b.broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_untrusted_ca_keep_the_agent_running_and_reports_spooled() {
    let Some(b) = start_secure_broker() else {
        return;
    };
    write_password(&b, "wrong");
    let spool = tempfile::tempdir().expect("spool");
    let mut live = subscribe(b.plain, "sec-live2", "tocsin/v1/sec/#").await;

    // Wrong password: nothing published, the agent keeps running and spools.
    let config = agent_config(&b, "badpw", b.tls, spool.path());
    let agent = start_agent(config.clone());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!agent.handle.is_finished(), "the agent keeps running");
    assert!(
        live.rx.try_recv().is_err(),
        "nothing may be published with refused credentials"
    );
    let queued = std::fs::read_dir(spool.path().join("queue"))
        .expect("queue dir")
        .count();
    assert!(queued >= 2, "reports are spooled meanwhile ({queued})");
    agent.shutdown().await;

    // A CA that did not sign the broker's certificate: refused as well.
    write_password(&b, "s3cret");
    let mut config = agent_config(&b, "badca", b.tls, &spool.path().join("c"));
    config.broker.ca_file = Some(b.files.join("other.crt"));
    let agent = start_agent(config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!agent.handle.is_finished());
    assert!(
        live.rx.try_recv().is_err(),
        "no publish over an untrusted TLS session"
    );
    agent.shutdown().await;

    // A missing CA file is a configuration error at start, named clearly.
    let mut config = agent_config(&b, "noca", b.tls, &spool.path().join("d"));
    config.broker.ca_file = Some(b.files.join("missing-ca.crt"));
    let e = tocsin_agent::run(config, std::future::pending())
        .await
        .expect_err("missing CA file");
    assert!(
        e.to_string().contains("missing-ca.crt") && e.to_string().contains("cannot read"),
        "{e}"
    );

    // A password file every user may read: refused at start, before any connection.
    chmod(&b.files.join("agent-password"), 0o644);
    let config = agent_config(&b, "openpw", b.tls, &spool.path().join("e"));
    let e = tocsin_agent::run(config, std::future::pending())
        .await
        .expect_err("world-readable password file");
    assert!(
        matches!(e, tocsin_agent::AgentError::ExposedCredentials(_))
            && e.to_string()
                .contains("agent-password: readable by every user (mode 0644)"),
        "{e}"
    );
}
