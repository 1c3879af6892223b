//! Active checks (one module per kind) and their scheduling: each check on its own interval, every run bounded by its timeout.
//!
//! [`Scheduler`] is what the run loop uses: one task per check keeps the latest result, so a
//! slow check never delays a report. [`run_all`] runs every check once (`tocsin-agent once`).
//! Either way a run is bounded by the check's timeout plus [`GRACE`], whatever the kind's own
//! code does, and a check that panics reports `unknown` and keeps being scheduled.

pub mod command;
pub mod http;
pub mod process;
pub mod systemd;
pub mod tcp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tocsin_protocol::{CheckResult, CheckStatus, Metric};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{CheckConfig, CheckKind, format_duration};

/// Extra time granted past a check's own timeout before the runner gives up on it.
pub const GRACE: Duration = Duration::from_millis(250);

/// What one run of a check gives: its result and the metrics it measured (certificate days...).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub result: CheckResult,
    pub metrics: Vec<Metric>,
}

impl From<CheckResult> for CheckOutcome {
    fn from(result: CheckResult) -> Self {
        CheckOutcome {
            result,
            metrics: Vec::new(),
        }
    }
}

/// A result without latency (the check could not measure one).
pub(crate) fn result(name: String, status: CheckStatus, output: impl Into<String>) -> CheckResult {
    CheckResult {
        name,
        status,
        output: output.into(),
        latency_ms: None,
    }
}

/// Milliseconds with microsecond precision, as reported in `latency_ms`.
pub(crate) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Aborts the task when dropped, so work started for a check never outlives it.
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run one check. Each kind enforces its own timeout; this is the dispatch point new kinds join.
pub async fn run_check(check: &CheckConfig) -> CheckOutcome {
    let name = check.report_name();
    match check.kind {
        CheckKind::Tcp => tcp::check(name, &check.target, check.timeout).await.into(),
        CheckKind::Http => http::check(name, check).await,
        CheckKind::Process => process::check(name, check).await.into(),
        CheckKind::Systemd => systemd::check(name, &check.target, check.timeout)
            .await
            .into(),
        CheckKind::Command => command::check(name, &check.command, check.timeout)
            .await
            .into(),
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = CheckOutcome> + Send>>;
/// Runs one check; [`run_check`] in production, a stand-in in the scheduler's tests.
type Runner = Arc<dyn Fn(CheckConfig) -> BoxFuture + Send + Sync>;

fn real_runner() -> Runner {
    Arc::new(|check: CheckConfig| Box::pin(async move { run_check(&check).await }))
}

/// One run on its own task: bounded by timeout + [`GRACE`]; a panic gives `unknown`.
async fn run_guarded(check: &CheckConfig, runner: &Runner) -> CheckOutcome {
    let limit = check.timeout + GRACE;
    let mut task = AbortOnDrop(tokio::spawn(runner(check.clone())));
    match tokio::time::timeout(limit, &mut task.0).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            tracing::error!(check = %check.report_name(), error = %e, "check task failed");
            result(
                check.report_name(),
                CheckStatus::Unknown,
                "check task failed",
            )
            .into()
        }
        // Dropping `task` aborts the overrunning run (a command check kills its process group).
        Err(_) => result(
            check.report_name(),
            CheckStatus::Critical,
            format!("timed out after {}", format_duration(check.timeout)),
        )
        .into(),
    }
}

/// Run every check once, concurrently, each bounded by its timeout (plus [`GRACE`]): for
/// `tocsin-agent once` and tests. Results in config order, then the metrics the checks produced.
pub async fn run_all(checks: &[CheckConfig]) -> (Vec<CheckResult>, Vec<Metric>) {
    run_all_with(checks, &real_runner()).await
}

async fn run_all_with(checks: &[CheckConfig], runner: &Runner) -> (Vec<CheckResult>, Vec<Metric>) {
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in checks.iter().enumerate() {
        let check = check.clone();
        let runner = runner.clone();
        set.spawn(async move { (i, run_guarded(&check, &runner).await) });
    }
    let mut outcomes: Vec<Option<CheckOutcome>> = vec![None; checks.len()];
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, outcome)) => outcomes[i] = Some(outcome),
            Err(e) => tracing::error!(error = %e, "check task failed"),
        }
    }
    let mut results = Vec::with_capacity(checks.len());
    let mut metrics = Vec::new();
    for (outcome, check) in outcomes.into_iter().zip(checks) {
        let outcome = outcome.unwrap_or_else(|| {
            result(
                check.report_name(),
                CheckStatus::Unknown,
                "check task failed",
            )
            .into()
        });
        results.push(outcome.result);
        metrics.extend(outcome.metrics);
    }
    (results, metrics)
}

