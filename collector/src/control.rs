//! The control path: operator commands and rule reloads from the API (and SIGHUP) into the
//! `pipeline` task that owns the engine.
//!
//! Each request travels on a bounded queue with a oneshot for the answer, so it is applied in
//! order with the MQTT inputs and the ticks. Its effects go to the writer like any input's,
//! and the answer comes back only after they are committed: a read right after a command
//! sees what it did.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::engine::model::{NodeRow, Presence};
use crate::engine::{Command, CommandError, Policy, Reply};
use crate::metrics::Metrics;
use crate::rules::Rule;
use crate::time::Millis;

/// Control requests waiting for the pipeline; more wait on the sender (backpressure).
pub const CONTROL_QUEUE: usize = 64;

/// Longest an operator waits for the pipeline and the store before the request fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Rules and policy read and checked from a rules folder.
#[derive(Debug, Clone)]
pub struct LoadedRules {
    pub rules: Vec<Rule>,
    pub policy: Policy,
    /// Rule files read (`*.toml` except `policy.toml`).
    pub files: usize,
    /// `policy.toml` exists (otherwise the policy is all defaults).
    pub policy_file: bool,
}

/// Read and check every rule file and `policy.toml` in `dir`. Every problem is one line
/// (`<file>:<line>: rule "<name>": <message>` for rules); nothing is used unless all are fine.
/// Blocking: call it from `spawn_blocking` on the runtime.
pub fn load_rules(dir: &Path) -> Result<LoadedRules, Vec<String>> {
    let mut errors = Vec::new();
    let rules = match crate::rules::check_dir(dir) {
        Ok(rules) => Some(rules),
        Err(errs) => {
            errors.extend(errs.iter().map(ToString::to_string));
            None
        }
    };
    let policy = match Policy::load_dir(dir) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    match (rules, policy) {
        (Some(rules), Some(policy)) if errors.is_empty() => Ok(LoadedRules {
            rules,
            policy,
            files: rule_files(dir),
            policy_file: dir.join("policy.toml").is_file(),
        }),
        _ => {
            if errors.is_empty() {
                errors.push(format!("{}: cannot load the rules", dir.display()));
            }
            Err(errors)
        }
    }
}

/// How many rule files `dir` holds.
fn rule_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .filter(|p| p.file_name().is_some_and(|n| n != "policy.toml"))
                .count()
        })
        .unwrap_or(0)
}

/// What a successful reload put in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    pub rules: usize,
    pub files: usize,
    pub dir: String,
    /// Live alerts resolved because their rule is gone.
    pub alerts_resolved: usize,
}

/// A request to the pipeline.
#[derive(Debug)]
pub enum Control {
    /// Swap in rules and policy already read and checked.
    Reload {
        rules: Vec<Rule>,
        policy: Box<Policy>,
        answer: oneshot::Sender<Applied<usize>>,
    },
    /// An operator's command.
    Command {
        command: Command,
        answer: oneshot::Sender<Result<Applied<Reply>, CommandError>>,
    },
    /// Every node's state, sequence and times as the engine has them now (the stored ones
    /// may be up to `[store] report_interval` behind).
    LiveNodes {
        answer: oneshot::Sender<Vec<LiveNode>>,
    },
}

/// A node's state, sequence and times as the engine has them (`GET /api/v1/nodes` shows
/// these over the stored row's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    pub site: String,
    pub node: String,
    pub state: Presence,
    pub state_changed_at: Millis,
    pub last_seq: Option<u64>,
    pub last_ts: Option<Millis>,
    pub last_report_at: Option<Millis>,
    pub updated_at: Millis,
}

impl LiveNode {
    pub fn of(n: &NodeRow) -> Self {
        LiveNode {
            site: n.site.to_string(),
            node: n.node.to_string(),
            state: n.state,
            state_changed_at: n.state_changed_at,
            last_seq: n.last_seq,
            last_ts: n.last_ts,
            last_report_at: n.last_report_at,
            updated_at: n.updated_at,
        }
    }
}

