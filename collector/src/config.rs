//! collector.toml: broker, HTTP, store and rules locations, SMTP and notification delivery, with defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use tocsin_core::error::{ConfigError, one_line};

/// The whole collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    /// The SMTP server e-mail notifications go through; unset: e-mail targets fail with a reason.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Delivery of the notification outbox (retries, concurrency).
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Limits of the read-only SQL endpoint.
    #[serde(default)]
    pub analytics: AnalyticsConfig,
    /// Topic root, `tocsin` unless several installations share one broker.
    #[serde(default = "default_topic_root")]
    pub topic_root: String,
}

fn default_topic_root() -> String {
    tocsin_protocol::DEFAULT_TOPIC_ROOT.to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Run an MQTT broker inside the collector.
    #[serde(default)]
    pub embedded: bool,
    /// Where the embedded broker listens.
    #[serde(default = "default_listen_mqtt")]
    pub listen: SocketAddr,
    /// The broker to subscribe to (ignored with `embedded`, which uses `listen`).
    #[serde(default = "default_broker_url")]
    pub url: String,
    /// MQTT client id; fixed so the broker keeps the persistent session across restarts.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Received messages waiting to be decoded, as received (payload, topic and ack token:
    /// about 2.3 KB per 30-metric report). The default holds the largest in-flight window
    /// MQTT allows (65,535); a broker that sends more makes intake wait for room (counted
    /// in `tocsin_ingest_queue_full_waits_total`) while the socket pushes back on it.
    #[serde(default = "default_intake_queue")]
    pub intake_queue: usize,
}

fn default_intake_queue() -> usize {
    crate::ingest::mqtt::MAX_UNACKED
}

fn default_listen_mqtt() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}
fn default_broker_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_client_id() -> String {
    "tocsin-collector".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            embedded: false,
            listen: default_listen_mqtt(),
            url: default_broker_url(),
            client_id: default_client_id(),
            username: None,
            password_file: None,
            keep_alive: default_keep_alive(),
            intake_queue: default_intake_queue(),
        }
    }
}

impl BrokerConfig {
    /// Host and port to connect to: the embedded listener, or the parsed `url`.
    pub fn endpoint(&self) -> Result<(String, u16), String> {
        if self.embedded {
            return Ok((self.listen.ip().to_string(), self.listen.port()));
        }
        parse_mqtt_url(&self.url)
    }
}

/// Read a password file: its content without the trailing line ending.
pub fn read_password_file(path: &std::path::Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

/// `mqtt://host[:port]` -> (host, port). TLS (`mqtts://`) is not supported yet.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| {
            format!("broker url {url:?} must start with mqtt:// (mqtts:// is not supported yet)")
        })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("broker url {url:?} has a bad port {p:?}"))?;
            (h, port)
        }
        _ => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("broker url {url:?} has no host"));
    }
    Ok((host.to_string(), port))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen_http")]
    pub listen: SocketAddr,
    /// File holding the bearer token that may write (reload rules, maintenance, problems).
    /// Unset: writes are accepted only when the API is open on loopback.
    #[serde(default)]
    pub operator_token_file: Option<PathBuf>,
    /// File holding the bearer token that may read `/api/v1` (the operator token may too).
    /// Unset: reads are accepted only when the API is open on loopback.
    #[serde(default)]
    pub viewer_token_file: Option<PathBuf>,
    /// While `listen` is a loopback address, requests without a token may do what an unset
    /// token allows (local tools, the quickstart). Set false to require tokens locally too.
    #[serde(default = "default_true")]
    pub open_on_loopback: bool,
}

fn default_true() -> bool {
    true
}

