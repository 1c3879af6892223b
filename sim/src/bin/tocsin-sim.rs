//! `tocsin-sim`: command line for the fleet simulator (run), the flood publisher and the counting subscriber.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rumqttc::QoS;
use tocsin_sim::count::{CountConfig, count};
use tocsin_sim::faults::FaultSpec;
use tocsin_sim::fleet::{FaultKind, FleetSpec};
use tocsin_sim::flood::{FloodConfig, flood};
use tocsin_sim::mqtt::Broker;
use tocsin_sim::run::{Connections, RunConfig, Summary, run};

#[derive(Debug, Parser)]
#[command(
    name = "tocsin-sim",
    version,
    about = "tocsin fleet simulator: simulated nodes on the real MQTT protocol, injected failures, failure-to-ticket latency"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a fleet for a while with failures on a plan; print a JSON summary (published,
    /// acknowledged, injected, failure-to-ticket latency).
    Run(RunArgs),
    /// Publish a fixed number of reports as fast as the broker takes them; print the rate.
    Flood(FloodArgs),
    /// Count messages on a subscription and nothing else: the broker's delivery ceiling.
    Count(CountArgs),
}

#[derive(Debug, Args)]
struct BrokerArgs {
    /// The MQTT broker.
    #[arg(
        long,
        env = "TOCSIN_SIM_BROKER",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    broker: String,
    /// Broker user name.
    #[arg(long, env = "TOCSIN_SIM_USERNAME")]
    username: Option<String>,
    /// File holding the broker password.
    #[arg(long, env = "TOCSIN_SIM_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
}

impl BrokerArgs {
    fn broker(&self) -> anyhow::Result<Broker> {
        let mut b = Broker::parse(&self.broker)?;
        b.username = self.username.clone();
        if let Some(p) = &self.password_file {
            let text = std::fs::read_to_string(p).map_err(|e| {
                anyhow::anyhow!("{}: cannot read the broker password: {e}", p.display())
            })?;
            b.password = Some(text.trim_end_matches(['\r', '\n']).to_string());
        }
        Ok(b)
    }
}

#[derive(Debug, Args)]
struct FleetArgs {
    /// Simulated nodes in all (monitoring hosts, switches, hosts).
    #[arg(long, short, default_value_t = 1_000)]
    nodes: usize,
    #[arg(long, default_value_t = 4)]
    sites: usize,
    #[arg(long, default_value_t = 40)]
    hosts_per_switch: usize,
    #[arg(long, default_value_t = 20)]
    switches_per_monitor: usize,
    /// Reporting interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Seed of the random walks and the failure plan: one seed, one run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Topic root.
    #[arg(long, default_value = tocsin_protocol::DEFAULT_TOPIC_ROOT)]
    root: String,
    /// Client id prefix.
    #[arg(long, default_value = "tocsin-sim")]
    client_prefix: String,
    /// QoS of reports.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
}

impl FleetArgs {
    fn spec(&self) -> FleetSpec {
        FleetSpec {
            nodes: self.nodes,
            sites: self.sites,
            hosts_per_switch: self.hosts_per_switch,
            switches_per_monitor: self.switches_per_monitor,
            interval_s: self.interval.as_secs().max(1) as u32,
            seed: self.seed,
        }
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    DiskFill,
    ServiceDown,
    SwitchDown,
    Flapping,
    AgentCrash,
}

impl From<Kind> for FaultKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::DiskFill => FaultKind::DiskFill,
            Kind::ServiceDown => FaultKind::ServiceDown,
            Kind::SwitchDown => FaultKind::SwitchDown,
            Kind::Flapping => FaultKind::Flapping,
            Kind::AgentCrash => FaultKind::AgentCrash,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    fleet: FleetArgs,
    /// How long nodes report, once all are connected.
    #[arg(long, short, default_value = "5m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Failures started per minute (0: none).
    #[arg(long, default_value_t = 6.0)]
    failures_per_minute: f64,
    /// Failure kinds, taken in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "disk-fill,service-down,switch-down,flapping,agent-crash"
    )]
    faults: Vec<Kind>,
    /// How long each failure lasts before its node recovers.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// No failure in the first part of the run (the collector settles in).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    quiet_start: Duration,
    /// Rule pack the collector runs (for each failure rule's `for`).
    #[arg(long, env = "TOCSIN_SIM_RULES", default_value = "rules")]
    rules: PathBuf,
    /// One MQTT connection per agent, each with its last will (`per-agent`), or the nodes
    /// spread over N connections (`N`), announcing a crash with the node's offline status.
    #[arg(long, default_value = "per-agent")]
    connections: String,
    /// New connections per second while the fleet connects.
    #[arg(long, default_value_t = 2_000)]
    connect_rate: u32,
    /// MQTT keep-alive of each connection.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    keep_alive: Duration,
    /// The collector's `[notify.mqtt.<name>] topic` whose `ticket.opened` events are
    /// watched for latency; `none` to not watch.
    #[arg(long, default_value = "tickets")]
    events_topic: String,
    /// After reporting ends, wait up to this long for the last tickets.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// End by closing connections without a `stopped` status or DISCONNECT.
    #[arg(long)]
    no_clean_stop: bool,
    /// Write each injected failure as a JSON line to this file.
    #[arg(long)]
    injections: Option<PathBuf>,
    /// Print the summary as JSON on stdout (default: a human summary on stderr and JSON on stdout).
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct FloodArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Reports to publish.
    #[arg(long, short, default_value_t = 100_000)]
    messages: u64,
    /// Connections to publish over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// QoS 1 publishes in flight per connection.
    #[arg(long, default_value_t = 1_000)]
    inflight: u16,
    /// Start each node's `seq` after this (a later flood of the same fleet is new reports,
    /// not duplicates).
    #[arg(long, default_value_t = 0)]
    after_seq: u64,
    /// Every node's uptime starts again: each reports a reboot (an incident storm when it
    /// follows an earlier flood). Without it a later flood carries the uptime on.
    #[arg(long)]
    restart_agents: bool,
}

