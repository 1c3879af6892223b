//! Probing a real net-snmp `snmpd` on loopback: inventory, uptime, interfaces and rates, wrong community, agent stopped.
//!
//! Each test starts its own `snmpd` on a free UDP port of 127.0.0.1 with a config written into
//! a temporary directory (nothing outside it is touched) and kills it when done. Without
//! `/usr/sbin/snmpd` the tests are skipped, unless `TOCSIN_REQUIRE_SNMPD=1` makes that a failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tocsin_agent::AgentConfig;
use tocsin_agent::config::DeviceConfig;
use tocsin_agent::config::device::SnmpConfig;
use tocsin_agent::devices::{DeviceProber, SnmpPoller};
use tocsin_protocol::{CheckStatus, Report};

const SNMPD: &str = "/usr/sbin/snmpd";
const COMMUNITY: &str = "testcomm";

/// A running `snmpd`, killed on drop.
struct Snmpd {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Snmpd {
    /// Start one, or `None` (after saying why) when snmpd is not installed.
    async fn start() -> Option<Snmpd> {
        if !Path::new(SNMPD).exists() {
            assert!(
                std::env::var("TOCSIN_REQUIRE_SNMPD").as_deref() != Ok("1"),
                "{SNMPD} is missing and TOCSIN_REQUIRE_SNMPD=1: install the snmpd package"
            );
            eprintln!("skipped: {SNMPD} is not installed (apt-get install snmpd)");
            return None;
        }
        // A free port can be taken between our check and snmpd's bind: try a few.
        for _ in 0..3 {
            let mut snmpd = Snmpd::spawn();
            if snmpd.wait_until_answering().await {
                return Some(snmpd);
            }
            let log =
                std::fs::read_to_string(snmpd.dir.path().join("snmpd.log")).unwrap_or_default();
            eprintln!("snmpd on port {} did not answer; log:\n{log}", snmpd.port);
            snmpd.stop();
        }
        panic!("snmpd did not start");
    }

    fn spawn() -> Snmpd {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr").port()
        };
        let conf = dir.path().join("snmpd.conf");
        std::fs::write(
            &conf,
            format!(
                "agentaddress udp:127.0.0.1:{port}\n\
                 rocommunity {COMMUNITY} 127.0.0.1\n\
                 sysName test-switch\n\
                 sysDescr tocsin test switch (net-snmp on loopback)\n\
                 sysLocation test lab\n\
                 sysContact nobody\n"
            ),
        )
        .expect("write snmpd.conf");
        let persist = dir.path().join("persist");
        let child = Command::new(SNMPD)
            .arg("-f") // foreground: we own the process
            .arg("-C") // no default config files
            .arg("-c")
            .arg(&conf)
            .arg("-Lf")
            .arg(dir.path().join("snmpd.log"))
            .arg("-p")
            .arg(dir.path().join("snmpd.pid"))
            .env("SNMP_PERSISTENT_DIR", &persist)
            .env("SNMPCONFPATH", dir.path())
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snmpd");
        Snmpd {
            child: Some(child),
            port,
            dir,
        }
    }

    async fn wait_until_answering(&mut self) -> bool {
        let mut snmp = SnmpConfig::v2c(COMMUNITY);
        snmp.port = self.port;
        let mut poller = SnmpPoller::new(&snmp, Duration::from_millis(200));
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                return false;
            }
            if poller
                .poll("127.0.0.1".parse().expect("ip"), Duration::from_millis(500))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn agent() -> AgentConfig {
    AgentConfig::new("dc1", "agent-1")
}

fn device(port: u16, community: &str) -> DeviceConfig {
    let mut d = DeviceConfig::new("test-switch", "127.0.0.1");
    d.timeout = Duration::from_secs(1);
    d.parents = vec!["core-rtr".to_string()];
    let mut snmp = SnmpConfig::v2c(community);
    snmp.port = port;
    d.snmp = Some(snmp);
    d.validate(Duration::from_secs(10)).expect("valid device");
    d
}

fn check<'a>(r: &'a Report, name: &str) -> &'a tocsin_protocol::CheckResult {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {:?}", r.checks))
}

fn metric(r: &Report, name: &str, interface: Option<&str>) -> Option<f64> {
    r.metrics
        .iter()
        .find(|m| m.name == name && m.labels.get("interface").map(String::as_str) == interface)
        .map(|m| m.value)
}

async fn timed_probe(p: &mut DeviceProber, seq: u64) -> (Report, Duration) {
    let started = Instant::now();
    let r = p.probe(seq).await;
    let took = started.elapsed();
    r.validate().expect("valid report");
    assert_eq!(r.seq, seq);
    (r, took)
}

