//! Wiring: broker, store, engine, ingest, notification delivery and API as named tasks with one
//! graceful shutdown.
//!
//! Data path: MQTT -> ingest (decode) -> pipeline (rules + engine, pure) -> writer thread
//! (DuckDB, one transaction per batch) -> acks back to the broker. The API reads the store.
//! Outbox: the writer commits notifications `pending` and wakes the `notify` task, which sends
//! them to the policy's current targets and marks them through the writer.
//! Control path: API write / SIGHUP -> [`ControlHandle`] -> the pipeline's control queue ->
//! engine command or reload -> writer -> answer once committed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{self, ApiState, Auth};
use crate::config::{CollectorConfig, ConfigError};
use crate::control::{Applied, CONTROL_QUEUE, Control, ControlHandle, LiveNode};
use crate::engine::targets::NotifyPolicy;
use crate::engine::{Effect, Engine, Input, ReportBody};
use crate::ingest::Decoded;
use crate::ingest::mqtt::{self, AckToken, Inbound, RateLimit};
use crate::ingest::stage::{self, DECODED_QUEUE, Received};
use crate::metrics::{EngineGauges, Metrics};
use crate::notify::{Dispatcher, NotifyDeps};
use crate::rules::AlertState;
use crate::store::{SnapshotScope, Store, StoreError, WriteMsg};
use crate::time::{millis, now_millis};

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rule or policy files have errors, one per line.
    #[error("{}", .0.join("\n"))]
    Rules(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::mqtt::IngestError),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error("http: cannot listen on {addr}: {source} (set [http] listen to a free address)")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
    #[error("stopped: {0}")]
    Fatal(String),
}

/// Bounded queue sizes: full queues push back on the broker instead of growing.
/// The inbound queue is `[broker] intake_queue`: whatever the broker's in-flight window
/// sends (nothing is acked before it is stored, so that window bounds it; a broker that
/// sends more makes intake wait for room, which `ingest::mqtt` shows cannot stall).
const WRITE_QUEUE: usize = 1024;
const ACK_QUEUE: usize = 4096;
/// Refused payloads stored per node per minute (a stuck publisher must not fill the disk).
const REJECTED_KEPT_PER_MINUTE: u32 = 20;

/// A running collector.
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP API listens (useful with port 0).
    pub http_addr: SocketAddr,
    /// The broker the collector subscribes to.
    pub mqtt_endpoint: (String, u16),
    pub metrics: Arc<Metrics>,
    /// Reloads and operator commands into the pipeline (what SIGHUP and the API use).
    pub control: ControlHandle,
    shutdown: broadcast::Sender<()>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Reasons a part stopped on its own (store failure, pipeline panic).
    fatal: mpsc::Receiver<String>,
}

impl Running {
    /// Resolves when a part of the collector stopped on its own; says why.
    pub async fn failed(&mut self) -> String {
        self.fatal
            .recv()
            .await
            .unwrap_or_else(|| "every part stopped".to_string())
    }

    /// Serve until `shutdown` resolves or a part fails, then stop cleanly.
    pub async fn serve_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let failure = tokio::select! {
            _ = shutdown => None,
            why = self.failed() => Some(why),
        };
        match &failure {
            None => tracing::info!("shutting down"),
            Some(why) => tracing::error!(reason = %why, "shutting down after a failure"),
        }
        self.stop().await;
        match failure {
            None => Ok(()),
            Some(why) => Err(StartError::Fatal(why)),
        }
    }

    /// Stop: the pipeline takes nothing more, the writer commits what it was given, intake
    /// sends those acks and disconnects, the database closes. What was still queued is not
    /// acknowledged: the broker redelivers it to the next run.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(());
        for (name, task) in self.tasks.drain(..) {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(())) => tracing::debug!(task = name, "stopped"),
                Ok(Err(e)) => tracing::error!(task = name, error = %e, "task failed"),
                Err(_) => tracing::warn!(task = name, "did not stop within 10s"),
            }
        }
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

