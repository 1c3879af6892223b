//! tocsin wire protocol (version 1): report and status schema, MQTT topics, validation.
//!
//! This crate has no I/O and no async runtime. Agents build [`Report`]s and
//! [`Status`]es and serialise them with `serde_json`; the collector feeds raw
//! payloads to [`decode_report`] / [`decode_status`], which refuse anything
//! oversized, of unknown version or failing validation with a [`ProtocolError`]
//! whose [`ProtocolError::reason`] is a stable label for counting.

mod error;
mod report;
mod status;
mod topic;
mod validate;

pub use error::ProtocolError;
pub use report::{CheckResult, CheckStatus, Metric, NodeKind, Report};
pub use status::{AgentInfo, Inventory, NodeState, Status};
pub use topic::{
    Topic, TopicError, TopicKind, event_topic, report_topic, status_topic, subscriptions,
};
pub use validate::{MAX_TS_MS, decode_report, decode_status, is_valid_metric_name, is_valid_name};

/// The protocol version this crate speaks (`"v"` in every payload).
pub const VERSION: u32 = 1;

/// Largest payload accepted on any topic, in bytes (256 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Default topic root (`tocsin/v1/...`).
pub const DEFAULT_TOPIC_ROOT: &str = "tocsin";
