//! End-to-end test helpers: free ports, a private Mosquitto, the real binaries, the HTTP API.
//!
//! The binaries come from the same target folder as the test (`cargo test --workspace`
//! builds them, since the agent and collector packages have integration tests of their own).

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/e2e-xxxx -> target/debug/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// Wait until `f` returns Some, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A child process that is killed when dropped; its output goes to a log file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// SIGTERM, then wait for the exit code (panics after 15 s).
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(15))
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let name = self.name.clone();
        let log = self.log.clone();
        wait_for(
            &format!("{name} to exit (log: {})", log.display()),
            timeout,
            || self.child.try_wait().ok().flatten(),
        )
        .code()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Decode a chunked HTTP body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

/// Where the `mosquitto` binary is, if installed.
pub fn mosquitto_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// True when the Mosquitto variants must run (CI sets TOCSIN_REQUIRE_MOSQUITTO=1).
pub fn mosquitto_required() -> bool {
    std::env::var("TOCSIN_REQUIRE_MOSQUITTO").is_ok_and(|v| v == "1")
}

/// A private Mosquitto on a free port with its own config.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    pub proc: Proc,
    conf: PathBuf,
    dir: PathBuf,
}

impl Mosquitto {
    /// Start one, or None (with a message) when the binary is missing and not required.
    pub fn start(dir: &Path) -> Option<Mosquitto> {
        Self::start_with(dir, "persistence false\n")
    }

    /// Start one that keeps sessions and queued messages across a restart (like a production
    /// broker), in `dir/mosquitto-data`.
    pub fn start_persistent(dir: &Path) -> Option<Mosquitto> {
        let data = dir.join("mosquitto-data");
        std::fs::create_dir_all(&data).expect("mosquitto data dir");
        Self::start_with(
            dir,
            &format!(
                // `user root`: started as root, mosquitto would otherwise drop to its own user
                // and could not write the test's directory (ignored when not run as root).
                "user root\npersistence true\npersistence_location {}/\nautosave_interval 1\n",
                data.display()
            ),
        )
    }

    /// Start one with `extra` lines appended to its config (e.g. `max_inflight_messages 0`).
    pub fn start_with(dir: &Path, extra: &str) -> Option<Mosquitto> {
        let Some(_) = mosquitto_binary() else {
            assert!(
                !mosquitto_required(),
                "mosquitto is not installed but TOCSIN_REQUIRE_MOSQUITTO=1 (apt-get install mosquitto)"
            );
            eprintln!(
                "SKIPPED: mosquitto is not installed (apt-get install mosquitto); the Mosquitto variant did not run"
            );
            return None;
        };
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).expect("mosquitto.conf");
        writeln!(
            f,
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n{extra}"
        )
        .expect("write mosquitto.conf");
        let proc = Self::spawn(&conf, dir, port);
        Some(Mosquitto {
            port,
            proc,
            conf,
            dir: dir.to_path_buf(),
        })
    }

    fn spawn(conf: &Path, dir: &Path, port: u16) -> Proc {
        let binary = mosquitto_binary().expect("mosquitto binary");
        let mut cmd = Command::new(binary);
        cmd.arg("-c").arg(conf);
        let proc = Proc::spawn("mosquitto", cmd, dir);
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            port_open(port).then_some(())
        });
        proc
    }

    /// Stop it (SIGTERM: a persistent broker saves its sessions) and wait until it is gone.
    pub fn stop(&mut self) {
        self.proc.terminate();
    }

    /// Start it again on the same port with the same config.
    pub fn restart(&mut self) {
        if self.proc.alive() {
            self.stop();
        }
        self.proc = Self::spawn(&self.conf, &self.dir, self.port);
    }
}