#[tokio::test]
async fn probes_a_real_snmpd() {
    let Some(mut snmpd) = Snmpd::start().await else {
        return;
    };
    let mut p = DeviceProber::new(device(snmpd.port, COMMUNITY), &agent());

    let (first, took) = timed_probe(&mut p, 1).await;
    eprintln!(
        "first probe took {took:?}: {}",
        check(&first, "reachability").output
    );
    assert_eq!(first.via.as_deref(), Some("agent-1"));
    assert_eq!(check(&first, "reachability").status, CheckStatus::Ok);
    let snmp = check(&first, "snmp");
    assert_eq!(snmp.status, CheckStatus::Ok, "{}", snmp.output);
    assert!(metric(&first, "snmp.uptime_s", None).is_some_and(|v| v > 0.0));
    assert!(metric(&first, "snmp.response_ms", None).is_some_and(|v| v >= 0.0));
    assert_eq!(metric(&first, "icmp.loss_pct", None), Some(0.0));
    assert_eq!(
        metric(&first, "if.oper_up", Some("lo")),
        Some(1.0),
        "{:?}",
        first.metrics
    );
    assert_eq!(metric(&first, "if.admin_up", Some("lo")), Some(1.0));
    assert_eq!(
        metric(&first, "if.rx_bytes_per_s", Some("lo")),
        None,
        "no rate on the first poll"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    assert!(p.inventory_changed(), "sysName was learnt");
    assert!(!p.inventory_changed());
    let birth = p.birth();
    birth.validate().expect("valid birth");
    assert_eq!(
        birth.parents,
        vec!["agent-1".to_string(), "core-rtr".to_string()]
    );
    let inv = birth.inventory.expect("inventory");
    assert_eq!(inv.sys_name.as_deref(), Some("test-switch"));
    assert_eq!(inv.hostname.as_deref(), Some("test-switch"));
    assert_eq!(
        inv.sys_descr.as_deref(),
        Some("tocsin test switch (net-snmp on loopback)")
    );
    assert_eq!(inv.ip_addresses, vec!["127.0.0.1".to_string()]);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (second, took) = timed_probe(&mut p, 2).await;
    eprintln!("second probe took {took:?}");
    for name in [
        "if.rx_bytes_per_s",
        "if.tx_bytes_per_s",
        "if.rx_errors_per_s",
        "if.rx_discards_per_s",
    ] {
        let v = metric(&second, name, Some("lo"));
        assert!(
            v.is_some_and(|v| v >= 0.0),
            "{name} = {v:?} in {:?}",
            second.metrics
        );
    }
    assert!(!p.inventory_changed(), "same sysName and sysDescr");

    // The SNMP part alone (system GET + interface walk).
    let mut snmp = SnmpConfig::v2c(COMMUNITY);
    snmp.port = snmpd.port;
    let started = Instant::now();
    let poll = SnmpPoller::new(&snmp, Duration::from_secs(1))
        .poll("127.0.0.1".parse().expect("ip"), Duration::from_secs(3))
        .await
        .expect("snmpd answers");
    eprintln!(
        "SNMP poll alone took {:?} for {} interfaces",
        started.elapsed(),
        poll.interfaces.len()
    );
    assert_eq!(poll.walk_problem, None);

    // snmpd gone: ICMP alone keeps the device reachable; the snmp check says what failed.
    snmpd.stop();
    let (third, took) = timed_probe(&mut p, 3).await;
    eprintln!(
        "probe with snmpd stopped took {took:?}: {}",
        check(&third, "snmp").output
    );
    let reach = check(&third, "reachability");
    assert_eq!(reach.status, CheckStatus::Ok, "{}", reach.output);
    let snmp = check(&third, "snmp");
    assert_eq!(snmp.status, CheckStatus::Critical);
    assert!(snmp.output.starts_with("SNMP"), "{}", snmp.output);
    assert!(metric(&third, "icmp.rtt_ms", None).is_some());
    assert!(
        third
            .metrics
            .iter()
            .all(|m| !m.name.starts_with("if.") && !m.name.starts_with("snmp."))
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_wrong_community_times_out_while_icmp_answers() {
    let Some(snmpd) = Snmpd::start().await else {
        return;
    };
    let mut p = DeviceProber::new(device(snmpd.port, "not-the-community"), &agent());
    let (r, took) = timed_probe(&mut p, 1).await;
    eprintln!(
        "wrong-community probe took {took:?}: {}",
        check(&r, "snmp").output
    );
    let reach = check(&r, "reachability");
    assert_eq!(reach.status, CheckStatus::Ok, "{}", reach.output);
    let snmp = check(&r, "snmp");
    assert_eq!(snmp.status, CheckStatus::Critical);
    assert_eq!(snmp.output, "SNMP timed out after 1s (2 tries)");
    assert!(!p.inventory_changed());
    // Two tries of one second each, ICMP alongside.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
}
