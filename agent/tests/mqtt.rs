//! End-to-end test of the agent library against a real mosquitto broker on 127.0.0.1.
//!
//! Skipped (with a message) when /usr/sbin/mosquitto is missing, unless
//! TOCSIN_REQUIRE_MOSQUITTO=1, in which case a missing broker fails the test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tocsin_agent::{AgentConfig, CheckConfig};
use tocsin_protocol::{CheckStatus, NodeState, Report, Status, decode_report, decode_status};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const WAIT: Duration = Duration::from_secs(15);

/// A mosquitto process on a free loopback port, killed on drop.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Option<Broker> {
        Broker::start_on(free_port())
    }

    fn start_on(port: u16) -> Option<Broker> {
        if !Path::new(MOSQUITTO).exists() {
            if std::env::var("TOCSIN_REQUIRE_MOSQUITTO").as_deref() == Ok("1") {
                panic!("{MOSQUITTO} is missing and TOCSIN_REQUIRE_MOSQUITTO=1");
            }
            eprintln!("SKIP: {MOSQUITTO} not found; MQTT integration test not run");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).expect("log file");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        let broker = Broker {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Messages seen by a subscriber: (topic, retain flag, payload).
struct Subscriber {
    rx: mpsc::UnboundedReceiver<(String, bool, Vec<u8>)>,
    _client: AsyncClient,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(port: u16, id: &str, filter: &str) -> Subscriber {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_max_packet_size(512 * 1024, 512 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.retain, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    timeout(WAIT, subscribed_rx)
        .await
        .expect("SUBACK in time")
        .expect("subscriber task alive");
    Subscriber {
        rx,
        _client: client,
        task,
    }
}

impl Subscriber {
    /// Next message on `topic`, within [`WAIT`].
    async fn next_on(&mut self, topic: &str) -> (bool, Vec<u8>) {
        let wait = async {
            loop {
                let (t, retain, payload) = self.rx.recv().await.expect("subscriber alive");
                if t == topic {
                    return (retain, payload);
                }
            }
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no message on {topic} within {WAIT:?}"))
    }

    async fn next_report(&mut self, topic: &str) -> Report {
        let (_, payload) = self.next_on(topic).await;
        decode_report(&payload).expect("valid report")
    }

    async fn next_status(&mut self, topic: &str) -> (bool, Status) {
        let (retain, payload) = self.next_on(topic).await;
        (retain, decode_status(&payload).expect("valid status"))
    }
}

struct RunningAgent {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), tocsin_agent::AgentError>>,
}

fn start_agent(config: AgentConfig) -> RunningAgent {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(tocsin_agent::run(config, async {
        let _ = stopped.await;
    }));
    RunningAgent { stop, handle }
}

impl RunningAgent {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        timeout(WAIT, self.handle)
            .await
            .expect("agent stopped in time")
            .expect("agent task did not panic")
            .expect("agent ran without error");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_publishes_birth_reports_and_clean_stop() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool dir");
    let node = format!("itest-{}", std::process::id());
    let closed_port = free_port();
    let mut config = AgentConfig::new("itest", node.clone());
    config.interval = Duration::from_secs(1);
    config.broker.url.host = "127.0.0.1".into();
    config.broker.url.port = broker.port;
    config.spool.dir = spool.path().to_path_buf();
    config.parents = vec!["core-sw-1".into()];
    config.labels.insert("service".into(), "itest".into());
    let mut check = CheckConfig::tcp("closed", format!("127.0.0.1:{closed_port}"));
    check.timeout = Duration::from_millis(500);
    config.checks.push(check);
    config.validate().expect("valid config");

    let status_topic = config.status_topic();
    let report_topic = config.report_topic();
    let mut live = subscribe(
        broker.port,
        "itest-live",
        &format!("tocsin/v1/itest/{node}/#"),
    )
    .await;

    // First run.
    let agent = start_agent(config.clone());
    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);

    let mut last_seq = None;
    for _ in 0..3 {
        let report = live.next_report(&report_topic).await;
        assert_eq!(report.node, node);
        assert_eq!(report.site, "itest");
        assert_eq!(report.interval_s, 1);
        if let Some(prev) = last_seq {
            assert_eq!(report.seq, prev + 1, "seq grows by one per report");
        }
        last_seq = Some(report.seq);
        let check = report
            .checks
            .iter()
            .find(|c| c.name == "tcp:closed")
            .expect("tcp:closed check in the report");
        assert_eq!(check.status, CheckStatus::Critical, "{}", check.output);
        assert!(
            check.output.contains("connection refused"),
            "{}",
            check.output
        );
        assert!(report.metrics.iter().any(|m| m.name == "cpu.usage_pct"));
    }
    let seq_after_three = last_seq.expect("saw reports");
    assert_eq!(seq_after_three, 3, "a fresh spool starts at seq 1");

    // A late subscriber gets the retained birth with inventory, parents and labels.
    {
        let mut late = subscribe(broker.port, "itest-late", &status_topic).await;
        let (retain, status) = late.next_status(&status_topic).await;
        assert!(retain, "birth status is retained");
        assert_eq!(status.state, NodeState::Online);
        assert!(status.ts.is_some_and(|ts| ts > 0));
        assert_eq!(
            status.agent.as_ref().map(|a| a.version.as_str()),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let inventory = status.inventory.expect("inventory in the birth status");
        assert!(inventory.hostname.is_some());
        assert!(inventory.cpu_cores.is_some_and(|c| c > 0));
        assert!(inventory.memory_bytes.is_some_and(|m| m > 0));
        assert!(!inventory.ip_addresses.is_empty());
        assert_eq!(status.parents, vec!["core-sw-1".to_string()]);
        assert_eq!(
            status.labels.get("service").map(String::as_str),
            Some("itest")
        );
    }

    // Clean stop: retained `stopped`, and no last will afterwards.
    agent.shutdown().await;
    let mut seen_last = seq_after_three;
    let stopped = loop {
        let (t, _, payload) = timeout(WAIT, live.rx.recv())
            .await
            .expect("stopped status in time")
            .expect("subscriber alive");
        if t == report_topic {
            seen_last = decode_report(&payload).expect("valid report").seq;
        } else if t == status_topic {
            break decode_status(&payload).expect("valid status");
        }
    };
    assert_eq!(stopped.state, NodeState::Stopped);
    // The broker must not announce the agent offline after a clean stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok((t, _, payload)) = live.rx.try_recv() {
        if t == status_topic {
            let s = decode_status(&payload).expect("valid status");
            panic!("unexpected status after a clean stop: {s:?}");
        }
    }
    {
        let mut late = subscribe(broker.port, "itest-late2", &status_topic).await;
        let (retain, status) = late.next_status(&status_topic).await;
        assert!(retain);
        assert_eq!(
            status.state,
            NodeState::Stopped,
            "retained status after stop"
        );
    }
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(spool.path().join("state.json")).expect("state.json written"),
    )
    .expect("state.json is JSON");
    assert_eq!(
        stored["seq"].as_u64(),
        Some(seen_last),
        "last published seq is stored"
    );

    // Restart with the same spool: seq continues.
    let agent = start_agent(config);
    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);
    let report = live.next_report(&report_topic).await;
    assert_eq!(report.seq, seen_last + 1, "seq survives a restart");
    agent.shutdown().await;
    let (_, status) = live.next_status(&status_topic).await;
    assert_eq!(status.state, NodeState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_announces_offline_when_the_agent_vanishes() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool dir");
    let node = format!("itest-will-{}", std::process::id());
    let mut config = AgentConfig::new("itest", node.clone());
    config.interval = Duration::from_secs(1);
    config.broker.url.port = broker.port;
    config.spool.dir = spool.path().to_path_buf();
    let status_topic = config.status_topic();
    let mut live = subscribe(broker.port, "itest-will", &status_topic).await;

    let agent = start_agent(config);
    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);
    // Kill the agent without a clean stop: its connection just closes.
    agent.handle.abort();
    let _ = agent.handle.await;
    let (_, will) = live.next_status(&status_topic).await;
    assert_eq!(will.state, NodeState::Offline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_reports_while_the_broker_is_down_and_connects_later() {
    if !Path::new(MOSQUITTO).exists() {
        // Broker::start_on prints the skip message (or panics when the broker is required).
        let _ = Broker::start();
        return;
    }
    let port = free_port();
    let spool = tempfile::tempdir().expect("spool dir");
    let node = format!("itest-late-{}", std::process::id());
    let mut config = AgentConfig::new("itest", node.clone());
    config.interval = Duration::from_secs(1);
    config.broker.url.port = port;
    config.spool.dir = spool.path().to_path_buf();
    let status_topic = config.status_topic();
    let report_topic = config.report_topic();

    // Nothing listens yet: the agent collects, queues and retries with backoff.
    let agent = start_agent(config);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let broker = Broker::start_on(port).expect("mosquitto present");
    let mut live = subscribe(
        broker.port,
        "itest-late-live",
        &format!("tocsin/v1/itest/{node}/#"),
    )
    .await;

    let (_, birth) = live.next_status(&status_topic).await;
    assert_eq!(birth.state, NodeState::Online);
    let mut prev: Option<u64> = None;
    loop {
        let report = live.next_report(&report_topic).await;
        if let Some(p) = prev {
            assert_eq!(
                report.seq,
                p + 1,
                "reports queued while the broker was down arrive in order"
            );
        }
        let dropped = report
            .metrics
            .iter()
            .find(|m| m.name == "agent.reports_dropped_count")
            .map(|m| m.value);
        assert_eq!(
            dropped,
            Some(0.0),
            "nothing dropped while the broker was down"
        );
        prev = Some(report.seq);
        if report.seq >= 4 {
            break;
        }
    }
    agent.shutdown().await;
}