/// JSON over HTTP against the collector API (a minimal HTTP/1.1 GET: the API is ours and local).
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    port: u16,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// GET a path; (status, body text). None when the server does not answer.
    pub fn get_raw(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, None, None)
    }

    /// Any request with an optional JSON body and bearer token; (status, body text).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Option<(u16, String)> {
        use std::io::Read as _;
        let mut stream =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(2))
                .ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        if method != "GET" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        stream.write_all(head.as_bytes()).ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        };
        Some((status, body))
    }

    /// GET a path that must answer 200 with JSON.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .get_raw(path)
            .unwrap_or_else(|| panic!("GET {path}: no answer from {}", self.base));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// POST a JSON body (or none) with an optional token; (status, JSON answer).
    pub fn post(&self, path: &str, body: Option<&Value>, token: Option<&str>) -> (u16, Value) {
        let text = body.map(Value::to_string);
        let (status, answer) = self
            .request("POST", path, text.as_deref(), token)
            .unwrap_or_else(|| panic!("POST {path}: no answer from {}", self.base));
        let v = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {answer}"));
        (status, v)
    }

    /// GET a list endpoint.
    pub fn list(&self, path: &str) -> Vec<Value> {
        match self.get(path) {
            Value::Array(a) => a,
            other => panic!("GET {path}: expected a list, got {other}"),
        }
    }

    /// The value of one Prometheus sample line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get_raw("/metrics").expect("metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    pub fn wait_healthy(&self, timeout: Duration) {
        wait_for("the collector API", timeout, || {
            self.get_raw("/healthz")
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
    }

    /// Wait until `/readyz` answers 200: the collector is connected to its broker.
    pub fn wait_ready(&self, timeout: Duration) {
        wait_for("the collector to connect to the broker", timeout, || {
            self.get_raw("/readyz")
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
    }
}

/// The broker a test collector connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// An outside broker (the test's Mosquitto) on this port: `[broker] url`.
    Mosquitto(u16),
    /// The collector's own embedded broker, listening on this port.
    Embedded(u16),
}

impl Broker {
    /// A private Mosquitto when it is installed, else the collector's embedded broker on a
    /// free port. Keep the returned Mosquitto alive as long as the collector runs.
    pub fn mosquitto_or_embedded(dir: &Path) -> (Option<Mosquitto>, Broker) {
        let mosquitto = Mosquitto::start(dir);
        let broker = match &mosquitto {
            Some(m) => Broker::Mosquitto(m.port),
            None => Broker::Embedded(free_port()),
        };
        (mosquitto, broker)
    }

    /// The MQTT port agents and publishers connect to.
    pub fn port(self) -> u16 {
        match self {
            Broker::Mosquitto(port) | Broker::Embedded(port) => port,
        }
    }

    /// The `[broker]` lines (without the client id) that reach it.
    fn toml(self) -> String {
        match self {
            Broker::Mosquitto(port) => format!("url = \"mqtt://127.0.0.1:{port}\""),
            Broker::Embedded(port) => format!("embedded = true\nlisten = \"127.0.0.1:{port}\""),
        }
    }
}

/// How a test collector is set up; start from [`CollectorOptions::new`] and set the rest with
/// `..` (struct update).
#[derive(Debug, Clone)]
pub struct CollectorOptions<'a> {
    /// `[broker] client_id`.
    pub client_id: &'a str,
    /// The rule file, written as `rules/test.toml`.
    pub rules: &'a str,
    /// The policy, written as `rules/policy.toml` (empty by default).
    pub policy: &'a str,
    /// A viewer token, written to `viewer.token` and named by `[http] viewer_token_file`.
    pub viewer_token: Option<&'a str>,
    /// An operator token, written to `operator.token` and named by `[http] operator_token_file`.
    pub operator_token: Option<&'a str>,
    /// `[http] open_on_loopback`, when set.
    pub open_on_loopback: Option<bool>,
    /// More `[http]` lines, as they are.
    pub http_extra: &'a str,
    /// More `[broker]` lines, as they are (e.g. `keep_alive = "5s"`).
    pub broker_extra: &'a str,
    /// The DuckDB file, relative to the test folder.
    pub store: &'a str,
    /// More environment variables for the process (e.g. `NOTIFY_SOCKET`).
    pub env: &'a [(&'a str, &'a str)],
}

impl<'a> CollectorOptions<'a> {
    /// A collector with this client id and rule file; no policy, no tokens, the store in
    /// `tocsin.duckdb`.
    pub fn new(client_id: &'a str, rules: &'a str) -> CollectorOptions<'a> {
        CollectorOptions {
            client_id,
            rules,
            policy: "",
            viewer_token: None,
            operator_token: None,
            open_on_loopback: None,
            http_extra: "",
            broker_extra: "",
            store: "tocsin.duckdb",
            env: &[],
        }
    }
}

/// A collector started by [`start_collector`].
#[derive(Debug)]
pub struct Collector {
    /// The `tocsin-collector run` process (killed when dropped; its log is `dir/collector.log`).
    pub proc: Proc,
    /// Its HTTP API on a free port.
    pub api: Api,
    /// `dir/collector.toml`.
    pub config: PathBuf,
    /// `dir/rules`, the rules folder.
    pub rules: PathBuf,
}

