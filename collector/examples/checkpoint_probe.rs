//! Checkpoint probe: how long a small "desk" commit (an incident upserted, a ticket inserted)
//! waits while DuckDB checkpoints, with the checkpoint inside the writer's commit (DuckDB's
//! automatic one) or beside it on a connection of its own (BENCHMARKS.md).
//!
//! `cargo run --release -p tocsin-collector --example checkpoint_probe --
//! [inline|beside|beside-concurrent] [--nodes N] [--seconds S]`. Bulk load as at 50,000
//! nodes: every 100 ms the light columns of `nodes / 20` nodes updated and `nodes / 600`
//! 2 KB reports appended; a desk commit every 50 ms. In the `beside` modes a thread of its
//! own checkpoints whenever the WAL reaches 16 MB and the bulk writes pause meanwhile (the
//! desk ones do not); `beside-concurrent` holds an inserting transaction open during each
//! checkpoint, which makes DuckDB's checkpoint CONCURRENT (it then never takes the vacuum
//! lock exclusively).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use duckdb::{Connection, params};

const WAL_THRESHOLD: u64 = 16 << 20;

fn main() -> Result<()> {
    let mut mode = "inline".to_string();
    let mut nodes = 50_000usize;
    let mut seconds = 60u64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "inline" | "beside" | "beside-concurrent" => mode = a,
            "--nodes" => nodes = it.next().context("--nodes N")?.parse()?,
            "--seconds" => seconds = it.next().context("--seconds S")?.parse()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("probe.duckdb");
    let mut conn = Connection::open(&path)?;
    conn.execute_batch(
        "CREATE TABLE nodes (site VARCHAR, node VARCHAR, state VARCHAR, last_seq UBIGINT,
            last_ts TIMESTAMP, updated_at TIMESTAMP, inventory JSON, PRIMARY KEY (site, node));
         CREATE TABLE node_reports (site VARCHAR, node VARCHAR, report_at TIMESTAMP, seq UBIGINT, report JSON);
         CREATE TABLE incidents (id BIGINT PRIMARY KEY, state VARCHAR, title VARCHAR, updated_at TIMESTAMP);
         CREATE TABLE tickets (id BIGINT PRIMARY KEY, incident_id BIGINT, state VARCHAR, opened_at TIMESTAMP);",
    )?;
    conn.execute(
        "INSERT INTO nodes SELECT 'site-' || (i % 50), 'node-' || i, 'up', 0, now(), now(),
            '{\"os\":\"debian\",\"cpus\":4}' FROM range(?) t(i)",
        params![nodes as i64],
    )?;
    conn.execute_batch("CHECKPOINT")?;
    conn.execute_batch("CREATE TABLE hold (x INTEGER)")?;
    if mode != "inline" {
        conn.execute_batch("SET checkpoint_threshold = '1TB'")?;
    } else {
        conn.execute_batch("SET checkpoint_threshold = '16MB'")?;
    }
    let wal = path.with_extension("duckdb.wal");
    let checkpointing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let checker = if mode != "inline" {
        let c = conn.try_clone()?;
        // An open transaction that inserted holds DuckDB's vacuum lock shared, so the
        // checkpoint runs CONCURRENT (no vacuum) and never takes it exclusively.
        let holder = (mode == "beside-concurrent")
            .then(|| conn.try_clone())
            .transpose()?;
        let flag = checkpointing.clone();
        let stop = stop.clone();
        let wal = wal.clone();
        Some(std::thread::spawn(move || -> Result<Vec<Duration>> {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                if size < WAL_THRESHOLD {
                    continue;
                }
                flag.store(true, Ordering::SeqCst);
                if let Some(h) = &holder {
                    h.execute_batch("BEGIN; INSERT INTO hold VALUES (1)")?;
                }
                let t = Instant::now();
                let r = c.execute_batch("CHECKPOINT");
                if let Some(h) = &holder {
                    h.execute_batch("ROLLBACK")?;
                }
                flag.store(false, Ordering::SeqCst);
                match r {
                    Ok(()) => took.push(t.elapsed()),
                    Err(e) => eprintln!("checkpoint failed: {e}"),
                }
            }
            Ok(took)
        }))
    } else {
        None
    };

    let report = format!(
        "{{\"metrics\":[{}]}}",
        (0..30)
            .map(|i| format!(
                "{{\"name\":\"metric.number_{i}\",\"value\":{}.5,\"unit\":\"pct\"}}",
                i * 7
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut desk: Vec<(Duration, bool)> = Vec::new();
    let mut bulk: Vec<Duration> = Vec::new();
    let start = Instant::now();
    let (mut tick, mut seq, mut next_desk, mut incident) = (0u64, 0u64, Instant::now(), 0i64);
    let per_tick = nodes / 20;
    let reports_per_tick = (nodes / 600).max(1);
    let mut next_bulk = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        if now >= next_desk {
            // Timed from when it was due, so a wait behind another commit counts too.
            let t = next_desk;
            next_desk += Duration::from_millis(50);
            incident += 1;
            let during = checkpointing.load(Ordering::SeqCst);
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM incidents WHERE id = ?", params![incident / 3])?;
            tx.execute(
                "INSERT INTO incidents VALUES (?, 'open', 'probe', now())",
                params![incident / 3],
            )?;
            tx.execute(
                "INSERT INTO tickets VALUES (?, ?, 'open', now())",
                params![incident, incident / 3],
            )?;
            tx.commit()?;
            desk.push((t.elapsed(), during || checkpointing.load(Ordering::SeqCst)));
        }
        if now >= next_bulk && !checkpointing.load(Ordering::SeqCst) {
            next_bulk += Duration::from_millis(100);
            tick += 1;
            seq += 1;
            let first = (tick as usize * per_tick) % nodes;
            let t = Instant::now();
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE nodes SET last_seq = ?, last_ts = now(), updated_at = now()
                 WHERE node IN (SELECT 'node-' || i FROM range(?, ?) t(i))",
                params![seq, first as i64, (first + per_tick) as i64],
            )?;
            {
                let mut app = tx.appender("node_reports")?;
                for i in 0..reports_per_tick {
                    let n = (first + i * 7) % nodes;
                    app.append_row(params![
                        format!("site-{}", n % 50),
                        format!("node-{n}"),
                        "2026-12-01 00:00:00",
                        seq,
                        report
                    ])?;
                }
                app.flush()?;
            }
            tx.commit()?;
            bulk.push(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let checkpoints = match checker {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("checkpointer panicked"))??,
        None => Vec::new(),
    };
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let pct = |v: &mut Vec<f64>, p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let mut d: Vec<f64> = desk.iter().map(|(t, _)| ms(t)).collect();
    let mut dd: Vec<f64> = desk
        .iter()
        .filter(|(_, c)| *c)
        .map(|(t, _)| ms(t))
        .collect();
    let mut b: Vec<f64> = bulk.iter().map(ms).collect();
    let mut c: Vec<f64> = checkpoints.iter().map(ms).collect();
    println!(
        "mode {mode}, {nodes} nodes, {seconds} s: desk commits {} p50 {:.1} p99 {:.1} max {:.1} ms; \
         during a checkpoint {} (p50 {:.1} max {:.1} ms); bulk commits {} p50 {:.1} p99 {:.1} max {:.1} ms; \
         beside checkpoints {} p50 {:.0} max {:.0} ms",
        d.len(),
        pct(&mut d, 0.5),
        pct(&mut d, 0.99),
        pct(&mut d, 1.0),
        dd.len(),
        pct(&mut dd, 0.5),
        pct(&mut dd, 1.0),
        b.len(),
        pct(&mut b, 0.5),
        pct(&mut b, 0.99),
        pct(&mut b, 1.0),
        c.len(),
        pct(&mut c, 0.5),
        pct(&mut c, 1.0),
    );
    Ok(())
}
