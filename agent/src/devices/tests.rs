//! Tests of the device prober: reachability decisions, the snmp check, payload bounds, birth, and probes on loopback.

use std::collections::BTreeSet;
use std::time::Instant;

use super::*;
use crate::config::device::SnmpConfig;

fn done(sent: u32, answered: u32) -> IcmpState {
    IcmpState::Done(IcmpOutcome {
        sent,
        rtts: vec![Duration::from_micros(250); answered as usize],
        send_error: None,
    })
}

fn answered() -> SnmpState {
    SnmpState::Answered {
        response_ms: 1.5,
        uptime_ticks: Some(360_000),
        interfaces: 4,
        problem: None,
    }
}

fn failed() -> SnmpState {
    SnmpState::Failed("SNMP timed out after 2s (2 tries)".to_string())
}

const NO_SOCKET: &str = icmp::NO_ICMP_SOCKET;

#[test]
fn reachability_is_ok_when_either_answers() {
    let r = reachability(&done(3, 3), &SnmpState::Off);
    assert_eq!(r.status, CheckStatus::Ok);
    assert_eq!(r.output, "3/3 ICMP echoes answered, rtt 0.25 ms");
    assert_eq!(r.latency_ms, Some(0.25));
    assert_eq!(r.name, "reachability");

    let r = reachability(&done(3, 2), &failed());
    assert_eq!(r.status, CheckStatus::Ok);
    assert_eq!(
        r.output,
        "2/3 ICMP echoes answered (33.33% loss), rtt 0.25 ms; SNMP timed out after 2s (2 tries)"
    );

    // ICMP silent (filtered) but SNMP answers: reachable.
    let r = reachability(&done(3, 0), &answered());
    assert_eq!(r.status, CheckStatus::Ok);
    assert_eq!(r.latency_ms, Some(1.5));

    // No ICMP socket: SNMP decides, and the output says how to get ICMP back.
    let r = reachability(&IcmpState::Unavailable(NO_SOCKET.into()), &answered());
    assert_eq!(r.status, CheckStatus::Ok);
    assert_eq!(r.output, format!("SNMP answered in 1.5 ms; {NO_SOCKET}"));

    let r = reachability(&IcmpState::Off, &answered());
    assert_eq!(
        (r.status, r.output.as_str()),
        (CheckStatus::Ok, "SNMP answered in 1.5 ms")
    );
}

#[test]
fn reachability_is_critical_when_what_was_probed_stays_silent() {
    let r = reachability(&done(3, 0), &failed());
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        "no answer to 3 ICMP echoes and SNMP timed out after 2s (2 tries)"
    );
    assert_eq!(r.latency_ms, None);

    let r = reachability(&done(1, 0), &SnmpState::Off);
    assert_eq!(
        (r.status, r.output.as_str()),
        (CheckStatus::Critical, "no answer to 1 ICMP echo")
    );

    let r = reachability(&IcmpState::Off, &failed());
    assert_eq!(r.status, CheckStatus::Critical);

    let r = reachability(&IcmpState::Unavailable(NO_SOCKET.into()), &failed());
    assert_eq!(r.status, CheckStatus::Critical);
    assert_eq!(
        r.output,
        format!("SNMP timed out after 2s (2 tries); {NO_SOCKET}")
    );

    let mut lost = IcmpOutcome {
        sent: 2,
        ..IcmpOutcome::default()
    };
    lost.send_error = Some("io error: Network is unreachable (os error 101)".into());
    let r = reachability(&IcmpState::Done(lost), &SnmpState::Off);
    assert_eq!(
        r.output,
        "no answer to 2 ICMP echoes (send failed: io error: Network is unreachable (os error 101))"
    );
}

#[test]
fn reachability_is_unknown_when_nothing_could_be_probed() {
    let r = reachability(&IcmpState::Unavailable(NO_SOCKET.into()), &SnmpState::Off);
    assert_eq!(r.status, CheckStatus::Unknown);
    assert_eq!(r.output, NO_SOCKET);
    let r = reachability(&IcmpState::Off, &SnmpState::Off);
    assert_eq!(r.status, CheckStatus::Unknown);
}

