//! `tocsin-sim run`: the fleet on the broker for a while, failures injected on plan, tickets
//! watched, and a summary of what was published and how fast failures became tickets.

mod group;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::QoS;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::faults::{FaultSpec, Planned, plan};
use crate::fleet::{FaultKind, Fleet, FleetSpec, Role};
use crate::latency::{Injected, LatencyReport, TicketSeen, measure};
use crate::mqtt::Broker;
use group::{Cmd, Group};

/// How simulated nodes map onto MQTT connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// As in production: one connection per agent (a monitoring host carries its switches'
    /// reports), each with its node's last will.
    PerAgent,
    /// For fleets beyond the connections one machine can hold (a process here may have
    /// 20,000 file descriptors, the broker included): the nodes a planned failure takes off
    /// the network (a crash, the hosts behind a failing switch) still get a connection of
    /// their own with their last will, so the broker publishes it as in production; all
    /// other nodes share this many connections.
    Shared(usize),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub broker: Broker,
    pub root: String,
    pub fleet: FleetSpec,
    pub faults: FaultSpec,
    /// How long nodes report (after all connected).
    pub duration: Duration,
    pub connections: Connections,
    /// New connections per second while connecting.
    pub connect_rate: u32,
    pub keep_alive: Duration,
    pub qos: QoS,
    pub client_prefix: String,
    /// The `mqtt:` target's topic the collector publishes ticket events under (`[notify.mqtt.<name>] topic`); None: do not watch.
    pub events_topic: Option<String>,
    /// How long to wait after reporting ends for the last tickets.
    pub linger: Duration,
    /// Rule name -> `for` (ms), for the latency net of `for`.
    pub rule_for: BTreeMap<String, i64>,
    /// End with a `stopped` status and DISCONNECT per node (false: just close).
    pub clean_stop: bool,
    /// Write each injection as a JSON line here.
    pub injections_log: Option<PathBuf>,
}

/// Shared counters of all connections.
#[derive(Debug, Default)]
pub struct Stats {
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    pub reports: AtomicU64,
    pub statuses: AtomicU64,
    /// Publishes the broker acknowledged (QoS 1).
    pub acked: AtomicU64,
    /// Publishes refused by a full client queue.
    pub dropped: AtomicU64,
    /// Connections dropped without DISCONNECT (each makes the broker publish a last will).
    pub unclean: AtomicU64,
    /// Last wills the broker published, as the watcher saw them. Usually `unclean`, but
    /// Mosquitto 2.0 may publish a crashed agent's will a second time when the agent
    /// reconnects, or none when a new connection takes over a session before the old one's
    /// loss was noticed.
    pub wills: AtomicU64,
    /// Times the watcher lost its connection (wills published meanwhile were not seen).
    pub watch_reconnects: AtomicU64,
    /// Publishes in flight (sent, not acknowledged) when a connection was lost: the client
    /// sends them again, and a first copy the broker took before the loss reaches the
    /// collector too (as a duplicate).
    pub in_doubt: AtomicU64,
    pub injected: AtomicU64,
}

/// What a run did, printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub monitors: usize,
    pub switches: usize,
    pub hosts: usize,
    pub sites: usize,
    pub connections: usize,
    pub interval_s: u32,
    pub reporting_s: f64,
    pub reports: u64,
    pub statuses: u64,
    /// Publishes the broker acknowledged.
    pub acked: u64,
    pub dropped: u64,
    /// Connections dropped without DISCONNECT (crashes, hosts cut off).
    pub unclean_disconnects: u64,
    /// Last wills the broker published (seen by a subscriber to every status).
    pub wills_published: u64,
    /// Times that subscriber lost its connection; wills published meanwhile were missed.
    pub watch_reconnects: u64,
    pub connects: u64,
    pub connect_errors: u64,
    /// Publishes in flight when a connection was lost: each may reach the collector twice,
    /// so it may count up to this many messages more than `expected_at_collector`.
    pub in_doubt: u64,
    pub reports_per_s: f64,
    /// Messages the collector should have received: acknowledged publishes plus the last
    /// wills the broker published.
    pub expected_at_collector: u64,
    pub failures_planned: usize,
    pub failures_injected: u64,
    pub tickets_seen: usize,
    pub latency: LatencyReport,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the rule pack has no rule {0:?}, which failures of kind {1} are expected to fire (pass --rules DIR, or leave that kind out with --faults)"
    )]
    MissingRule(String, &'static str),
    #[error("{path}: cannot write the injection log: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot subscribe to ticket events on the broker within 30 s: is it running at {0}?")]
    Watch(String),
}

