//! Rules stage: signals (reports, node statuses) -> alert transitions.

pub mod config;
pub mod eval;
pub mod expr;
pub mod template;

pub use config::{Category, Condition, Rule, Severity, When, load_rules_dir, parse_rules};
pub use eval::{ActiveAlert, AlertSource, AlertState, AlertTransition, Evaluator, alert_key};
