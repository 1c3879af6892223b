//! Errors of the rule and policy files: one line naming the file.

use std::path::{Path, PathBuf};

/// Why a config file could not be used. Display is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl ConfigError {
    /// A parse error for `path`, with toml's message folded onto one line.
    pub fn parse(path: &Path, err: impl std::fmt::Display) -> Self {
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: one_line(&err.to_string()),
        }
    }
}

/// Fold toml's multi-line diagnostics ("TOML parse error at line 3 ... \n | \n ...") to one line.
pub fn one_line(msg: &str) -> String {
    let mut location = None;
    let mut text = Vec::new();
    for line in msg.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("TOML parse error at ") {
            location = Some(rest.to_string());
        } else if line.is_empty()
            || line.starts_with('|')
            || line.chars().next().is_some_and(|c| c.is_ascii_digit()) && line.contains('|')
        {
            continue;
        } else {
            text.push(line.to_string());
        }
    }
    let text = text.join(" ");
    match location {
        Some(loc) => format!("{text} (at {loc})"),
        None => text,
    }
}