/// Start everything; returns once the store is open and the API listens.
pub async fn start(config: CollectorConfig) -> Result<Running, StartError> {
    let rules_dir = config.rules.dir.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::control::load_rules(&rules_dir))
        .await
        .map_err(|e| StartError::Internal(e.to_string()))?
        .map_err(StartError::Rules)?;
    let (rules, policy) = (loaded.rules, loaded.policy);
    tracing::info!(rules = rules.len(), files = loaded.files, dir = %config.rules.dir.display(), "rules loaded");
    if config.broker.embedded {
        crate::broker::start(config.broker.listen)?;
        tracing::info!(listen = %config.broker.listen, "embedded MQTT broker started");
    }
    let mqtt_opts = mqtt::options(&config.broker)?;
    // Notifications publish on their own connection, so intake acks never wait behind them.
    let mut notify_mqtt = mqtt::options(&config.broker)?;
    notify_mqtt.set_client_id(format!("{}-notify", config.broker.client_id));
    let mqtt_endpoint = config.broker.endpoint().map_err(StartError::Internal)?;

    let store_config = config.store.clone();
    let archive_dir = config.store.archive_dir();
    let scope = SnapshotScope {
        now: now_millis(),
        problem_window_ms: millis(policy.problem.window),
    };
    let (store, snapshot) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let store = Store::open_configured(&store_config)?;
        let snapshot = store.snapshot(scope)?;
        Ok((store, snapshot))
    })
    .await
    .map_err(|e| StartError::Internal(e.to_string()))??;
    tracing::info!(
        path = %config.store.path.display(),
        open_incidents = snapshot.incidents.len(),
        live_alerts = snapshot.alerts.len(),
        nodes = snapshot.nodes.len(),
        open_problems = snapshot.problems.len(),
        maintenance_windows = snapshot.maintenance.len(),
        "store opened"
    );
    let reader = store.reader()?;
    let outbox_reader = store.reader()?;
    let retention_conn = match config.store.retain {
        Some(_) => Some(store.clone_connection()?),
        None => None,
    };
    let rule_count = rules.len();
    // The delivery task sends to the targets in force; a reload replaces them.
    let (targets_tx, targets_rx) = watch::channel(Arc::new(policy.notify.clone()));
    let engine = Engine::new(policy, rules, snapshot);

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::HttpBind {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| StartError::Internal(e.to_string()))?;
    let auth = Auth::load(&config.http, http_addr)?;
    if !auth.writes_enabled() {
        tracing::warn!(%http_addr, "API writes are disabled: the listener is not on loopback and [http] operator_token_file is not set");
    }

    let metrics = Arc::new(Metrics::default());
    metrics
        .control
        .rules_loaded
        .store(rule_count as u64, std::sync::atomic::Ordering::Relaxed);
    let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
    let control = ControlHandle::new(control_tx, config.rules.dir.clone(), metrics.clone());
    let (shutdown, _) = broadcast::channel(4);
    let (in_tx, in_rx) = mpsc::channel::<Inbound>(config.broker.intake_queue);
    let (write_tx, write_rx) = mpsc::channel::<WriteMsg<AckToken>>(WRITE_QUEUE);
    let (ack_tx, ack_rx) = mpsc::channel::<AckToken>(ACK_QUEUE);

    // Set up before the writer thread starts: it may fail (SMTP password file, TLS).
    let outbox_wake = Arc::new(Notify::new());
    let dispatcher = Dispatcher::new(NotifyDeps {
        config: config.notify.clone(),
        smtp: config.smtp.clone(),
        targets: targets_rx,
        topic_root: config.topic_root.clone(),
        mqtt: Some(notify_mqtt),
        reader: outbox_reader,
        write: write_tx.clone(),
        wake: outbox_wake.clone(),
        stats: metrics.notify.clone(),
    })?;

    let (fatal_tx, fatal) = mpsc::channel::<String>(4);
    let writer = store
        .into_writer(&config.store)
        .with_outbox_wake(outbox_wake);
    let writer_stats = metrics.writer.clone();
    let writer_fatal = fatal_tx.clone();
    let writer = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            if let Err(e) = writer.run(write_rx, ack_tx, writer_stats) {
                let _ = writer_fatal.blocking_send(format!("the store writer gave up: {e}"));
            }
        })
        .map_err(|e| StartError::Internal(format!("cannot start the writer thread: {e}")))?;

    let mut tasks = Vec::new();
    tasks.push((
        "ingest-mqtt",
        tokio::spawn(mqtt::run(
            mqtt_opts,
            config.topic_root.clone(),
            in_tx,
            ack_rx,
            metrics.ingest.clone(),
            shutdown.subscribe(),
        )),
    ));
    tasks.push(("notify", tokio::spawn(dispatcher.run(shutdown.subscribe()))));
    let (decoded_tx, decoded_rx) = mpsc::channel::<Received>(DECODED_QUEUE);
    tasks.push((
        "decode",
        tokio::spawn(stage::run(
            config.topic_root.clone(),
            in_rx,
            decoded_tx,
            shutdown.subscribe(),
        )),
    ));
    let pipeline_task = tokio::spawn(pipeline(
        engine,
        decoded_rx,
        control_rx,
        write_tx,
        targets_tx,
        metrics.clone(),
        shutdown.subscribe(),
    ));
    let pipeline_fatal = fatal_tx;
    let mut pipeline_shutdown = shutdown.subscribe();
    tasks.push((
        "pipeline",
        tokio::spawn(async move {
            // The pipeline ends by itself only at shutdown (intake closed); anything else is fatal.
            let result = pipeline_task.await;
            let stopping = !matches!(
                pipeline_shutdown.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            );
            match result {
                Err(e) => {
                    let _ = pipeline_fatal
                        .send(format!("the engine pipeline failed: {e}"))
                        .await;
                }
                Ok(()) if !stopping => {
                    let _ = pipeline_fatal
                        .send("the engine pipeline stopped".to_string())
                        .await;
                }
                Ok(()) => {}
            }
        }),
    ));
    if let (Some(keep), Some(conn)) = (config.store.retain, retention_conn) {
        tasks.push((
            "retention",
            tokio::spawn(retention(
                conn,
                archive_dir,
                keep,
                config.store.retention_interval,
                metrics.clone(),
                shutdown.subscribe(),
            )),
        ));
    }
    let api_state = ApiState {
        reader,
        metrics: metrics.clone(),
        control: control.clone(),
        auth: Arc::new(auth),
        queries: Arc::new(api::QueryGate::new(config.analytics.clone())),
    };
    tasks.push((
        "api",
        tokio::spawn(api::serve(listener, api_state, shutdown.subscribe())),
    ));
    tracing::info!(%http_addr, "HTTP API listening");
    Ok(Running {
        http_addr,
        mqtt_endpoint,
        metrics,
        control,
        shutdown,
        tasks,
        writer: Some(writer),
        fatal,
    })
}