/// A request the engine applied: its result, and a receiver told when its effects committed.
#[derive(Debug)]
pub struct Applied<T> {
    pub value: T,
    pub committed: oneshot::Receiver<()>,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The rule or policy files have errors; the old ones stay in force.
    #[error("rules not reloaded ({} error(s)); the old rules stay in force", .0.len())]
    Rules(Vec<String>),
    /// The engine refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The pipeline or the store writer is gone (shutting down or failed), or too slow.
    #[error("{0}")]
    Unavailable(String),
}

/// A clone-able handle to the pipeline's control queue.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Control>,
    rules_dir: PathBuf,
    metrics: Arc<Metrics>,
}

impl ControlHandle {
    pub fn new(tx: mpsc::Sender<Control>, rules_dir: PathBuf, metrics: Arc<Metrics>) -> Self {
        ControlHandle {
            tx,
            rules_dir,
            metrics,
        }
    }

    pub fn rules_dir(&self) -> &Path {
        &self.rules_dir
    }

    /// Read the rules folder again and put it in force; on any error nothing changes.
    pub async fn reload(&self) -> Result<Reloaded, ControlError> {
        let result = self.reload_inner().await;
        let counter = match &result {
            Ok(r) => {
                self.metrics
                    .control
                    .rules_loaded
                    .store(r.rules as u64, Ordering::Relaxed);
                &self.metrics.control.reloads_ok
            }
            Err(_) => &self.metrics.control.reloads_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn reload_inner(&self) -> Result<Reloaded, ControlError> {
        let dir = self.rules_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || load_rules(&dir))
            .await
            .map_err(|e| ControlError::Unavailable(format!("rule loading failed: {e}")))?
            .map_err(ControlError::Rules)?;
        let (rules, files) = (loaded.rules.len(), loaded.files);
        let (answer, rx) = oneshot::channel();
        self.send(Control::Reload {
            rules: loaded.rules,
            policy: Box::new(loaded.policy),
            answer,
        })
        .await?;
        let applied = self.answer(rx).await?;
        self.committed(applied.committed).await?;
        Ok(Reloaded {
            rules,
            files,
            dir: self.rules_dir.display().to_string(),
            alerts_resolved: applied.value,
        })
    }

    /// Apply an operator's command; answers once its effects are stored.
    pub async fn command(&self, command: Command) -> Result<Reply, ControlError> {
        self.metrics
            .control
            .commands
            .fetch_add(1, Ordering::Relaxed);
        let (answer, rx) = oneshot::channel();
        self.send(Control::Command { command, answer }).await?;
        let applied = self.answer(rx).await?.inspect_err(|_| {
            self.metrics
                .control
                .commands_refused
                .fetch_add(1, Ordering::Relaxed);
        })?;
        self.committed(applied.committed).await?;
        Ok(applied.value)
    }

    /// Every node's state, sequence and times as the engine has them now.
    pub async fn live_nodes(&self) -> Result<Vec<LiveNode>, ControlError> {
        let (answer, rx) = oneshot::channel();
        self.send(Control::LiveNodes { answer }).await?;
        self.answer(rx).await
    }

    async fn send(&self, msg: Control) -> Result<(), ControlError> {
        match tokio::time::timeout(ANSWER_WITHIN, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ControlError::Unavailable(
                "the engine pipeline has stopped".into(),
            )),
            Err(_) => Err(ControlError::Unavailable(format!(
                "the engine pipeline did not take the request within {}s",
                ANSWER_WITHIN.as_secs()
            ))),
        }
    }

    async fn answer<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, ControlError> {
        match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ControlError::Unavailable(
                "the engine pipeline stopped before answering".into(),
            )),
            Err(_) => Err(ControlError::Unavailable(format!(
                "no answer from the engine pipeline within {}s",
                ANSWER_WITHIN.as_secs()
            ))),
        }
    }

    async fn committed(&self, rx: oneshot::Receiver<()>) -> Result<(), ControlError> {
        match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ControlError::Unavailable(
                "applied, but the store could not write it (see the collector log)".into(),
            )),
            Err(_) => Err(ControlError::Unavailable(format!(
                "applied, but not stored within {}s",
                ANSWER_WITHIN.as_secs()
            ))),
        }
    }
}