#[test]
fn snmp_check_follows_snmp() {
    assert_eq!(snmp_check(&SnmpState::Off), None);
    let ok = snmp_check(&answered()).expect("check");
    assert_eq!(ok.name, "snmp");
    assert_eq!(ok.status, CheckStatus::Ok);
    assert_eq!(ok.output, "sysUpTime 1h, 4 interfaces");
    assert_eq!(ok.latency_ms, Some(1.5));
    let bad = snmp_check(&failed()).expect("check");
    assert_eq!(bad.status, CheckStatus::Critical);
    assert_eq!(bad.output, "SNMP timed out after 2s (2 tries)");
    let partial = snmp_check(&SnmpState::Answered {
        response_ms: 2.0,
        uptime_ticks: None,
        interfaces: 1,
        problem: Some(
            "interface walk stopped after 1 interfaces: SNMP timed out after 2s (2 tries)".into(),
        ),
    })
    .expect("check");
    assert_eq!(partial.status, CheckStatus::Warning);
    assert!(
        partial.output.ends_with("(no sysUpTime, 1 interfaces)"),
        "{}",
        partial.output
    );
}

#[test]
fn reports_stay_under_the_payload_limit() {
    let group = |i: usize| -> Vec<Metric> {
        DEVICE_METRICS
            .iter()
            .filter(|n| n.starts_with("if."))
            .map(|n| {
                Metric::new(*n, 123_456.78)
                    .with_label("interface", format!("GigabitEthernet1/0/{i}"))
            })
            .collect()
    };
    let few: Vec<_> = (0..10).map(group).collect();
    let (kept, left_out) = fit_interfaces(1000, few);
    assert_eq!((kept.len(), left_out), (10 * 9, 0));

    let many: Vec<_> = (0..512).map(group).collect();
    let (kept, left_out) = fit_interfaces(1000, many);
    assert!(left_out > 0 && kept.len() % 9 == 0, "{left_out}");
    assert_eq!(kept.len() / 9 + left_out, 512);
    let size: usize = kept
        .iter()
        .map(|m| serde_json::to_string(m).expect("json").len() + 1)
        .sum();
    assert!(size + 1000 <= MAX_PAYLOAD_BYTES);
}

#[test]
fn snmp_gets_three_timeouts_within_the_interval() {
    let s = Duration::from_secs;
    assert_eq!(snmp_budget(s(10), s(2)), s(6));
    assert_eq!(snmp_budget(s(2), s(2)), s(2));
}

fn agent() -> AgentConfig {
    AgentConfig::new("dc1", "agent-1")
}

#[test]
fn birth_names_the_agent_first_and_carries_the_inventory() {
    let mut d = DeviceConfig::new("core-sw-1", "10.0.0.1");
    d.parents = vec!["core-rtr".into(), "agent-1".into()];
    d.labels = [("role".to_string(), "core".to_string())].into();
    let mut p = DeviceProber::new(d, &agent());
    assert_eq!(p.name(), "core-sw-1");
    assert_eq!(p.every(), Duration::from_secs(10));
    let b = p.birth();
    b.validate().expect("valid birth");
    assert_eq!(b.state, NodeState::Online);
    assert_eq!(
        b.parents,
        vec!["agent-1".to_string(), "core-rtr".to_string()]
    );
    assert_eq!(b.labels["role"], "core");
    assert_eq!(
        b.agent.as_ref().map(|a| a.version.as_str()),
        Some(crate::AGENT_VERSION)
    );
    let inv = b.inventory.expect("inventory");
    assert_eq!(inv.ip_addresses, vec!["10.0.0.1".to_string()]);
    assert_eq!((inv.hostname, inv.sys_name), (None, None));
    assert!(!p.inventory_changed());

    p.learn(Some("core-sw-1.lan".into()), Some("Cisco IOS".into()));
    assert!(p.inventory_changed());
    assert!(!p.inventory_changed(), "reported once");
    p.learn(Some("core-sw-1.lan".into()), None);
    assert!(
        !p.inventory_changed(),
        "same answer, no change; a missing value keeps the old one"
    );
    let inv = p.birth().inventory.expect("inventory");
    assert_eq!(inv.hostname.as_deref(), Some("core-sw-1.lan"));
    assert_eq!(inv.sys_descr.as_deref(), Some("Cisco IOS"));
    p.learn(Some("renamed".into()), None);
    assert!(p.inventory_changed());
}

#[test]
fn host_names_are_the_hostname_until_snmp_says_otherwise() {
    let p = DeviceProber::new(DeviceConfig::new("sw", "sw.example.net"), &agent());
    let inv = p.birth().inventory.expect("inventory");
    assert_eq!(inv.hostname.as_deref(), Some("sw.example.net"));
    assert!(inv.ip_addresses.is_empty());
}

#[test]
fn the_prober_can_run_in_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let mut p = DeviceProber::new(DeviceConfig::new("sw", "127.0.0.1"), &agent());
    assert_send(&p.probe(1));
}