/// Retention: at start and then every `interval`, move history older than `keep` to the
/// Parquet archive, on a connection of its own off the runtime.
async fn retention(
    conn: duckdb::Connection,
    dir: std::path::PathBuf,
    keep: Duration,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let conn = Arc::new(std::sync::Mutex::new(conn));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {}
        }
        let now = now_millis();
        let cutoff = now - millis(keep);
        let (conn, dir) = (conn.clone(), dir.clone());
        let run = tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| StoreError::Corrupt("retention connection lock poisoned".into()))?;
            crate::store::retention::run(&conn, &dir, cutoff, &now.to_string())
        })
        .await;
        let stats = &metrics.retention;
        match run {
            Ok(Ok(archived)) => {
                stats
                    .runs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stats.archived(&archived);
                if archived.rows() > 0 {
                    tracing::info!(
                        alerts = archived.alerts,
                        incidents = archived.incidents,
                        incident_alerts = archived.incident_alerts,
                        files = archived.files,
                        "retention moved history to the Parquet archive"
                    );
                }
            }
            Ok(Err(failed)) => {
                stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // What the run's earlier transactions committed is archived all the same.
                stats.archived(&failed.moved);
                tracing::warn!(error = %failed, rows_moved = failed.moved.rows(),
                    "retention failed; it runs again at the next interval");
            }
            Err(e) => {
                stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "retention task panicked");
            }
        }
    }
}

/// Run until `shutdown` resolves, then stop cleanly.
pub async fn run(
    config: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    start(config).await?.serve_until(shutdown).await
}