/// Write a test file (creating its folder), panicking with the path on failure.
pub fn write_file(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// One rule that fires on every failing check (critical, software), naming the check's output.
pub const CHECK_CRITICAL_RULE: &str = r#"
[[rule]]
name = "check_critical"
check = "*"
severity = "critical"
category = "software"
summary = "{{node}}: check {{check}} is {{status}}: {{output}}"
"#;

/// Start `tocsin-collector run` in `dir` on `broker`: writes the rules, the policy, the token
/// files and `collector.toml` (HTTP on a free port of 127.0.0.1), runs it with
/// `RUST_LOG=info` and waits up to `timeout` until `/healthz` answers.
pub fn start_collector(
    dir: &Path,
    broker: Broker,
    opts: &CollectorOptions<'_>,
    timeout: Duration,
) -> Collector {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    write_file(&rules.join("test.toml"), opts.rules);
    write_file(&rules.join("policy.toml"), opts.policy);
    let http = free_port();
    let mut http_toml = format!("listen = \"127.0.0.1:{http}\"\n");
    if let Some(open) = opts.open_on_loopback {
        http_toml.push_str(&format!("open_on_loopback = {open}\n"));
    }
    for (role, token) in [
        ("viewer", opts.viewer_token),
        ("operator", opts.operator_token),
    ] {
        if let Some(token) = token {
            let file = dir.join(format!("{role}.token"));
            write_file(&file, &format!("{token}\n"));
            http_toml.push_str(&format!("{role}_token_file = \"{}\"\n", file.display()));
        }
    }
    if !opts.http_extra.is_empty() {
        http_toml.push_str(opts.http_extra);
        http_toml.push('\n');
    }
    let config = dir.join("collector.toml");
    write_file(
        &config,
        &format!(
            "[broker]\n{}\nclient_id = \"{}\"\n{}\n[http]\n{http_toml}\
             [store]\npath = \"{}\"\n[rules]\ndir = \"{}\"\n",
            broker.toml(),
            opts.client_id,
            opts.broker_extra,
            dir.join(opts.store).display(),
            rules.display()
        ),
    );
    let mut cmd = Command::new(bin("tocsin-collector"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .envs(opts.env.iter().copied());
    let proc = Proc::spawn("collector", cmd, dir);
    let api = Api::new(http);
    api.wait_healthy(timeout);
    Collector {
        proc,
        api,
        config,
        rules,
    }
}

/// Publishes reports and statuses straight to the broker, as an agent would (for tests that
/// need exact control over what a node reports and when).
pub struct Publisher {
    client: rumqttc::Client,
    seq: std::collections::HashMap<String, u64>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Publisher {
    pub fn connect(port: u16, client_id: &str) -> Publisher {
        let opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        let (client, mut connection) = rumqttc::Client::new(opts, 100);
        std::thread::spawn(move || {
            for ev in connection.iter() {
                if ev.is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Publisher {
            client,
            seq: Default::default(),
        }
    }

    /// Publish an online birth status for `node` with labels.
    pub fn online(&mut self, site: &str, node: &str, labels: Value) {
        let payload = serde_json::json!({
            "v": 1, "state": "online", "ts": now_ms(), "agent": {"version": "test"},
            "inventory": {"hostname": node}, "parents": [], "labels": labels
        });
        self.client
            .publish(
                format!("tocsin/v1/{site}/{node}/status"),
                rumqttc::QoS::AtLeastOnce,
                true,
                payload.to_string(),
            )
            .expect("publish status");
    }

    /// Publish a report from `node` with one check of the given status.
    pub fn check(&mut self, site: &str, node: &str, check: &str, status: &str) {
        let seq = self.seq.entry(format!("{site}/{node}")).or_insert(0);
        *seq += 1;
        let payload = serde_json::json!({
            "v": 1, "node": node, "site": site, "kind": "host", "seq": *seq, "ts": now_ms(),
            "interval_s": 1, "metrics": [],
            "checks": [{"name": check, "status": status, "output": format!("{check} is {status}")}]
        });
        self.client
            .publish(
                format!("tocsin/v1/{site}/{node}/report"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload.to_string(),
            )
            .expect("publish report");
    }
}