fn default_listen_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen_http(),
            operator_token_file: None,
            viewer_token_file: None,
            open_on_loopback: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// Longest a write waits in a batch before it is committed.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Most inputs committed in one transaction.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// A node's full report is appended to `node_reports` at most this often, and
    /// whenever one of its alerts changes state in the same batch; the node's row (state,
    /// `last_seq`, `last_ts`, `last_report_at`) with it, with a state change or status, and at
    /// shutdown (`GET /api/v1/nodes` shows the engine's current ones). About once a
    /// minute the writer deletes every stored report but each node's newest (`v_nodes`
    /// shows it). Nodes' reports come due spread over the interval (a share of it taken from
    /// the node's name), not all together after a start. Storing 50,000 reports of 2 KB
    /// every 10 s kept DuckDB busy compressing them (BENCHMARKS.md).
    #[serde(default = "default_report_interval", with = "humantime_serde")]
    pub report_interval: Duration,
    /// Most memory DuckDB's buffer pool may use (DuckDB's own size syntax: "256MB", "1GiB");
    /// beyond it DuckDB evicts cached blocks of the file and spills large queries to its
    /// temporary folder. DuckDB's own default, 80% of the machine's memory, is no bound for
    /// a daemon that shares its host.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
    /// Alert transitions and finished incidents older than this move to Parquet files in
    /// `archive_dir` (by month); the analytics views keep reading them. Unset: keep all live.
    #[serde(default, with = "humantime_serde")]
    pub retain: Option<Duration>,
    /// Where the Parquet history goes; default: `archive/` beside the database file.
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
    /// How often retention runs (also at start); each run adds a file per table and month.
    #[serde(default = "default_retention_interval", with = "humantime_serde")]
    pub retention_interval: Duration,
}

fn default_retention_interval() -> Duration {
    // Daily: each run writes its own files per month, so fewer runs keep the archive small.
    Duration::from_secs(86_400)
}

impl StoreConfig {
    /// The archive folder in use: `archive_dir`, or `archive/` beside the database.
    pub fn archive_dir(&self) -> PathBuf {
        self.archive_dir.clone().unwrap_or_else(|| {
            self.path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("archive")
        })
    }
}

/// Limits of the read-only SQL endpoint (`POST /api/v1/query`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// A query running longer is cancelled (HTTP 408).
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Rows returned when the request names no limit.
    #[serde(default = "default_query_rows")]
    pub query_default_rows: usize,
    /// Most rows a request may ask for.
    #[serde(default = "default_query_max_rows")]
    pub query_max_rows: usize,
    /// Queries running at once.
    #[serde(default = "default_query_concurrency")]
    pub query_concurrency: usize,
    /// Queries that may wait (up to `query_timeout`) for a free slot, e.g. a Grafana dashboard
    /// loading all its panels at once; more are refused at once (HTTP 429).
    #[serde(default = "default_query_queue")]
    pub query_queue: usize,
}

fn default_query_queue() -> usize {
    16
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_query_rows() -> usize {
    1000
}
fn default_query_max_rows() -> usize {
    10_000
}
fn default_query_concurrency() -> usize {
    2
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            query_timeout: default_query_timeout(),
            query_default_rows: default_query_rows(),
            query_max_rows: default_query_max_rows(),
            query_concurrency: default_query_concurrency(),
            query_queue: default_query_queue(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("/var/lib/tocsin/tocsin.duckdb")
}
fn default_flush() -> Duration {
    Duration::from_millis(200)
}
/// Most inputs one write transaction may hold.
pub const MAX_BATCH: usize = 16_384;

fn default_batch() -> usize {
    512
}
fn default_memory_limit() -> String {
    "128MB".into()
}
fn default_report_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
            flush_interval: default_flush(),
            batch_size: default_batch(),
            report_interval: default_report_interval(),
            memory_limit: default_memory_limit(),
            retain: None,
            archive_dir: None,
            retention_interval: default_retention_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Folder of `*.toml` rule files plus `policy.toml`.
    #[serde(default = "default_rules_dir")]
    pub dir: PathBuf,
}

fn default_rules_dir() -> PathBuf {
    PathBuf::from("/etc/tocsin/rules")
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: default_rules_dir(),
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (only sensible to a local relay).
    None,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// `[smtp]`: the relay e-mail notifications are handed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address, e.g. `"tocsin <tocsin@example.com>"`.
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password for `username`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `none`, `starttls` or `tls`. Unset: `none` when `host` is a loopback address or
    /// `localhost` (a local relay rarely has a certificate for that name), else `starttls`.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Longest one SMTP command may take (a whole message: four times this).
    #[serde(default = "default_smtp_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_smtp_port() -> u16 {
    25
}
fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}