/// Run the fleet until the configured duration has passed or `shutdown` resolves.
pub async fn run(
    cfg: RunConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary, RunError> {
    for k in &cfg.faults.kinds {
        if !cfg.rule_for.contains_key(k.rule()) {
            return Err(RunError::MissingRule(k.rule().to_string(), k.as_str()));
        }
    }
    let fleet = Fleet::build(&cfg.fleet);
    let planned = plan(&fleet, &cfg.faults, cfg.fleet.seed);
    let children = fleet.children();
    let n = fleet.nodes.len();
    let (monitors, switches, hosts) = (
        fleet.count(Role::Monitor),
        fleet.count(Role::Switch),
        fleet.count(Role::Host),
    );

    // Nodes onto connections.
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut agents: Vec<Option<usize>> = Vec::new();
    match cfg.connections {
        Connections::PerAgent => {
            let mut of_monitor: BTreeMap<usize, usize> = BTreeMap::new();
            for node in &fleet.nodes {
                match node.role {
                    Role::Switch => {
                        let m = node.parent.and_then(|p| of_monitor.get(&p).copied());
                        match m {
                            Some(g) => members[g].push(node.index),
                            None => {
                                members.push(vec![node.index]);
                                agents.push(None);
                            }
                        }
                    }
                    Role::Monitor | Role::Host => {
                        if node.role == Role::Monitor {
                            of_monitor.insert(node.index, members.len());
                        }
                        members.push(vec![node.index]);
                        agents.push(Some(0));
                    }
                }
            }
        }
        Connections::Shared(k) => {
            // Nodes that will drop off the network keep a connection (and will) of their own.
            let mut own = std::collections::BTreeSet::new();
            for p in &planned {
                match p.kind {
                    FaultKind::AgentCrash => {
                        own.insert(p.node);
                    }
                    FaultKind::SwitchDown => {
                        own.extend(children.get(&p.node).into_iter().flatten().copied());
                    }
                    _ => {}
                }
            }
            let k = k.clamp(1, n.saturating_sub(own.len()).max(1));
            members = vec![Vec::new(); k];
            agents = vec![None; k];
            let mut shared = 0usize;
            for i in 0..n {
                if own.contains(&i) {
                    members.push(vec![i]);
                    agents.push(Some(0));
                } else {
                    members[shared % k].push(i);
                    shared += 1;
                }
            }
            let kept: Vec<(Vec<usize>, Option<usize>)> = members
                .drain(..)
                .zip(agents.drain(..))
                .filter(|(m, _)| !m.is_empty())
                .collect();
            (members, agents) = kept.into_iter().unzip();
        }
    }
    let groups = members.len();
    let mut group_of = vec![0usize; n];
    for (g, list) in members.iter().enumerate() {
        for &i in list {
            group_of[i] = g;
        }
    }

    let stats = Arc::new(Stats::default());
    let rule_for = Arc::new(cfg.rule_for.clone());
    // Connections stop when reporting ends; the ticket watcher lingers for the last tickets.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (watch_stop_tx, watch_stop_rx) = tokio::sync::watch::channel(false);
    let (inj_tx, mut inj_rx) = mpsc::channel::<Injected>(4096);

    // The watcher subscribes before any node reports: ticket events, and every status for
    // the last wills the broker publishes.
    let seen: Arc<Mutex<Vec<TicketSeen>>> = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch::run(
        cfg.broker.clone(),
        watch::Filters {
            statuses: format!("{}/v1/+/+/status", cfg.root),
            tickets: cfg
                .events_topic
                .as_ref()
                .map(|topic| format!("{}/v1/events/{topic}/ticket.opened", cfg.root)),
        },
        format!("{}-watch", cfg.client_prefix),
        ready_tx,
        watch_stop_rx,
        seen.clone(),
        stats.clone(),
    ));
    if tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .is_err()
    {
        let _ = watch_stop_tx.send(true);
        return Err(RunError::Watch(format!(
            "mqtt://{}:{}",
            cfg.broker.host, cfg.broker.port
        )));
    }

    let t0 = Instant::now();
    let rate = f64::from(cfg.connect_rate.max(1));
    let connecting = Duration::from_secs_f64(groups as f64 / rate);
    let start = t0 + connecting + Duration::from_secs(2);
    let interval = Duration::from_secs(u64::from(cfg.fleet.interval_s.max(1)));
    let (inflight, qos) = match cfg.connections {
        Connections::PerAgent => (20, cfg.qos),
        Connections::Shared(_) => (1_000, cfg.qos),
    };
    let mut nodes: Vec<Option<crate::fleet::SimNode>> = fleet.nodes.into_iter().map(Some).collect();
    let mut senders = Vec::with_capacity(groups);
    let mut tasks = Vec::with_capacity(groups);
    for (g, list) in members.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Cmd>(64);
        senders.push(tx);
        let group_nodes: Vec<_> = list.iter().filter_map(|&i| nodes[i].take()).collect();
        // Reports spread evenly over the interval, by fleet index.
        let first_due = list
            .iter()
            .map(|&i| start + interval.mul_f64(i as f64 / n.max(1) as f64))
            .collect();
        let group = Group {
            client_id: format!("{}-{g}", cfg.client_prefix),
            nodes: group_nodes,
            agent: agents[g],
            broker: cfg.broker.clone(),
            root: cfg.root.clone(),
            keep_alive: cfg.keep_alive,
            inflight,
            qos,
            interval,
            connect_at: t0 + Duration::from_secs_f64(g as f64 / rate),
            first_due,
            stats: stats.clone(),
            injected: inj_tx.clone(),
            rule_for: rule_for.clone(),
            clean_stop: cfg.clean_stop,
        };
        tasks.push(tokio::spawn(group::run(group, rx, stop_rx.clone())));
    }
    drop(inj_tx);
    tracing::info!(
        nodes = n,
        connections = groups,
        failures = planned.len(),
        connecting_s = connecting.as_secs_f64(),
        "fleet starting"
    );

    // Injections are gathered (and logged) as they happen.
    let log_path = cfg.injections_log.clone();
    let recorder = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut file = match &log_path {
            Some(p) => Some(std::fs::File::create(p).map_err(|source| RunError::Log {
                path: p.clone(),
                source,
            })?),
            None => None,
        };
        while let Some(i) = inj_rx.recv().await {
            if let (Some(f), Some(p)) = (&mut file, &log_path) {
                use std::io::Write as _;
                let line = serde_json::to_string(&i).unwrap_or_default();
                writeln!(f, "{line}").map_err(|source| RunError::Log {
                    path: p.clone(),
                    source,
                })?;
            }
            all.push(i);
        }
        Ok::<_, RunError>(all)
    });

    // The schedule: failures and recoveries, in time order.
    let mut events: Vec<(i64, Planned, bool)> = planned
        .iter()
        .flat_map(|p| [(p.at_ms, *p, false), (p.heal_ms, *p, true)])
        .collect();
    events.sort_by_key(|(t, p, heal)| (*t, *heal, p.id));
    let end = start + cfg.duration;
    let schedule = async {
        for (at, p, heal) in events {
            let when = start + Duration::from_millis(at.max(0) as u64);
            if when >= end {
                break;
            }
            sleep_until(when).await;
            let mut targets = vec![(p.node, p.kind)];
            if p.kind == FaultKind::SwitchDown {
                targets.extend(
                    children
                        .get(&p.node)
                        .into_iter()
                        .flatten()
                        .map(|&h| (h, p.kind)),
                );
            }
            for (i, (node, kind)) in targets.into_iter().enumerate() {
                let cmd = match (heal, i) {
                    (true, _) => Cmd::Heal { node },
                    (false, 0) => Cmd::Fault {
                        node,
                        kind,
                        id: p.id,
                    },
                    (false, _) => Cmd::CutOff { node, id: p.id },
                };
                let _ = senders[group_of[node]].send(cmd).await;
            }
            tracing::debug!(
                id = p.id,
                kind = p.kind.as_str(),
                heal,
                "failure event sent"
            );
        }
        sleep_until(end).await;
    };
    tokio::select! {
        _ = schedule => {}
        _ = shutdown => tracing::info!("interrupted; stopping the fleet"),
    }
    let reporting = start.elapsed().min(cfg.duration);
    // Stop the nodes; keep watching for tickets a while.
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let injections = recorder.await.unwrap_or_else(|_| Ok(Vec::new()))?;
    let all_matched = |seen: &Mutex<Vec<TicketSeen>>| {
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        measure(&injections, &seen).unmatched.is_empty()
    };
    let linger_end = Instant::now() + cfg.linger;
    while cfg.events_topic.is_some() && Instant::now() < linger_end && !all_matched(&seen) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The last wills of connections dropped at the end come within milliseconds; wait until
    // as many as connections were lost have come and no more for half a second, 5 s at most.
    let settle_end = Instant::now() + Duration::from_secs(5);
    let mut wills = stats.wills.load(Ordering::Relaxed);
    while Instant::now() < settle_end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stats.wills.load(Ordering::Relaxed);
        if now == wills && now >= stats.unclean.load(Ordering::Relaxed) {
            break;
        }
        wills = now;
    }
    let _ = watch_stop_tx.send(true);
    let _ = watcher.await;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let latency = measure(&injections, &seen);
    let s = &stats;
    let reports = s.reports.load(Ordering::Relaxed);
    let acked = s.acked.load(Ordering::Relaxed);
    let unclean = s.unclean.load(Ordering::Relaxed);
    let wills = s.wills.load(Ordering::Relaxed);
    Ok(Summary {
        nodes: n,
        monitors,
        switches,
        hosts,
        sites: cfg.fleet.sites,
        connections: groups,
        interval_s: cfg.fleet.interval_s,
        reporting_s: reporting.as_secs_f64(),
        reports,
        statuses: s.statuses.load(Ordering::Relaxed),
        acked,
        dropped: s.dropped.load(Ordering::Relaxed),
        unclean_disconnects: unclean,
        wills_published: wills,
        watch_reconnects: s.watch_reconnects.load(Ordering::Relaxed),
        connects: s.connects.load(Ordering::Relaxed),
        connect_errors: s.connect_errors.load(Ordering::Relaxed),
        in_doubt: s.in_doubt.load(Ordering::Relaxed),
        reports_per_s: reports as f64 / reporting.as_secs_f64().max(1e-9),
        expected_at_collector: acked + wills,
        failures_planned: planned.len(),
        failures_injected: s.injected.load(Ordering::Relaxed),
        tickets_seen: seen.len(),
        latency,
    })
}