/// The engine's task: every inbound message, every control request and every tick through the
/// pure engine, effects to the writer. Ends at shutdown (or when intake closes), leaving what is
/// still queued unacknowledged for the broker to redeliver.
async fn pipeline(
    mut engine: Engine,
    mut inbound: mpsc::Receiver<Received>,
    mut control: mpsc::Receiver<Control>,
    write: mpsc::Sender<WriteMsg<AckToken>>,
    targets: watch::Sender<Arc<NotifyPolicy>>,
    metrics: Arc<Metrics>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let mut control_open = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut reject_log = RateLimit::log_once_a_minute();
    // Refused payloads kept per node and minute; beyond that they are only counted.
    let mut reject_store = RateLimit::new(REJECTED_KEPT_PER_MINUTE, 60_000);
    loop {
        // A node-status alert's `for` running out between two regular ticks: tick then.
        let due = engine.next_due().map(|at| {
            let wait = (at - now_millis()).max(0) as u64 + 1;
            tokio::time::Instant::now() + Duration::from_millis(wait)
        });
        let msg = tokio::select! {
            biased;
            // A stop takes nothing more: what is still queued is not acknowledged, so the
            // broker redelivers it to the next run; what went to the writer is committed
            // and acknowledged before the connection closes (`ingest::mqtt::run`).
            _ = shutdown.recv() => break,
            // Operator requests first: they are rare and someone is waiting for each.
            c = control.recv(), if control_open => {
                match c {
                    Some(c) => {
                        let stored = apply_control(&mut engine, c, &write, &targets).await;
                        publish_gauges(&engine, &metrics);
                        if !stored {
                            tracing::error!("store writer is gone; stopping the pipeline");
                            return;
                        }
                    }
                    None => control_open = false,
                }
                continue;
            }
            // Ticks before reports: with reports always queued (a large fleet), a biased
            // select that looked at the queue first never ticked, and a last will's `for`
            // ran out up to 15 s late at 50,000 nodes (BENCHMARKS.md). A tick comes at most
            // once a second or when an alert is due, so reports are not starved.
            _ = tick.tick() => {
                if !tick_once(&mut engine, &write, &metrics).await {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                if !tick_once(&mut engine, &write, &metrics).await {
                    return;
                }
                continue;
            }
            m = inbound.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let write_msg = match msg.decoded {
            Decoded::Input(input) => {
                let mut out = engine.handle(msg.received_at, input);
                if let Some(text) = msg.report_text {
                    carry_report_text(&mut out.effects, &text);
                }
                log_effects(&out.effects);
                WriteMsg {
                    effects: out.effects,
                    rejected: None,
                    ack: msg.ack,
                    committed: None,
                    outbox: Vec::new(),
                }
            }
            Decoded::Rejected(row) => {
                metrics.ingest.count_rejected(&row.reason);
                let who = match (&row.site, &row.node) {
                    (Some(s), Some(n)) => format!("{s}/{n}"),
                    _ => row.topic.clone(),
                };
                if reject_log.allow(&who, msg.received_at) {
                    tracing::warn!(from = %who, topic = %row.topic, reason = %row.reason, error = %row.error,
                        "payload refused (further refusals from this node are counted, not logged, for a minute)");
                }
                let keep = reject_store.allow(&who, msg.received_at);
                if !keep {
                    metrics
                        .ingest
                        .rejected_unstored
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                WriteMsg {
                    effects: Vec::new(),
                    rejected: keep.then_some(row),
                    ack: msg.ack,
                    committed: None,
                    outbox: Vec::new(),
                }
            }
            Decoded::Ignored => WriteMsg {
                effects: Vec::new(),
                rejected: None,
                ack: msg.ack,
                committed: None,
                outbox: Vec::new(),
            },
        };
        publish_gauges(&engine, &metrics);
        if write.send(write_msg).await.is_err() {
            tracing::error!("store writer is gone; stopping the pipeline");
            return;
        }
    }
    // The writer skips a report's node row that brings nothing new (`store::nodes`), so the
    // stored sequences and times may be behind: every row once more, and the next start
    // resumes from the engine's own.
    let rows = engine.node_rows();
    if !rows.is_empty() && write.send(WriteMsg::effects(rows)).await.is_err() {
        tracing::warn!("store writer is gone; the nodes' newest sequences are not stored");
    }
}

/// One tick of the engine at the wall clock's now, its effects to the writer. False when the
/// writer is gone.
async fn tick_once(
    engine: &mut Engine,
    write: &mpsc::Sender<WriteMsg<AckToken>>,
    metrics: &Metrics,
) -> bool {
    let out = engine.handle(now_millis(), Input::Tick);
    if !out.effects.is_empty() {
        log_effects(&out.effects);
        if write.send(WriteMsg::effects(out.effects)).await.is_err() {
            return false;
        }
    }
    publish_gauges(engine, metrics);
    true
}

/// Apply one control request at the wall clock's now; its effects go to the writer and the
/// answer carries a receiver told when they are committed. A reload also hands the new
/// notification targets to the delivery task. False when the writer is gone.
async fn apply_control(
    engine: &mut Engine,
    msg: Control,
    write: &mpsc::Sender<WriteMsg<AckToken>>,
    targets: &watch::Sender<Arc<NotifyPolicy>>,
) -> bool {
    let now = now_millis();
    let (committed_tx, committed) = oneshot::channel();
    let effects = match msg {
        Control::Reload {
            rules,
            policy,
            answer,
        } => {
            let count = rules.len();
            let notify = Arc::new(policy.notify.clone());
            let out = engine.reload(now, rules, *policy);
            targets.send_replace(notify);
            let resolved = out
                .effects
                .iter()
                .filter(
                    |e| matches!(e, Effect::Alert(a) if a.transition.state == AlertState::Resolved),
                )
                .count();
            tracing::info!(rules = count, alerts_resolved = resolved, "rules reloaded");
            let _ = answer.send(Applied {
                value: resolved,
                committed,
            });
            out.effects
        }
        Control::Command { command, answer } => match engine.command(now, command) {
            Ok((reply, out)) => {
                let _ = answer.send(Ok(Applied {
                    value: reply,
                    committed,
                }));
                out.effects
            }
            Err(e) => {
                tracing::info!(error = %e, "operator command refused");
                let _ = answer.send(Err(e));
                return true;
            }
        },
        Control::LiveNodes { answer } => {
            let _ = answer.send(engine.nodes().map(LiveNode::of).collect());
            return true;
        }
    };
    log_effects(&effects);
    write
        .send(WriteMsg {
            effects,
            rejected: None,
            ack: None,
            committed: Some(committed_tx),
            outbox: Vec::new(),
        })
        .await
        .is_ok()
}

fn publish_gauges(engine: &Engine, metrics: &Metrics) {
    if let Ok(mut g) = metrics.engine.lock() {
        *g = EngineGauges {
            counters: engine.counters().clone(),
            live_alerts: engine.live_alerts(),
            open_incidents: engine.open_incidents(),
        };
    }
}

/// Swap the decoded report the engine passed on to the store for the text it came in: the
/// effects may wait a while for the writer, and the decoded report is four to seven times
/// the size of its text ([`ReportBody`]).
fn carry_report_text(effects: &mut [Effect], text: &Arc<str>) {
    for e in effects {
        if let Effect::Node(n) = e
            && matches!(n.last_report, Some(ReportBody::Decoded(_)))
        {
            n.last_report = Some(ReportBody::Json(Arc::clone(text)));
        }
    }
}

fn log_effects(effects: &[Effect]) {
    for e in effects {
        match e {
            // One line per ticket event (the ticket row itself is written several times at once
            // when, say, a P1 opens and escalates).
            Effect::TicketEvent(ev) => {
                tracing::info!(ticket_id = ev.ticket_id, kind = %ev.kind, actor = %ev.actor, message = %ev.message, "ticket event");
            }
            Effect::Notification(n) => {
                tracing::debug!(id = n.id, channel = %n.channel, target = %n.target, event = %n.event, "notification queued");
            }
            Effect::Incident(i) if i.opened_at == i.updated_at => {
                tracing::info!(incident = i.id, node = %i.node, root_cause = %i.root_cause, "incident opened");
            }
            Effect::Problem(p) if p.opened_at == p.updated_at => {
                tracing::info!(problem = %p.number, incidents = p.incident_count, title = %p.title, "problem opened");
            }
            Effect::Alert(a)
                if a.suppressed_by.is_some() && a.transition.state == AlertState::Firing =>
            {
                tracing::info!(alert = %a.transition.key, maintenance = a.suppressed_by.as_deref().unwrap_or_default(),
                    "alert suppressed by maintenance");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