impl SmtpConfig {
    /// The protection in force: `tls` if set, else by the host (see [`SmtpConfig::tls`]).
    pub fn effective_tls(&self) -> SmtpTls {
        self.tls.unwrap_or_else(|| {
            let host = self.host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                SmtpTls::None
            } else {
                SmtpTls::Starttls
            }
        })
    }
}

/// `[notify]`: delivery of the durable notification outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Attempts before a notification is given up as `failed`.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubled after each further one ...
    #[serde(default = "default_backoff_initial", with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// ... up to this.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Notifications sent at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(2)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_concurrency() -> usize {
    4
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            max_attempts: default_max_attempts(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            concurrency: default_concurrency(),
        }
    }
}

impl CollectorConfig {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(path, &text)
    }

    /// Parse config text; `path` only names the source in errors.
    pub fn from_toml_str(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: CollectorConfig =
            toml::from_str(text).map_err(|e| ConfigError::parse(path, e))?;
        config.broker.endpoint().map_err(|m| ConfigError::Parse {
            path: path.to_path_buf(),
            message: m,
        })?;
        if !tocsin_protocol::is_valid_name(config.topic_root.replace('/', "_").as_str()) {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("topic_root {:?} must be [A-Za-z0-9._-/]", config.topic_root),
            });
        }
        let invalid = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let n = &config.notify;
        if n.max_attempts == 0 || n.concurrency == 0 {
            return Err(invalid(
                "[notify] max_attempts and concurrency must be at least 1".into(),
            ));
        }
        if n.backoff_initial.is_zero() || n.backoff_max < n.backoff_initial {
            return Err(invalid(
                "[notify] backoff_initial must be above 0 and backoff_max at least backoff_initial"
                    .into(),
            ));
        }
        let a = &config.analytics;
        if a.query_timeout.is_zero()
            || a.query_concurrency == 0
            || a.query_default_rows == 0
            || a.query_max_rows < a.query_default_rows
        {
            return Err(invalid(
                "[analytics] query_timeout, query_concurrency and query_default_rows must be above 0, and query_max_rows at least query_default_rows".into(),
            ));
        }
        // The engine resumes from the live tables: recurrence (problem window) and similar past
        // cases (90 days) look at incidents there.
        if config
            .store
            .retain
            .is_some_and(|d| d < Duration::from_secs(90 * 86_400))
        {
            return Err(invalid(
                "[store] retain must be at least 90d: similar past cases and problem records look back that far in the live tables".into(),
            ));
        }
        if config.broker.intake_queue == 0 {
            return Err(invalid("[broker] intake_queue must be above 0".into()));
        }
        // A batch holds its messages unacknowledged until it commits: beyond a few broker
        // windows it only delays acks and grows memory.
        if !(1..=MAX_BATCH).contains(&config.store.batch_size) {
            return Err(invalid(format!(
                "[store] batch_size must be between 1 and {MAX_BATCH}"
            )));
        }
        if config.store.retention_interval < Duration::from_secs(1) {
            return Err(invalid(
                "[store] retention_interval must be at least 1s".into(),
            ));
        }
        if let Some(smtp) = &config.smtp {
            if smtp.host.is_empty() {
                return Err(invalid("[smtp] host is empty".into()));
            }
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| invalid(format!("[smtp] from {:?}: {e}", smtp.from)))?;
            if smtp.password_file.is_some() && smtp.username.is_none() {
                return Err(invalid(
                    "[smtp] password_file is set but username is not".into(),
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CollectorConfig, ConfigError> {
        CollectorConfig::from_toml_str(Path::new("collector.toml"), text)
    }

    #[test]
    fn defaults_and_design_example() {
        let c = parse("").expect("empty config is valid");
        assert!(!c.broker.embedded);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.rules.dir, PathBuf::from("/etc/tocsin/rules"));
        assert_eq!(c.store.report_interval, Duration::from_secs(60));
        assert_eq!(c.store.memory_limit, "128MB");
        let c =
            parse("[store]\nreport_interval = \"0s\"\nmemory_limit = \"1GiB\"\n").expect("store");
        assert_eq!(c.store.report_interval, Duration::ZERO);
        assert_eq!(c.store.memory_limit, "1GiB");
        let c = parse(
            r#"
            [broker]
            embedded = false
            url = "mqtt://127.0.0.1:1883"
            [http]
            listen = "127.0.0.1:8080"
            operator_token_file = "/etc/tocsin/operator.token"
            [store]
            path = "/var/lib/tocsin/tocsin.duckdb"
            [rules]
            dir = "/etc/tocsin/rules"
            "#,
        )
        .expect("design example");
        assert_eq!(
            c.broker.endpoint().expect("endpoint"),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            c.http.operator_token_file,
            Some(PathBuf::from("/etc/tocsin/operator.token"))
        );
        assert_eq!(c.http.viewer_token_file, None);
    }

    #[test]
    fn errors_are_one_line_and_name_the_file() {
        for text in [
            "[broker]\nembeded = true\n",
            "[http]\nlisten = \"nowhere\"\n",
            "[http]\noperator_token = \"secret\"\n",
            "[broker]\nurl = \"http://x\"\n",
            "[store]\nflush_interval = \"soon\"\n",
            "[store]\nreport_interval = \"often\"\n",
            "[store]\nbatch_size = 0\n",
            "[broker]\nintake_queue = 0\n",
            "[store]\nbatch_size = 100000\n",
            "this is not toml",
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.starts_with("collector.toml: "), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err =
            CollectorConfig::load(Path::new("/nonexistent/collector.toml")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/collector.toml: cannot read")
        );
    }

    #[test]
    fn smtp_and_notify_sections() {
        let c = parse("").expect("defaults");
        assert!(c.smtp.is_none());
        assert_eq!(c.notify.max_attempts, 8);
        assert_eq!(c.notify.backoff_initial, Duration::from_secs(2));
        assert_eq!(c.notify.backoff_max, Duration::from_secs(300));
        assert_eq!(c.notify.concurrency, 4);
        let c = parse(
            r#"
            [smtp]
            host = "127.0.0.1"
            from = "tocsin <tocsin@example.com>"
            [notify]
            max_attempts = 3
            backoff_initial = "1s"
            backoff_max = "1m"
            "#,
        )
        .expect("smtp");
        let smtp = c.smtp.expect("smtp");
        assert_eq!(smtp.port, 25);
        assert_eq!(smtp.effective_tls(), SmtpTls::None, "loopback: plain");
        assert_eq!(c.notify.max_attempts, 3);
        let c =
            parse("[smtp]\nhost = \"mail.example.com\"\nfrom = \"a@example.com\"\n").expect("ok");
        assert_eq!(
            c.smtp.expect("smtp").effective_tls(),
            SmtpTls::Starttls,
            "remote: STARTTLS by default"
        );
        let c = parse("[smtp]\nhost = \"localhost\"\nfrom = \"a@example.com\"\ntls = \"tls\"\n")
            .expect("ok");
        assert_eq!(c.smtp.expect("smtp").effective_tls(), SmtpTls::Tls);
        for bad in [
            "[smtp]\nhost = \"h\"\nfrom = \"not an address\"\n",
            "[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"ssl\"\n",
            "[smtp]\nhost = \"h\"\n",
            "[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\npassword_file = \"/p\"\n",
            "[notify]\nmax_attempts = 0\n",
            "[notify]\nbackoff_initial = \"10m\"\nbackoff_max = \"1m\"\n",
            "[notify]\nretries = 3\n",
        ] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.starts_with("collector.toml: "), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn mqtt_urls() {
        assert_eq!(
            parse_mqtt_url("mqtt://broker").expect("ok"),
            ("broker".into(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://10.1.2.3:1884/").expect("ok"),
            ("10.1.2.3".into(), 1884)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:1885").expect("ok"),
            ("::1".into(), 1885)
        );
        assert!(parse_mqtt_url("mqtt://host:x").is_err());
        assert!(parse_mqtt_url("mqtt://").is_err());
    }
}
