//! Analytics benchmark: generate a store with N incidents (default 1 million) and their
//! tickets, ticket events, alert transitions and problem records, then time the summary
//! endpoint's work and a typical query of every analytics view (BENCHMARKS.md).
//!
//! `cargo run --release -p tocsin-collector --example analytics_bench -- [--incidents N]
//! [--db PATH] [--runs R] [--memory-limit SIZE]`. With `--db` naming an existing generated
//! file, generation is skipped; `--memory-limit` opens the store as the collector does, with
//! that `[store] memory_limit`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tocsin_collector::store::{GroupBy, Store, SummaryQuery};

/// The generated history ends here (2026-11-30T00:00:00Z) and spans 365 days before it.
const END_MS: i64 = 1_796_083_200_000;
const DAY_MS: i64 = 86_400_000;

struct Args {
    incidents: i64,
    db: Option<PathBuf>,
    runs: usize,
    /// `[store] memory_limit`; None: DuckDB's own default (80% of the machine).
    memory_limit: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        incidents: 1_000_000,
        db: None,
        runs: 7,
        memory_limit: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--incidents" => a.incidents = value.parse()?,
            "--db" => a.db = Some(PathBuf::from(value)),
            "--runs" => a.runs = value.parse()?,
            "--memory-limit" => a.memory_limit = Some(value),
            other => bail!(
                "unknown flag {other}: use --incidents N, --db PATH, --runs R, --memory-limit SIZE"
            ),
        }
    }
    Ok(a)
}