/// Runs every check on its own interval and keeps the latest outcome of each.
///
/// Create it inside a Tokio runtime. Dropping it stops every check task (and what they run).
pub struct Scheduler {
    entries: Vec<Entry>,
    runner: Runner,
}

struct Entry {
    check: CheckConfig,
    every: Duration,
    latest: watch::Receiver<Option<CheckOutcome>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field(
                "checks",
                &self
                    .entries
                    .iter()
                    .map(|e| e.check.report_name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Scheduler {
    /// Spawn one task per check (first run immediately, then every check interval;
    /// `MissedTickBehavior::Delay`); keeps the latest result of each.
    pub fn start(checks: Vec<CheckConfig>, agent_interval: Duration) -> Self {
        Self::start_with(checks, agent_interval, real_runner())
    }

    fn start_with(checks: Vec<CheckConfig>, agent_interval: Duration, runner: Runner) -> Self {
        let mut scheduler = Scheduler {
            entries: Vec::new(),
            runner,
        };
        scheduler.reload(checks, agent_interval);
        scheduler
    }

    /// Latest results in config order, plus the metrics the checks produced (cert days...).
    /// Checks that have not finished their first run are left out.
    pub fn latest(&self) -> (Vec<CheckResult>, Vec<Metric>) {
        let mut results = Vec::with_capacity(self.entries.len());
        let mut metrics = Vec::new();
        for entry in &self.entries {
            if let Some(outcome) = entry.latest.borrow().as_ref() {
                results.push(outcome.result.clone());
                metrics.extend(outcome.metrics.iter().cloned());
            }
        }
        (results, metrics)
    }

    /// Wait until every check has finished its first run, or `limit` has passed.
    /// Returns at once when all have; useful so the first report carries the checks.
    pub async fn ready(&self, limit: Duration) {
        let receivers: Vec<_> = self.entries.iter().map(|e| e.latest.clone()).collect();
        let all = async move {
            for mut rx in receivers {
                // An error means the task is gone (aborted): nothing more to wait for.
                let _ = rx.wait_for(Option::is_some).await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Replace the set of checks (SIGHUP reload): unchanged checks (same [`CheckConfig`] and
    /// interval) keep their task and last result; removed ones stop; new ones start.
    pub fn reload(&mut self, checks: Vec<CheckConfig>, agent_interval: Duration) {
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        let (mut kept, mut started) = (0usize, 0usize);
        for check in checks {
            let every = check.every(agent_interval);
            let same = old.iter_mut().find(|slot| {
                slot.as_ref()
                    .is_some_and(|e| e.every == every && e.check == check)
            });
            match same.and_then(Option::take) {
                Some(entry) => {
                    kept += 1;
                    self.entries.push(entry);
                }
                None => {
                    started += 1;
                    let entry = self.spawn(check, every);
                    self.entries.push(entry);
                }
            }
        }
        let mut stopped = 0usize;
        for entry in old.into_iter().flatten() {
            stopped += 1;
            entry.task.abort();
        }
        tracing::debug!(kept, started, stopped, "checks scheduled");
    }

    fn spawn(&self, check: CheckConfig, every: Duration) -> Entry {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(check_loop(check.clone(), every, self.runner.clone(), tx));
        Entry {
            check,
            every,
            latest: rx,
            task,
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for entry in &self.entries {
            entry.task.abort();
        }
    }
}

/// One check's life: run now, then every `every`; publish each outcome; log status changes.
async fn check_loop(
    check: CheckConfig,
    every: Duration,
    runner: Runner,
    tx: watch::Sender<Option<CheckOutcome>>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<CheckStatus> = None;
    loop {
        ticker.tick().await;
        let outcome = run_guarded(&check, &runner).await;
        let status = outcome.result.status;
        if last != Some(status) {
            tracing::info!(
                check = %outcome.result.name,
                status = status.as_str(),
                output = %outcome.result.output,
                "check status"
            );
            last = Some(status);
        }
        tx.send_replace(Some(outcome));
    }
}

#[cfg(test)]
mod tests;