#[tokio::test]
async fn probing_loopback_by_icmp() {
    let mut d = DeviceConfig::new("lo-dev", "127.0.0.1");
    d.timeout = Duration::from_secs(1);
    let mut p = DeviceProber::new(d, &agent());
    let started = Instant::now();
    let r = p.probe(41).await;
    let took = started.elapsed();
    r.validate().expect("valid report");
    assert_eq!((r.node.as_str(), r.site.as_str()), ("lo-dev", "dc1"));
    assert_eq!(
        (r.kind, r.via.as_deref(), r.seq, r.interval_s),
        (NodeKind::Network, Some("agent-1"), 41, 10)
    );
    let reach = r
        .checks
        .iter()
        .find(|c| c.name == "reachability")
        .expect("reachability");
    assert_eq!(reach.status, CheckStatus::Ok, "{}", reach.output);
    assert!(r.checks.iter().all(|c| c.name != "snmp"));
    let value = |n: &str| r.metrics.iter().find(|m| m.name == n).map(|m| m.value);
    assert_eq!(value("icmp.loss_pct"), Some(0.0));
    assert!(value("icmp.rtt_ms").is_some_and(|v| (0.0..50.0).contains(&v)));
    assert!(value("icmp.rtt_max_ms").is_some());
    assert!(took < Duration::from_secs(2), "{took:?}");
    eprintln!("loopback ICMP probe took {took:?}: {}", reach.output);
}

#[tokio::test]
async fn snmp_to_a_closed_port_without_icmp_is_critical() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let mut d = DeviceConfig::new("silent", "127.0.0.1");
    d.icmp = false;
    d.timeout = Duration::from_millis(300);
    let mut snmp = SnmpConfig::v2c("public");
    snmp.port = port;
    d.snmp = Some(snmp);
    let mut p = DeviceProber::new(d, &agent());
    let started = Instant::now();
    let r = p.probe(1).await;
    r.validate().expect("valid report");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let reach = r
        .checks
        .iter()
        .find(|c| c.name == "reachability")
        .expect("reachability");
    assert_eq!(reach.status, CheckStatus::Critical, "{}", reach.output);
    assert!(reach.output.starts_with("SNMP"), "{}", reach.output);
    let snmp = r
        .checks
        .iter()
        .find(|c| c.name == "snmp")
        .expect("snmp check");
    assert_eq!(snmp.status, CheckStatus::Critical);
    assert!(r.metrics.is_empty(), "{:?}", r.metrics);
    assert!(!p.inventory_changed());
}

#[tokio::test]
async fn host_names_are_resolved_each_cycle() {
    let mut d = DeviceConfig::new("lh", "localhost");
    d.timeout = Duration::from_secs(1);
    let mut p = DeviceProber::new(d, &agent());
    let r = p.probe(1).await;
    r.validate().expect("valid report");
    assert_eq!(
        r.checks[0].status,
        CheckStatus::Ok,
        "{}",
        r.checks[0].output
    );
    let inv = p.birth().inventory.expect("inventory");
    assert_eq!(inv.hostname.as_deref(), Some("localhost"));
    let ip: IpAddr = inv.ip_addresses[0].parse().expect("resolved address");
    assert!(ip.is_loopback(), "{ip}");
}

#[tokio::test]
async fn an_unresolvable_name_is_unknown() {
    let mut d = DeviceConfig::new("ghost", "no-such-host.invalid");
    d.timeout = Duration::from_millis(500);
    d.snmp = Some(SnmpConfig::v2c("public"));
    let mut p = DeviceProber::new(d, &agent());
    let started = Instant::now();
    let r = p.probe(1).await;
    r.validate().expect("valid report");
    assert!(started.elapsed() < Duration::from_secs(2));
    let reach = &r.checks[0];
    assert_eq!(reach.status, CheckStatus::Unknown);
    assert!(
        reach
            .output
            .starts_with("cannot resolve no-such-host.invalid"),
        "{}",
        reach.output
    );
    assert!(!reach.output.contains('\n'));
    assert_eq!(r.checks[1].name, "snmp");
    assert_eq!(r.checks[1].status, CheckStatus::Unknown);
}

/// docs/METRICS.md must list every metric a device report can carry.
#[test]
fn every_device_metric_is_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md");
    let doc = std::fs::read_to_string(path).expect("docs/METRICS.md exists");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.trim().strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    for name in DEVICE_METRICS {
        assert!(tocsin_protocol::is_valid_metric_name(name), "{name}");
        assert!(documented.contains(name), "{name} is not in {path}");
    }
}
