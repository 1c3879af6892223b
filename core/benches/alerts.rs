//! Alert ingest and grouping: a generated set of failing service checks through the engine,
//! the tocsin side of the comparison with Prometheus Alertmanager (`bench/alertmanager`).
//!
//! `--alerts N` (default 100,000) alerts over `--per-node K` (default 5) checks per node:
//! N/K nodes `host-000000`… in 4 sites `dc1`..`dc4`, each sending one report whose K service
//! checks `tcp:svc-J` are all critical (the way tocsin receives alerts: in a node's report).
//! The shipped rule pack (`rules/`, rule `check_critical`: `for = "0s"`) and policy run on
//! one thread with no broker and no store; reports are spread over a few simulated seconds
//! with a tick each second. Prints alerts/s (transitions to firing per wall second of engine
//! time), incidents and tickets opened (grouping by node: one incident per node) and µs per
//! alert. Only the engine's time is measured: every input is generated before the clock
//! starts.
//!
//! `--write-alerts PATH` writes the same alerts as an Alertmanager API v2 JSON array
//! (`POST /api/v2/alerts`), so the exact same set can go to Alertmanager; `--format json`
//! prints the figures as one JSON line.
//!
//! `cargo bench -p tocsin-core --bench alerts -- --alerts 100000 --per-node 5`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tocsin_core::engine::{Effect, Engine, Input, Policy, Snapshot};
use tocsin_core::rules::{AlertState, load_rules_dir};
use tocsin_protocol::{CheckResult, CheckStatus, NodeKind, NodeState, Report, Status};

/// The collector binary's allocator, as in the engine bench.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Same simulated epoch as the engine bench (2025-11-29).
const START: i64 = 1_764_400_000_000;
/// The reports arrive spread over this many simulated milliseconds.
const SPREAD_MS: i64 = 5_000;
const SITES: usize = 4;
const OUTPUT: &str = "connection refused";

struct Args {
    alerts: usize,
    per_node: usize,
    write_alerts: Option<PathBuf>,
    json: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "alerts bench: {msg}\nusage: alerts [--alerts N] [--per-node K] [--write-alerts PATH] [--format text|json]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        alerts: 100_000,
        per_node: 5,
        write_alerts: None,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--alerts" => {
                a.alerts = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("--alerts needs a number"));
            }
            "--per-node" => {
                a.per_node = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|k| *k > 0)
                    .unwrap_or_else(|| usage("--per-node needs a number above 0"));
            }
            "--write-alerts" => {
                a.write_alerts = Some(
                    args.next()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| usage("--write-alerts needs a path")),
                );
            }
            "--format" => match args.next().as_deref() {
                Some("json") => a.json = true,
                Some("text") => a.json = false,
                _ => usage("--format is text or json"),
            },
            // cargo bench passes --bench to harness-less targets.
            "--bench" => {}
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

/// One generated node: its name, site and how many failing checks its report carries.
struct Node {
    name: String,
    site: String,
    checks: usize,
    ts: i64,
}

fn nodes(alerts: usize, per_node: usize) -> Vec<Node> {
    let count = alerts.div_ceil(per_node);
    (0..count)
        .map(|i| Node {
            name: format!("host-{i:06}"),
            site: format!("dc{}", i % SITES + 1),
            checks: per_node.min(alerts - i * per_node),
            ts: START + (i as i64 * SPREAD_MS) / count as i64,
        })
        .collect()
}

fn birth(n: &Node) -> Input {
    Input::Status {
        site: n.site.clone(),
        node: n.name.clone(),
        status: Box::new(Status {
            v: 1,
            state: NodeState::Online,
            ts: None,
            agent: None,
            inventory: None,
            parents: Vec::new(),
            labels: [("criticality".to_string(), "medium".to_string())].into(),
        }),
    }
}

fn report(n: &Node) -> Input {
    Input::Report(Box::new(Report {
        v: 1,
        node: n.name.clone(),
        site: n.site.clone(),
        kind: NodeKind::Host,
        seq: 1,
        ts: n.ts,
        interval_s: 10,
        via: None,
        metrics: Vec::new(),
        checks: (0..n.checks)
            .map(|j| CheckResult {
                name: format!("tcp:svc-{j}"),
                status: CheckStatus::Critical,
                output: OUTPUT.into(),
                latency_ms: None,
            })
            .collect(),
    }))
}

