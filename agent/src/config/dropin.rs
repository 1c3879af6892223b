//! Config drop-ins: `<dir>/<stem>.d/*.toml` (`/etc/tocsin/agent.d/` for `/etc/tocsin/agent.toml`), merged over the main file.
//!
//! Configuration management templates small files (site, broker, credentials, the checks of a
//! role) without editing the packaged `agent.toml`, a dpkg conffile. [`AgentConfig::load`]
//! reads the main file, then every drop-in in byte order of file name: only names ending in
//! `.toml` and not starting with `.`, so dpkg's `.dpkg-dist`/`.dpkg-old` and editor backups
//! are ignored. A missing drop-in directory is fine; one that cannot be listed is an error
//! naming it.
//!
//! Error attribution: each file is first checked against the schema on its own, so a TOML
//! syntax error, an unknown key or a malformed value names the file that has it, with its
//! line. A check or device name used twice names both files. Then the tables are merged
//! ([`merge`]): tables key by key, recursively; the arrays of tables `check` and `device` are
//! appended; any other value replaces the earlier one. Rules that need the merged config
//! (names, ranges, combinations of keys) name the main file followed by
//! `(with agent.d/10-enrol.toml, ...)`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{AgentConfig, ConfigError, FileConfig, one_line, toml_error};

/// Top-level arrays of tables that drop-ins add to instead of replacing.
const APPENDED: &[&str] = &["check", "device"];

/// A config read from a file and its drop-ins.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged, validated config.
    pub config: AgentConfig,
    /// Where drop-ins are looked for (it may not exist).
    pub drop_in_dir: PathBuf,
    /// The drop-ins read, in the order they were merged.
    pub drop_ins: Vec<PathBuf>,
}

impl Loaded {
    /// `" (+2 drop-ins in /etc/tocsin/agent.d)"`, or nothing without drop-ins.
    pub fn drop_in_summary(&self) -> String {
        match self.drop_ins.len() {
            0 => String::new(),
            1 => format!(" (+1 drop-in in {})", self.drop_in_dir.display()),
            n => format!(" (+{n} drop-ins in {})", self.drop_in_dir.display()),
        }
    }
}

/// The drop-in directory of a config file: `<dir>/<stem>.d` (`/etc/tocsin/agent.d` for
/// `/etc/tocsin/agent.toml`).
pub fn drop_in_dir(path: &Path) -> PathBuf {
    let mut name = path.file_stem().unwrap_or(path.as_os_str()).to_os_string();
    name.push(".d");
    path.with_file_name(name)
}

/// Whether a file name in the drop-in directory is read: `*.toml`, not hidden.
pub fn is_drop_in_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.ends_with(b".toml") && !bytes.starts_with(b".")
}

/// The drop-ins of `dir`, sorted by the bytes of their names. A missing directory has none.
fn list(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir_error = |source| ConfigError::DropInDir {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_error(e)),
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        let name = entry.map_err(dir_error)?.file_name();
        if is_drop_in_name(&name) {
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// One file, read and checked against the schema on its own.
struct Source {
    path: PathBuf,
    table: Table,
    file: FileConfig,
}

impl Source {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        // The schema check first: it reports syntax errors too, with their line.
        let file: FileConfig = toml::from_str(&text).map_err(|e| toml_error(&origin, &text, &e))?;
        let mut table: Table = toml::from_str(&text).map_err(|e| toml_error(&origin, &text, &e))?;
        // One spelling per key before merging, or a later file's alias would sit beside an
        // earlier file's key and the merged table would have it twice.
        if let Some(Value::Table(broker)) = table.get_mut("broker")
            && let Some(v) = broker.remove("keepalive")
        {
            broker.insert("keep_alive".to_string(), v);
        }
        Ok(Source {
            path: path.to_path_buf(),
            table,
            file,
        })
    }
}

/// Read `path` and its drop-ins, merge them and validate the result.
pub(super) fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let main = Source::read(path)?;
    let drop_in_dir = drop_in_dir(path);
    let drop_ins = list(&drop_in_dir)?;
    let mut sources = vec![main];
    for drop_in in &drop_ins {
        sources.push(Source::read(drop_in)?);
    }
    refuse_duplicates(&sources)?;
    let origin = merged_origin(path, &drop_in_dir, &drop_ins);
    let mut merged = Table::new();
    for source in sources {
        merge(&mut merged, source.table);
    }
    if !merged.contains_key("site") {
        return Err(ConfigError::Invalid {
            origin,
            problem: format!(
                "site is not set; set site = \"...\" in it or in a drop-in {}/*.toml",
                drop_in_dir.display()
            ),
        });
    }
    // Every file fit the schema on its own, so the merged table does too; if not, say where.
    let file: FileConfig = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: origin.clone(),
            line: None,
            message: one_line(e.message()),
        })?;
    let config =
        AgentConfig::from_file(file).map_err(|problem| ConfigError::Invalid { origin, problem })?;
    Ok(Loaded {
        config,
        drop_in_dir,
        drop_ins,
    })
}

/// `/etc/tocsin/agent.toml (with agent.d/10-enrol.toml, agent.d/50-checks.toml)`: where a
/// rule of the merged config comes from.
fn merged_origin(main: &Path, dir: &Path, drop_ins: &[PathBuf]) -> String {
    if drop_ins.is_empty() {
        return main.display().to_string();
    }
    let dir_name = dir.file_name().map(Path::new).unwrap_or(dir);
    let names: Vec<String> = drop_ins
        .iter()
        .map(|p| {
            let name = p.file_name().map(Path::new).unwrap_or(p);
            dir_name.join(name).display().to_string()
        })
        .collect();
    format!("{} (with {})", main.display(), names.join(", "))
}

/// A check or device name used twice: the error names the file of the second one and, when
/// it differs, the file of the first.
fn refuse_duplicates(sources: &[Source]) -> Result<(), ConfigError> {
    let mut checks: HashMap<String, &Path> = HashMap::new();
    let mut devices: HashMap<&str, &Path> = HashMap::new();
    for source in sources {
        let here = source.path.as_path();
        let elsewhere = |first: &Path| {
            if first == here {
                String::new()
            } else {
                format!(" (also in {})", first.display())
            }
        };
        for check in &source.file.checks {
            let name = check.report_name();
            if let Some(first) = checks.get(&name) {
                return Err(ConfigError::Invalid {
                    origin: here.display().to_string(),
                    problem: format!("check {name:?} is defined twice{}", elsewhere(first)),
                });
            }
            checks.insert(name, here);
        }
        for device in &source.file.devices {
            let name = device.name();
            if let Some(first) = devices.get(name) {
                return Err(ConfigError::Invalid {
                    origin: here.display().to_string(),
                    problem: format!(
                        "device {name:?}: the name is already used by another device{}",
                        elsewhere(first)
                    ),
                });
            }
            devices.insert(name, here);
        }
    }
    Ok(())
}

/// Merge a later file's table over the tables read so far: tables key by key, recursively;
/// the top-level arrays `check` and `device` appended; any other value replaced.
pub fn merge(base: &mut Table, over: Table) {
    merge_level(base, over, true);
}

fn merge_level(base: &mut Table, over: Table, top: bool) {
    for (key, value) in over {
        let append = top && APPENDED.contains(&key.as_str());
        match (base.get_mut(&key), value) {
            (Some(Value::Array(old)), Value::Array(new)) if append => old.extend(new),
            (Some(Value::Table(old)), Value::Table(new)) => merge_level(old, new, false),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
