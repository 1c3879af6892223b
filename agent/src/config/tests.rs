//! Tests of the agent config: defaults, every bad input and its one-line error.

use super::*;

fn err(toml: &str) -> String {
    AgentConfig::from_toml_str(toml)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn defaults() {
    let c = AgentConfig::from_toml_str("site = \"dc1\"\nnode = \"web-01\"\n").expect("valid");
    assert_eq!(c.site, "dc1");
    assert_eq!(c.node, "web-01");
    assert_eq!(c.interval, Duration::from_secs(10));
    assert_eq!(c.interval_s(), 10);
    assert_eq!(c.topic_root, "tocsin");
    assert!(c.parents.is_empty() && c.labels.is_empty() && c.checks.is_empty());
    assert_eq!(c.broker.url.to_string(), DEFAULT_BROKER_URL);
    assert_eq!(c.broker.keep_alive, Duration::from_secs(30));
    assert_eq!(c.client_id(), "tocsin-agent-dc1-web-01");
    assert_eq!(c.spool.dir, PathBuf::from("/var/lib/tocsin/spool"));
    assert_eq!(
        c.state_path(),
        PathBuf::from("/var/lib/tocsin/spool/state.json")
    );
    assert_eq!(c, AgentConfig::new("dc1", "web-01"));
}

#[test]
fn node_defaults_to_the_hostname() {
    let c = AgentConfig::from_toml_str("site = \"dc1\"").expect("valid");
    let host = hostname().expect("this machine has a hostname");
    assert_eq!(c.node, host);
}

#[test]
fn full_example_parses() {
    let c = AgentConfig::from_toml_str(
        r#"
site = "dc1"
node = "web-01"
interval = "1m30s"
topic_root = "acme/mon"
parents = ["core-sw-1"]
labels = { criticality = "high", service = "payments" }
[broker]
url = "mqtt://broker.example:8883"
client_id = "web-01-agent"
username = "agent"
password_file = "/etc/tocsin/mqtt-password"
keep_alive = "45s"
[spool]
dir = "/tmp/spool"
[[check]]
name = "postgres"
kind = "tcp"
target = "127.0.0.1:5432"
[[check]]
name = "ssh"
kind = "tcp"
target = "[::1]:22"
timeout = "500ms"
"#,
    )
    .expect("valid");
    assert_eq!(c.interval, Duration::from_secs(90));
    assert_eq!(c.topic_root, "acme/mon");
    assert_eq!(c.parents, vec!["core-sw-1".to_string()]);
    assert_eq!(c.labels["service"], "payments");
    assert_eq!(c.broker.url.host, "broker.example");
    assert_eq!(c.broker.url.port, 8883);
    assert_eq!(c.client_id(), "web-01-agent");
    assert_eq!(c.broker.username.as_deref(), Some("agent"));
    assert_eq!(c.broker.keep_alive, Duration::from_secs(45));
    assert_eq!(c.checks.len(), 2);
    assert_eq!(c.checks[0].timeout, Duration::from_secs(5));
    assert_eq!(c.checks[0].report_name(), "tcp:postgres");
    assert_eq!(c.checks[1].timeout, Duration::from_millis(500));

    // What we write, we read back.
    let again = AgentConfig::from_toml_str(&c.to_toml_string()).expect("round trip");
    assert_eq!(again, c);
}

#[test]
fn default_check_timeout_never_exceeds_the_interval() {
    let c = AgentConfig::from_toml_str(
        "site = \"dc1\"\nnode = \"a\"\ninterval = \"2s\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"h:1\"",
    )
    .expect("valid");
    assert_eq!(c.checks[0].timeout, Duration::from_secs(2));
}

#[test]
fn every_bad_input_has_its_one_line_error() {
    let cases: &[(&str, &str)] = &[
        (
            "site = \"dc1\"\nnode = \"a\"\nintervall = \"5s\"\n",
            "config: line 3: unknown field `intervall`, expected one of",
        ),
        (
            "node = \"a\"",
            "config: site is not set; set site = \"...\"",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\ninterval = \"10x\"",
            "line 3: invalid duration \"10x\": unknown time unit \"x\"",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\ninterval = \"ten\"",
            "invalid duration \"ten\": expected number",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\ninterval = \"10\"",
            "invalid duration \"10\": time unit needed",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\ninterval = \"0s\"",
            "interval 0s must be between 1s and 1d",
        ),
        (
            "site = \"dc1\"\nnode = \"web 01\"",
            "node \"web 01\" must match",
        ),
        ("site = \"d/c\"\nnode = \"a\"", "site \"d/c\" must match"),
        (
            "site = \"dc1\"\nnode = \"a\"\nparents = [\"bad parent\"]",
            "invalid parents",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\nlabels = { \"bad key\" = \"x\" }",
            "invalid labels",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\nurl = \"mqtt://b\"\nca_file = \"/etc/ca.pem\"",
            "[broker] ca_file is set but url mqtt://b:1883 does not use TLS; use mqtts://",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\nurl = \"mqtts://b\"\ncert_file = \"/etc/c.pem\"",
            "[broker] cert_file and key_file must be set together",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\npassword_file = \"/etc/pw\"",
            "[broker] password_file is set without username",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[spool]\nmax_size = \"12 parsecs\"",
            "line 4: invalid size \"12 parsecs\": unknown unit",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[spool]\nmax_size = \"1KB\"",
            "[spool] max_size 1000B must be at least 64KiB",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\nurl = \"http://b\"",
            "unsupported scheme \"http\"",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\nurl = \"mqtt://b:99999\"",
            "port \"99999\" must be a number",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\nurl = \"b:1883\"",
            "must look like mqtt://host:port",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[broker]\nport = 1883",
            "unknown field `port`",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[[check]]\nname = \"x\"\nkind = \"toaster\"\ntarget = \"x\"",
            "unknown check kind \"toaster\" (supported: tcp, http",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"nocolon\"",
            "check \"tcp:x\": target \"nocolon\" must be host:port",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"h:1\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"h:2\"",
            "check \"tcp:x\" is defined twice",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"h:1\"\ntimeout = \"20s\"",
            "timeout 20s must be more than 0 and at most the interval (10s)",
        ),
        (
            "site = \"dc1\"\nnode = \"a\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\ntarget = \"h:1\"\ncolor = 1",
            "unknown field `color`",
        ),
        ("site = \"dc1\"\nnode = ", "config: line 2:"),
        ("site = 5\nnode = \"a\"", "line 1: invalid type"),
    ];
    for (toml, want) in cases {
        let got = err(toml);
        assert!(
            got.contains(want),
            "{toml:?}\n  got:  {got}\n  want: {want}"
        );
        assert!(!got.contains('\n'), "error is not one line: {got:?}");
    }
}

#[test]
fn embeds_in_other_documents() {
    #[derive(Deserialize)]
    struct Outer {
        agent: AgentConfig,
    }
    let outer: Outer = toml::from_str("[agent]\nsite = \"dc1\"\nnode = \"a\"\n").expect("embedded");
    assert_eq!(outer.agent, AgentConfig::new("dc1", "a"));
    let bad = toml::from_str::<Outer>("[agent]\nsite = \"dc 1\"\nnode = \"a\"\n");
    assert!(bad.is_err());
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    let e = AgentConfig::load(&path).expect_err("missing");
    assert_eq!(e.to_string(), format!("{}: no such file", path.display()));
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "site = \"dc1\"\nnode = \"a\"\nintervall = \"5s\"\n").expect("write");
    let e = AgentConfig::load(&path).expect_err("bad key").to_string();
    assert!(
        e.starts_with(&format!(
            "{}: line 3: unknown field `intervall`",
            path.display()
        )),
        "{e}"
    );
}

#[test]
fn configs_built_in_code_are_validated() {
    let mut c = AgentConfig::new("dc1", "web-01");
    c.checks.push(CheckConfig::tcp("pg", "127.0.0.1:5432"));
    c.validate().expect("valid");
    c.node = String::new();
    assert!(c.validate().is_err());
}

#[test]
fn durations() {
    for (s, d) in [
        ("10s", Duration::from_secs(10)),
        ("500ms", Duration::from_millis(500)),
        ("5m", Duration::from_secs(300)),
        ("4h", Duration::from_secs(14_400)),
        ("3d", Duration::from_secs(259_200)),
        ("1m30s", Duration::from_secs(90)),
    ] {
        assert_eq!(parse_duration(s), Ok(d), "{s}");
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{s}");
    }
    assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
    for bad in ["", "s", "10", "-1s", "10 parsecs", "99999999999999999999s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sizes() {
    for (text, bytes) in [
        ("64MiB", 64 << 20),
        ("500 KB", 500_000),
        ("1GiB", 1 << 30),
        ("4096", 4096),
        ("1.5MiB", 3 << 19),
        ("2m", 2_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for bad in ["", "MiB", "-1MiB", "1 XB", "1e400GiB"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
    assert_eq!(format_size(64 << 20), "64MiB");
    assert_eq!(format_size(1000), "1000B");
    let c =
        AgentConfig::from_toml_str("site = \"a\"\nnode = \"b\"\n[spool]\nmax_size = \"1GiB\"\n")
            .expect("valid");
    assert_eq!(c.spool.max_bytes, 1 << 30);
    assert_eq!(
        AgentConfig::from_toml_str(&c.to_toml_string()).expect("round trip"),
        c
    );
}

#[test]
fn broker_urls() {
    let u = BrokerUrl::parse("mqtt://[::1]:1884").expect("v6");
    assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
    assert_eq!(u.to_string(), "mqtt://[::1]:1884");
    let u = BrokerUrl::parse("mqtt://broker").expect("default port");
    assert_eq!((u.port, u.tls), (1883, false));
    let u = BrokerUrl::parse("mqtts://broker").expect("TLS default port");
    assert_eq!((u.port, u.tls), (8883, true));
    assert_eq!(u.to_string(), "mqtts://broker:8883");
    let u = BrokerUrl::parse("ssl://broker:9999").expect("ssl alias");
    assert_eq!((u.port, u.tls), (9999, true));
    assert!(BrokerUrl::parse("mqtt://user:pw@broker:1883").is_err());
    assert!(BrokerUrl::parse("mqtt://broker:1883/path").is_err());
    assert!(BrokerUrl::parse("mqtt://:1883").is_err());
    assert!(BrokerUrl::parse("mqtt://broker:0").is_err());
}

/// docs/agent.example.toml is the config reference: it must parse, and every key the agent
/// writes back in `print-config` must appear in it.
#[test]
fn the_example_config_is_complete_and_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent.example.toml");
    let text = std::fs::read_to_string(path).expect("docs/agent.example.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let community = secret::tests::write_with_mode(dir.path(), "snmp-community", "public\n", 0o640);
    let parsed = text.replace(
        "/etc/tocsin/snmp-community",
        &community.display().to_string(),
    );
    let config =
        AgentConfig::from_toml_str(&parsed).unwrap_or_else(|e| panic!("{path} does not load: {e}"));
    assert!(config.checks.len() >= 6 && config.devices.len() >= 2);
    let printed = config.to_toml_string();
    let mut section = String::new();
    for line in printed.lines() {
        if line.starts_with('[') {
            section = line.to_string();
        }
        // Label names are the admin's own, not config keys.
        if section.ends_with("labels]") {
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let key = key.trim();
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start().trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
            }),
            "{path} does not document the key {key:?} (print-config writes it)"
        );
    }
}