/// The same alerts in Alertmanager's API v2 form (`POST /api/v2/alerts`), one array.
fn write_alerts(path: &Path, nodes: &[Node]) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(b"[")?;
    let mut first = true;
    for n in nodes {
        let starts_at = jiff::Timestamp::from_millisecond(n.ts)
            .map_err(std::io::Error::other)?
            .to_string();
        for j in 0..n.checks {
            if !first {
                out.write_all(b",\n")?;
            }
            first = false;
            let alert = serde_json::json!({
                "labels": {
                    "alertname": "ServiceDown",
                    "site": n.site,
                    "instance": n.name,
                    "service": format!("svc-{j}"),
                    "severity": "critical",
                },
                "annotations": {
                    "summary": format!("{}: check tcp:svc-{j} is critical: {OUTPUT}", n.name),
                },
                "startsAt": starts_at,
                "generatorURL": "http://127.0.0.1/rules#check_critical",
            });
            serde_json::to_writer(&mut out, &alert)?;
        }
    }
    out.write_all(b"]\n")?;
    out.flush()
}

fn main() {
    let args = parse_args();
    let rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let rules = load_rules_dir(&rules_dir).expect("shipped rules load");
    let policy = Policy::load_dir(&rules_dir).expect("shipped policy loads");
    let rule_count = rules.len();
    let mut engine = Engine::new(policy, rules, Snapshot::default());
    let nodes = nodes(args.alerts, args.per_node);

    if let Some(path) = &args.write_alerts
        && let Err(e) = write_alerts(path, &nodes)
    {
        eprintln!("alerts bench: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }

    // Births are not timed: the nodes are known before their alerts come in.
    for n in &nodes {
        engine.handle(START - 1_000, birth(n));
    }
    let inputs: Vec<(i64, Input)> = nodes.iter().map(|n| (n.ts, report(n))).collect();
    let end = START + SPREAD_MS + 1_000;

    let mut firing = 0u64;
    let mut transitions = 0u64;
    let mut effects = 0u64;
    let mut count = |fx: &[Effect]| {
        effects += fx.len() as u64;
        for e in fx {
            if let Effect::Alert(a) = e {
                transitions += 1;
                if a.transition.state == AlertState::Firing {
                    firing += 1;
                }
            }
        }
    };
    // Time at the end of the first tenth of the reports and at the start of the last tenth:
    // the cost of an alert as the number of open incidents grows.
    let total = inputs.len();
    let tenth = (total / 10).max(1);
    let mut first_tenth = None;
    let mut before_last_tenth = None;
    let started = Instant::now();
    let mut next_tick = START;
    for (done, (ts, input)) in inputs.into_iter().enumerate() {
        if done == total.saturating_sub(tenth) {
            before_last_tenth = Some(started.elapsed());
        }
        while next_tick <= ts {
            count(&engine.handle(next_tick, Input::Tick).effects);
            next_tick += 1_000;
        }
        count(&engine.handle(ts, input).effects);
        if done + 1 == tenth {
            first_tenth = Some(started.elapsed());
        }
    }
    let last_reports = started.elapsed();
    while next_tick <= end {
        count(&engine.handle(next_tick, Input::Tick).effects);
        next_tick += 1_000;
    }
    let secs = started.elapsed().as_secs_f64();

    let c = engine.counters();
    let alerts_per_s = firing as f64 / secs;
    let us_per_alert = secs * 1e6 / firing.max(1) as f64;
    // Alerts in a tenth of the reports (the last node may carry fewer checks: close enough).
    let tenth_alerts = (tenth * args.per_node) as f64;
    let first_us = first_tenth.map_or(0.0, |d| d.as_secs_f64() * 1e6 / tenth_alerts);
    let last_us = before_last_tenth.map_or(0.0, |d| {
        (last_reports - d).as_secs_f64() * 1e6 / tenth_alerts
    });
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "alerts": args.alerts,
                "per_node": args.per_node,
                "nodes": nodes.len(),
                "rules": rule_count,
                "firing": firing,
                "transitions": transitions,
                "effects": effects,
                "incidents": c.incidents_opened,
                "tickets": c.tickets_opened,
                "secs": secs,
                "alerts_per_s": alerts_per_s,
                "us_per_alert": us_per_alert,
                "first_tenth_us_per_alert": first_us,
                "last_tenth_us_per_alert": last_us,
            })
        );
    } else {
        println!(
            "alert ingest benchmark: {} alerts, {} nodes x {} checks in {SITES} sites, {rule_count} shipped rules",
            args.alerts,
            nodes.len(),
            args.per_node
        );
        println!(
            "  firing: {firing} (transitions {transitions}, effects {effects}) in {secs:.3} s = {alerts_per_s:.0} alerts/s"
        );
        println!(
            "  incidents opened {}, tickets opened {}",
            c.incidents_opened, c.tickets_opened
        );
        println!(
            "  per alert: {us_per_alert:.2} us (first tenth of the nodes {first_us:.2} us, last tenth {last_us:.2} us)"
        );
    }
    if firing != args.alerts as u64 || c.incidents_opened != nodes.len() as u64 {
        eprintln!(
            "alerts bench: expected {} firing alerts and {} incidents, got {firing} and {}",
            args.alerts,
            nodes.len(),
            c.incidents_opened
        );
        std::process::exit(1);
    }
}