#[derive(Debug, Args)]
struct CountArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Topic filter.
    #[arg(long, default_value = "tocsin/v1/+/+/report")]
    topic: String,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    #[arg(long, default_value = "tocsin-count")]
    client_id: String,
    /// Keep the session, so the broker queues messages while the counter is away.
    #[arg(long)]
    persistent: bool,
    /// Register the (persistent) subscription and leave.
    #[arg(long)]
    register_only: bool,
    /// Stop after this many messages.
    #[arg(long)]
    expect: Option<u64>,
    /// Stop once nothing arrived for this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Give up when nothing arrived within this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    first_within: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(a) => {
            let rule_for = tocsin_sim::rule_windows(&a.rules)
                .map_err(|e| anyhow::anyhow!("rules: {e} (pass --rules DIR)"))?;
            let kinds: Vec<FaultKind> = a.faults.iter().map(|k| (*k).into()).collect();
            // Failures late in the run would open their tickets after it: leave them out.
            // A failure shows in the next report (a filling disk: 5 reports later), then its
            // rule waits `for`; 15 s more for the ticket to travel.
            let interval_ms = a.fleet.interval.as_millis() as i64;
            let longest = kinds
                .iter()
                .map(|k| {
                    let reports = if *k == FaultKind::DiskFill { 5 } else { 1 };
                    reports * interval_ms + rule_for.get(k.rule()).copied().unwrap_or_default()
                })
                .max()
                .unwrap_or_default();
            let faults = FaultSpec {
                per_minute: a.failures_per_minute,
                kinds,
                hold_ms: a.hold.as_millis() as i64,
                start_ms: a.quiet_start.as_millis() as i64,
                end_ms: a.duration.as_millis() as i64 - longest - 15_000,
            };
            let connections = match a.connections.as_str() {
                "per-agent" => Connections::PerAgent,
                n => Connections::Shared(n.parse().map_err(|_| {
                    anyhow::anyhow!("--connections {n:?}: expected per-agent or a number")
                })?),
            };
            let cfg = RunConfig {
                broker: a.broker.broker()?,
                root: a.fleet.root.clone(),
                fleet: a.fleet.spec(),
                faults,
                duration: a.duration,
                connections,
                connect_rate: a.connect_rate,
                keep_alive: a.keep_alive,
                qos: a.fleet.qos(),
                client_prefix: a.fleet.client_prefix.clone(),
                events_topic: (a.events_topic != "none").then(|| a.events_topic.clone()),
                linger: a.linger,
                rule_for,
                clean_stop: !a.no_clean_stop,
                injections_log: a.injections.clone(),
            };
            let summary = run(cfg, ctrl_c()).await?;
            if !a.quiet {
                eprint!("{}", human(&summary));
            }
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Flood(a) => {
            let cfg = FloodConfig {
                broker: a.broker.broker()?,
                root: a.fleet.root.clone(),
                fleet: a.fleet.spec(),
                messages: a.messages,
                connections: a.connections,
                qos: a.fleet.qos(),
                inflight: a.inflight,
                client_prefix: a.fleet.client_prefix.clone(),
                after_seq: a.after_seq,
                restart_agents: a.restart_agents,
            };
            let s = flood(cfg).await?;
            println!("{}", serde_json::to_string(&s)?);
        }
        Command::Count(a) => {
            let cfg = CountConfig {
                broker: a.broker.broker()?,
                filter: a.topic.clone(),
                qos: if a.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                client_id: a.client_id.clone(),
                persistent: a.persistent,
                register_only: a.register_only,
                expect: a.expect,
                idle: a.idle,
                first_within: a.first_within,
            };
            let s = count(cfg).await?;
            println!("{}", serde_json::to_string(&s)?);
        }
    }
    Ok(())
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

fn human(s: &Summary) -> String {
    let l = &s.latency;
    let mut out = format!(
        "fleet: {} nodes ({} monitoring hosts, {} switches, {} hosts) in {} sites over {} connections, every {} s\n\
         published: {} reports ({:.0}/s) and {} statuses in {:.0} s; {} acknowledged by the broker, {} refused by a full client queue\n\
         agents dropped without a clean stop: {}; last wills the broker published: {}\n\
         the collector should have received {} messages (up to {} more: in flight when a connection was lost)\n\
         failures: {} planned, {} injected; tickets seen: {}\n",
        s.nodes,
        s.monitors,
        s.switches,
        s.hosts,
        s.sites,
        s.connections,
        s.interval_s,
        s.reports,
        s.reports_per_s,
        s.statuses,
        s.reporting_s,
        s.acked,
        s.dropped,
        s.unclean_disconnects,
        s.wills_published,
        s.expected_at_collector,
        s.in_doubt,
        s.failures_planned,
        s.failures_injected,
        s.tickets_seen,
    );
    out.push_str(&format!(
        "failure to ticket, net of the rule's `for`: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} of {} matched)\n",
        l.end_to_end.p50_ms, l.end_to_end.p90_ms, l.end_to_end.p99_ms, l.end_to_end.max_ms, l.matched, l.injected
    ));
    for (kind, sp) in &l.by_kind {
        out.push_str(&format!(
            "  {kind}: p50 {} ms, p99 {} ms, max {} ms ({})\n",
            sp.p50_ms, sp.p99_ms, sp.max_ms, sp.count
        ));
    }
    for u in &l.unmatched {
        out.push_str(&format!("  no ticket seen for failure {u}\n"));
    }
    out
}
