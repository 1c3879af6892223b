//! Persistent agent state: the report sequence numbers in `<spool.dir>/state.json`, written atomically.
//!
//! `seq` grows by one per report and node and survives restarts (the collector drops
//! redelivered duplicates by it): one for the agent's own node and one per probed device.
//! A missing file starts at 1; a corrupt one is reported and starts at 1.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the state file inside the spool directory.
pub const STATE_FILE: &str = "state.json";

/// Why the state file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    seq: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    devices: BTreeMap<String, u64>,
}

/// The next sequence number of every node this agent reports for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequences {
    /// Next `seq` of the agent's own node.
    pub agent: u64,
    /// Next `seq` of each device, by device name.
    pub devices: BTreeMap<String, u64>,
}

impl Sequences {
    /// Take the next sequence number of a device (starting at 1 for a new one).
    pub fn take_device(&mut self, name: &str) -> u64 {
        let next = self.devices.entry(name.to_string()).or_insert(1);
        let seq = *next;
        *next += 1;
        seq
    }
}

/// What [`SeqStore::load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No state file yet.
    Missing,
    /// The last sequence number written.
    Seq(u64),
    /// The file exists but could not be read or parsed (the reason).
    Corrupt(String),
}

/// The sequence-number store of one agent.
#[derive(Debug, Clone)]
pub struct SeqStore {
    path: PathBuf,
}

impl SeqStore {
    /// A store for `<dir>/state.json`. Nothing is touched until load or save.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        SeqStore {
            path: dir.as_ref().join(STATE_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_file(&self) -> Result<Option<StateFile>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
                .map(Some)
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Read the last stored sequence number of the agent's node.
    pub fn load(&self) -> Loaded {
        match self.load_file() {
            Ok(Some(state)) => Loaded::Seq(state.seq),
            Ok(None) => Loaded::Missing,
            Err(why) => Loaded::Corrupt(why),
        }
    }

    /// The next sequence numbers of the agent and its devices (warning if the file is corrupt).
    pub fn load_sequences(&self) -> Sequences {
        match self.load_file() {
            Ok(Some(state)) => Sequences {
                agent: state.seq.saturating_add(1),
                devices: state
                    .devices
                    .into_iter()
                    .map(|(name, seq)| (name, seq.saturating_add(1)))
                    .collect(),
            },
            Ok(None) => Sequences {
                agent: 1,
                devices: BTreeMap::new(),
            },
            Err(why) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "state file is unreadable ({why}); report sequences restart at 1"
                );
                Sequences {
                    agent: 1,
                    devices: BTreeMap::new(),
                }
            }
        }
    }

    /// Store the last used sequence numbers (one less than each next).
    pub fn save_sequences(&self, seqs: &Sequences) -> Result<(), StateError> {
        self.write(&StateFile {
            seq: seqs.agent.saturating_sub(1),
            devices: seqs
                .devices
                .iter()
                .map(|(name, next)| (name.clone(), next.saturating_sub(1)))
                .collect(),
        })
    }

    /// The sequence number the next report gets: stored + 1, or 1 (warning if corrupt).
    pub fn next_seq(&self) -> u64 {
        match self.load() {
            Loaded::Seq(seq) => seq.saturating_add(1),
            Loaded::Missing => 1,
            Loaded::Corrupt(why) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "state file is unreadable ({why}); report sequence restarts at 1"
                );
                1
            }
        }
    }

    /// Store `seq` atomically: write a temp file, flush it to disk, rename over the old one.
    /// Creates the directory if needed.
    pub fn save(&self, seq: u64) -> Result<(), StateError> {
        self.write(&StateFile {
            seq,
            devices: BTreeMap::new(),
        })
    }

    fn write(&self, state: &StateFile) -> Result<(), StateError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err(dir))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(state).unwrap_or_default();
        {
            let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
            f.write_all(&body).map_err(err(&tmp))?;
            f.sync_all().map_err(err(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err(&self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeqStore::new(dir.path());
        assert_eq!(store.load(), Loaded::Missing);
        assert_eq!(store.next_seq(), 1);
        store.save(41).expect("save");
        assert_eq!(store.load(), Loaded::Seq(41));
        assert_eq!(store.next_seq(), 42);
        store.save(42).expect("save again");
        assert_eq!(store.next_seq(), 43);
        let text = std::fs::read_to_string(dir.path().join("state.json")).expect("read");
        assert_eq!(text, r#"{"seq":42}"#);
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn device_sequences_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeqStore::new(dir.path());
        let mut seqs = store.load_sequences();
        assert_eq!(
            seqs,
            Sequences {
                agent: 1,
                devices: BTreeMap::new()
            }
        );
        assert_eq!(seqs.take_device("sw1"), 1);
        assert_eq!(seqs.take_device("sw1"), 2);
        seqs.agent = 10;
        store.save_sequences(&seqs).expect("save");
        let back = store.load_sequences();
        assert_eq!(back.agent, 10);
        assert_eq!(back.devices["sw1"], 3);
        // Files written before devices existed still load.
        std::fs::write(store.path(), r#"{"seq":5}"#).expect("write");
        assert_eq!(store.load_sequences().agent, 6);
        assert_eq!(store.load(), Loaded::Seq(5));
    }

    #[test]
    fn corrupt_file_starts_at_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeqStore::new(dir.path());
        for junk in ["", "{", "not json", r#"{"seq":-1}"#, r#"{"other":1}"#] {
            std::fs::write(store.path(), junk).expect("write");
            assert!(matches!(store.load(), Loaded::Corrupt(_)), "{junk:?}");
            assert_eq!(store.next_seq(), 1, "{junk:?}");
        }
        store.save(7).expect("save over a corrupt file");
        assert_eq!(store.next_seq(), 8);
    }

    #[test]
    fn missing_dir_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b/spool");
        let store = SeqStore::new(&nested);
        assert_eq!(store.next_seq(), 1);
        store.save(1).expect("save creates the dir");
        assert_eq!(store.load(), Loaded::Seq(1));
    }

    #[test]
    fn unwritable_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").expect("write");
        // A spool "dir" below a regular file cannot be created.
        let store = SeqStore::new(file.join("spool"));
        let e = store.save(1).expect_err("cannot create dir under a file");
        assert!(e.to_string().contains("plain-file"), "{e}");
        assert_eq!(store.next_seq(), 1);
    }
}
