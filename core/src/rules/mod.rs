//! Rules stage: signals (reports, node statuses) -> alert transitions.
//!
//! [`check`] reads and validates rule files (every error, with file and line), [`config`]
//! turns one `[[rule]]` table into a [`Rule`], [`expr`] parses threshold expressions,
//! [`template`] the summary and description templates, and [`eval`] runs the rules.
//! The reference for rule authors is docs/RULES.md.

pub mod alert;
pub mod check;
pub mod config;
pub mod eval;
pub mod expr;
mod node;
pub mod template;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod pack_tests;

pub use check::{RuleError, check_dir, check_text, load_rules_dir, parse_rules};
pub use config::{Category, Condition, Rule, Severity, When};
pub use eval::{ActiveAlert, AlertSource, AlertState, AlertTransition, Evaluator, alert_key};