/// The generator, in SQL so a million rows take seconds: incidents spread over a year on 2,000
/// nodes of 4 sites; one ticket per incident (90% acknowledged, 95% resolved, some breached,
/// 5% escalated); 4–5 events per ticket; 2 alert transitions per incident; 1,000 problem
/// records linking a fifth of the incidents.
fn generate(store: &mut Store, n: i64) -> Result<()> {
    let start = END_MS - 365 * DAY_MS;
    // Spelled out in Rust: DuckDB types small literals as INTEGER, and 365 * 86400000 overflows.
    let span = 365 * DAY_MS;
    let conn = store.connection();
    let sql = format!(
        "
        CREATE TEMP TABLE g AS
        SELECT i AS id,
               make_timestamp(({start} + (hash(i) % {span})::BIGINT) * 1000) AS opened,
               ['P1', 'P2', 'P3', 'P4'][1 + (hash(i * 7) % 4)::INTEGER] AS priority,
               ['network', 'hardware', 'software', 'configuration'][1 + (hash(i * 11) % 4)::INTEGER] AS category,
               'dc' || (hash(i * 13) % 4)::VARCHAR AS site,
               'node-' || (hash(i * 17) % 2000)::VARCHAR AS node,
               ['network', 'platform', 'dba', 'service-desk'][1 + (hash(i * 19) % 4)::INTEGER] AS grp,
               (60000 + hash(i * 23) % 1800000)::BIGINT AS ack_ms,
               (600000 + hash(i * 29) % 14400000)::BIGINT AS resolve_ms,
               hash(i * 31) % 100 AS roll
        FROM range(1, {n} + 1) t(i);

        INSERT INTO incidents (id, state, title, severity, category, priority, site, node, root_alert,
            root_cause, ticket_id, opened_at, resolved_at, closed_at, updated_at, symptoms, signature)
        SELECT id, CASE WHEN roll < 95 THEN 'closed' ELSE 'open' END, 'generated incident ' || id,
               'critical', category, priority, site, node, 'r/' || site || '/' || node,
               node || ': check failed', id, opened,
               CASE WHEN roll < 95 THEN opened + to_milliseconds(resolve_ms) END,
               CASE WHEN roll < 95 THEN opened + to_milliseconds(resolve_ms + 600000) END,
               opened + to_milliseconds(resolve_ms), (roll % 3)::INTEGER, 'sig-' || (id % 1000)
        FROM g;

        INSERT INTO tickets (id, number, kind, state, priority, impact, urgency, category,
            assignment_group, summary, description, incident_id, site, node, opened_at,
            acknowledged_at, resolved_at, closed_at, updated_at, response_target_ms,
            resolution_target_ms, response_due_at, resolution_due_at, response_breached_at,
            resolution_breached_at, resolution_elapsed_ms, escalation_level, cause_code)
        SELECT id, 'INC-' || lpad(id::VARCHAR, 7, '0'), 'incident',
               CASE WHEN roll < 95 THEN 'closed' WHEN roll < 98 THEN 'acknowledged' ELSE 'new' END,
               priority, 'medium', 'high', category, grp, 'generated', 'generated ticket', id, site,
               node, opened,
               CASE WHEN roll < 98 THEN opened + to_milliseconds(ack_ms) END,
               CASE WHEN roll < 95 THEN opened + to_milliseconds(resolve_ms) END,
               CASE WHEN roll < 95 THEN opened + to_milliseconds(resolve_ms + 600000) END,
               opened + to_milliseconds(resolve_ms), 900000, 14400000,
               opened + to_milliseconds(900000), opened + to_milliseconds(14400000),
               CASE WHEN ack_ms > 900000 THEN opened + to_milliseconds(900000) END,
               CASE WHEN resolve_ms > 14000000 THEN opened + to_milliseconds(14400000) END,
               CASE WHEN roll < 95 THEN resolve_ms - (roll % 5) * 60000 ELSE 0 END,
               CASE WHEN roll % 20 = 0 THEN 1 ELSE 0 END,
               CASE WHEN roll < 95 THEN 'software' END
        FROM g;

        INSERT INTO ticket_events (id, ticket_id, created_at, kind, actor, message, data)
        SELECT row_number() OVER (), ticket_id, ts, kind, actor, kind, data FROM (
            SELECT id AS ticket_id, opened AS ts, 'opened' AS kind, 'tocsin' AS actor, NULL::JSON AS data FROM g
            UNION ALL
            SELECT id, opened + to_milliseconds(ack_ms), 'acknowledged', 'alice', NULL FROM g WHERE roll < 98
            UNION ALL
            SELECT id, opened + to_milliseconds(resolve_ms), 'resolved', 'tocsin', NULL FROM g WHERE roll < 95
            UNION ALL
            SELECT id, opened + to_milliseconds(resolve_ms + 600000), 'closed', 'tocsin', NULL FROM g WHERE roll < 95
            UNION ALL
            SELECT id, opened + to_milliseconds(900000), 'escalated', 'tocsin',
                   '{{\"escalation\": {{\"level\": 1, \"name\": \"on-duty\", \"triggers\": [\"response_breached\"], \"reason\": \"not acknowledged\", \"targets\": [\"webhook:oncall\"]}}}}'::JSON
            FROM g WHERE roll % 20 = 0
        ) ORDER BY ts;

        INSERT INTO alerts (id, alert_key, rule, site, node, state, severity, category, summary,
            detail, started_at, changed_at, incident_id, flapping)
        SELECT row_number() OVER (), key, 'check_critical', site, node, state, 'critical', category,
               'generated', '', opened, ts, id, false FROM (
            SELECT id, site || '/' || node || '/check' AS key, site, node, category, opened, opened AS ts, 'firing' AS state FROM g
            UNION ALL
            SELECT id, site || '/' || node || '/check', site, node, category, opened,
                   opened + to_milliseconds(resolve_ms), 'resolved' FROM g WHERE roll < 95
        ) ORDER BY ts;

        INSERT INTO problems (id, number, state, signature, title, opened_at, updated_at, site, node,
            rule, category, kb, incident_count, last_incident_at)
        SELECT p, 'PRB-' || lpad(p::VARCHAR, 6, '0'), 'open', 'sig-' || p, 'recurring failure ' || p,
               make_timestamp({start} * 1000), make_timestamp({start} * 1000), 'dc1', 'node-' || p,
               'check_critical', 'software', 'kb/' || p, 0, NULL
        FROM range(1000) t(p);

        INSERT INTO problem_incidents (problem_id, incident_id, linked_at)
        SELECT id % 1000, id, opened FROM g WHERE id % 5 = 0;

        UPDATE problems SET incident_count = c.n, last_incident_at = c.last
        FROM (SELECT pi.problem_id, count(*) AS n, max(pi.linked_at) AS last
              FROM problem_incidents pi GROUP BY 1) c
        WHERE c.problem_id = problems.id;

        DROP TABLE g;
        CHECKPOINT;
        "
    );
    conn.execute_batch(&sql).context("generating")?;
    Ok(())
}

fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Duration, Duration, T)> {
    let mut last = f()?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        last = f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], times[times.len() - 1], last))
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let db =
        a.db.clone()
            .unwrap_or_else(|| dir.path().join("bench.duckdb"));
    let fresh = !db.exists();
    let archive = db.with_file_name("bench-archive");
    let mut store = match &a.memory_limit {
        // As the collector opens it, with its `[store] memory_limit`.
        Some(limit) => Store::open_configured(&tocsin_collector::config::StoreConfig {
            path: db.clone(),
            archive_dir: Some(archive.clone()),
            memory_limit: limit.clone(),
            ..Default::default()
        })?,
        None => Store::open_with_archive(&db, Some(&archive))?,
    };
    if fresh {
        let t = Instant::now();
        generate(&mut store, a.incidents)?;
        println!("generated {} incidents in {:.1?}", a.incidents, t.elapsed());
    }
    let counts: Vec<(String, i64)> = [
        "incidents",
        "tickets",
        "ticket_events",
        "alerts",
        "problems",
    ]
    .iter()
    .map(|t| {
        let n: i64 = store
            .connection()
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap_or(-1);
        (t.to_string(), n)
    })
    .collect();
    println!("rows: {counts:?}");

    let reader = store.reader()?;
    let mut worst = Duration::ZERO;
    println!("| what | median | max | result |");
    println!("| --- | --- | --- | --- |");
    let mut report = |name: &str, median: Duration, max: Duration, result: String| {
        worst = worst.max(median);
        println!("| {name} | {median:.1?} | {max:.1?} | {result} |");
    };
    for (label, group_by, days) in [
        ("summary, last 30 days, by priority", GroupBy::Priority, 30),
        ("summary, last 30 days, by day", GroupBy::Day, 30),
        ("summary, last 365 days, by group", GroupBy::Group, 365),
        ("summary, last 365 days, by site", GroupBy::Site, 365),
    ] {
        let q = SummaryQuery {
            from: END_MS - days * DAY_MS,
            to: END_MS,
            group_by,
        };
        // The endpoint's work: the queries and the JSON answer.
        let (median, max, json) = time(a.runs, || Ok(serde_json::to_string(&reader.summary(q)?)?))?;
        report(label, median, max, format!("{} bytes of JSON", json.len()));
    }
    let views = [
        (
            "v_ticket_sla: breached in the last 7 days, newest 100",
            "SELECT * FROM v_ticket_sla WHERE opened_at >= TIMESTAMP '2026-11-23' AND (response_breached OR resolution_breached) ORDER BY opened_at DESC LIMIT 100",
        ),
        (
            "v_ticket_sla: compliance by group, whole year",
            "SELECT assignment_group, count(*), avg(CASE WHEN response_breached OR resolution_breached THEN 0 ELSE 1 END) FROM v_ticket_sla GROUP BY ALL",
        ),
        (
            "v_mtta_mttr: by priority, last 30 days",
            "SELECT priority, sum(mtta_ms * acknowledged) / sum(acknowledged), sum(mttr_ms * resolved) / sum(resolved) FROM v_mtta_mttr WHERE day >= TIMESTAMP '2026-10-31' GROUP BY priority",
        ),
        ("v_mtta_mttr: every row", "SELECT * FROM v_mtta_mttr"),
        (
            "v_incidents_daily: every row",
            "SELECT * FROM v_incidents_daily",
        ),
        (
            "v_top_problems: top 20",
            "SELECT * FROM v_top_problems LIMIT 20",
        ),
        (
            "v_noisy_nodes: top 20",
            "SELECT * FROM v_noisy_nodes LIMIT 20",
        ),
        (
            "v_escalations: newest 100",
            "SELECT * FROM v_escalations ORDER BY escalated_at DESC LIMIT 100",
        ),
    ];
    for (label, sql) in views {
        let (median, max, rows) = time(a.runs, || {
            let handle = reader.query_handle()?;
            let r = handle
                .run(sql, 10_000, tocsin_collector::store::RowFormat::Rows)
                .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
            Ok(r.row_count)
        })?;
        report(label, median, max, format!("{rows} rows"));
    }
    println!("slowest median: {worst:.1?}");
    Ok(())
}
