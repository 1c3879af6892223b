//! Helpers of the agent's integration tests: a private mosquitto, a subscriber, an agent run in-process.
//!
//! A test whose broker is missing is skipped (with a message), unless
//! TOCSIN_REQUIRE_MOSQUITTO=1, in which case a missing broker fails the test.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tocsin_agent::AgentConfig;
use tocsin_protocol::{Report, Status, decode_report, decode_status};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const WAIT: Duration = Duration::from_secs(15);

/// A mosquitto process on a free loopback port, killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Option<Broker> {
        Broker::start_on(free_port())
    }

    /// True when mosquitto is installed; otherwise prints the skip message (or panics when
    /// the broker is required).
    pub fn available() -> bool {
        if Path::new(MOSQUITTO).exists() {
            return true;
        }
        if std::env::var("TOCSIN_REQUIRE_MOSQUITTO").as_deref() == Ok("1") {
            panic!("{MOSQUITTO} is missing and TOCSIN_REQUIRE_MOSQUITTO=1");
        }
        eprintln!("SKIP: {MOSQUITTO} not found; MQTT integration test not run");
        false
    }

    pub fn start_on(port: u16) -> Option<Broker> {
        Broker::start_conf(
            port,
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            ),
            tempfile::tempdir().expect("tempdir"),
        )
    }

    /// Start mosquitto with the given config text (files it names live in `dir`), waiting
    /// until `port` listens.
    pub fn start_conf(port: u16, conf_text: &str, dir: tempfile::TempDir) -> Option<Broker> {
        if !Broker::available() {
            return None;
        }
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, conf_text).expect("write mosquitto.conf");
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

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Messages seen by a subscriber: (topic, retain flag, payload).
pub struct Subscriber {
    pub rx: mpsc::UnboundedReceiver<(String, bool, Vec<u8>)>,
    _client: AsyncClient,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn subscribe(port: u16, id: &str, filter: &str) -> Subscriber {
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
    pub async fn next_on(&mut self, topic: &str) -> (bool, Vec<u8>) {
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

    pub async fn next_report(&mut self, topic: &str) -> Report {
        let (_, payload) = self.next_on(topic).await;
        decode_report(&payload).expect("valid report")
    }

    pub async fn next_status(&mut self, topic: &str) -> (bool, Status) {
        let (retain, payload) = self.next_on(topic).await;
        (retain, decode_status(&payload).expect("valid status"))
    }
}

pub struct RunningAgent {
    pub stop: oneshot::Sender<()>,
    pub handle: JoinHandle<Result<(), tocsin_agent::AgentError>>,
}

pub fn start_agent(config: AgentConfig) -> RunningAgent {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(tocsin_agent::run(config, async {
        let _ = stopped.await;
    }));
    RunningAgent { stop, handle }
}

impl RunningAgent {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        timeout(WAIT, self.handle)
            .await
            .expect("agent stopped in time")
            .expect("agent task did not panic")
            .expect("agent ran without error");
    }
}
