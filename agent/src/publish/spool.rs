//! The store-and-forward spool: reports on disk, in order, until the broker acknowledged them.
//!
//! Every report is written to `<spool.dir>/queue/<id>.msg` (topic line, then the payload)
//! before it is published, and deleted only when its PUBACK arrives, so reports survive a
//! broker outage and an agent restart. The spool is bounded by `max_bytes`: when full, the
//! oldest reports are dropped (counted, with a warning). When the directory cannot be written
//! (read-only, disk full) the spool keeps reports in memory instead, bounded by the same limit
//! and by [`MEMORY_FALLBACK_MAX_BYTES`], and says so once.
//!
//! The spool does no network I/O; the publisher decides what to send and reports acks back.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the queue folder inside the spool directory.
pub const QUEUE_DIR: &str = "queue";
/// Extension of a queued report.
const EXT: &str = "msg";
/// Memory the spool may use for reports when the disk cannot be written.
pub const MEMORY_FALLBACK_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// One queued message: its order, topic and size; the payload stays on disk unless the disk
/// failed when it was queued.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    topic: String,
    bytes: u64,
    /// `Some` when the message lives in memory only.
    memory: Option<Vec<u8>>,
}

/// A message read back for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What [`Spool::push`] did besides queueing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Oldest messages dropped to make room.
    pub dropped: u64,
    /// The message could not be written to disk and is kept in memory.
    pub in_memory: bool,
}

/// Spool counters, for the agent's own metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Messages waiting (on disk or in memory).
    pub queued: u64,
    /// Their size in bytes.
    pub bytes: u64,
    /// Messages dropped because the spool was full, since start.
    pub dropped: u64,
    /// Disk writes or reads that failed, since start.
    pub errors: u64,
}

/// The bounded on-disk FIFO of unacknowledged messages.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    next_id: u64,
    bytes: u64,
    memory_bytes: u64,
    dropped: u64,
    errors: u64,
    /// Whether the last disk operation worked (to log transitions once).
    disk_ok: bool,
}

impl Spool {
    /// Open the spool in `<dir>/queue`, picking up what a previous run left (in order).
    /// Never fails: a directory that cannot be created or read gives an in-memory spool
    /// (logged), so reporting goes on.
    pub fn open(dir: &Path, max_bytes: u64) -> Self {
        let dir = dir.join(QUEUE_DIR);
        let mut spool = Spool {
            dir,
            max_bytes,
            entries: VecDeque::new(),
            next_id: 1,
            bytes: 0,
            memory_bytes: 0,
            dropped: 0,
            errors: 0,
            disk_ok: true,
        };
        if let Err(e) = std::fs::create_dir_all(&spool.dir) {
            spool.disk_failed(&format!("cannot create {}: {e}", spool.dir.display()));
            return spool;
        }
        match std::fs::read_dir(&spool.dir) {
            Ok(list) => {
                let mut found = Vec::new();
                for entry in list.flatten() {
                    let path = entry.path();
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    let Some(id) = name
                        .strip_suffix(&format!(".{EXT}"))
                        .and_then(|n| n.parse::<u64>().ok())
                    else {
                        // Half-written temp files of a crashed run, or foreign files.
                        if name.ends_with(".tmp") {
                            let _ = std::fs::remove_file(&path);
                        }
                        continue;
                    };
                    match read_message(&path) {
                        Ok((topic, payload)) => found.push(Entry {
                            id,
                            topic,
                            bytes: payload.len() as u64,
                            memory: None,
                        }),
                        Err(why) => {
                            tracing::warn!(path = %path.display(), "dropping an unreadable spooled report: {why}");
                            spool.dropped += 1;
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                found.sort_by_key(|e| e.id);
                spool.next_id = found.last().map_or(1, |e| e.id + 1);
                spool.bytes = found.iter().map(|e| e.bytes).sum();
                spool.entries = found.into();
                if !spool.entries.is_empty() {
                    tracing::info!(
                        reports = spool.entries.len(),
                        bytes = spool.bytes,
                        "spool holds reports from before; they are sent first"
                    );
                }
                spool.enforce_limit();
            }
            Err(e) => spool.disk_failed(&format!("cannot read {}: {e}", spool.dir.display())),
        }
        spool
    }

    fn disk_failed(&mut self, why: &str) {
        self.errors += 1;
        if self.disk_ok {
            tracing::warn!(
                "spool directory unusable ({why}); keeping unsent reports in memory (at most {} bytes) until it works again",
                self.memory_limit()
            );
            self.disk_ok = false;
        }
    }

    fn disk_worked(&mut self) {
        if !self.disk_ok {
            tracing::info!(dir = %self.dir.display(), "spool directory writable again");
            self.disk_ok = true;
        }
    }

    fn memory_limit(&self) -> u64 {
        self.max_bytes.min(MEMORY_FALLBACK_MAX_BYTES)
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.{EXT}"))
    }

    /// Queue a message at the end. Drops the oldest messages when over the size limit.
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> PushOutcome {
        let id = self.next_id;
        self.next_id += 1;
        let mut outcome = PushOutcome::default();
        let memory = match write_message(&self.dir, &self.path_of(id), topic, payload) {
            Ok(()) => {
                self.disk_worked();
                None
            }
            Err(why) => {
                self.disk_failed(&why);
                outcome.in_memory = true;
                self.memory_bytes += payload.len() as u64;
                Some(payload.to_vec())
            }
        };
        self.bytes += payload.len() as u64;
        self.entries.push_back(Entry {
            id,
            topic: topic.to_string(),
            bytes: payload.len() as u64,
            memory,
        });
        outcome.dropped = self.enforce_limit();
        outcome
    }

    /// Drop the oldest messages until the spool fits its limits (the newest always stays).
    fn enforce_limit(&mut self) -> u64 {
        let mut dropped = 0;
        while self.entries.len() > 1
            && (self.bytes > self.max_bytes || self.memory_bytes > self.memory_limit())
        {
            if let Some(oldest) = self.entries.pop_front() {
                self.forget(&oldest);
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.dropped += dropped;
            tracing::warn!(
                dropped,
                dropped_total = self.dropped,
                limit_bytes = self.max_bytes,
                "spool full: dropped the oldest unsent reports"
            );
        }
        dropped
    }

    fn forget(&mut self, entry: &Entry) {
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        if entry.memory.is_some() {
            self.memory_bytes = self.memory_bytes.saturating_sub(entry.bytes);
        } else if let Err(e) = std::fs::remove_file(self.path_of(entry.id))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.errors += 1;
            tracing::warn!(id = entry.id, error = %e, "cannot delete a sent report from the spool");
        }
    }

    /// The broker acknowledged message `id`: remove it (acks may come in any order).
    /// Unknown ids (already dropped) are ignored.
    pub fn ack(&mut self, id: u64) {
        if let Some(pos) = self.entries.iter().position(|e| e.id == id)
            && let Some(entry) = self.entries.remove(pos)
        {
            self.forget(&entry);
        }
    }

    /// The first queued message with an id of at least `from`, read back for publishing.
    /// A message whose file vanished or cannot be read is dropped (counted) and the next one
    /// is returned.
    pub fn next_from(&mut self, from: u64) -> Option<Message> {
        loop {
            let pos = self.entries.iter().position(|e| e.id >= from)?;
            let entry = &self.entries[pos];
            if let Some(payload) = &entry.memory {
                return Some(Message {
                    id: entry.id,
                    topic: entry.topic.clone(),
                    payload: payload.clone(),
                });
            }
            let path = self.path_of(entry.id);
            match read_message(&path) {
                Ok((topic, payload)) => {
                    return Some(Message {
                        id: entry.id,
                        topic,
                        payload,
                    });
                }
                Err(why) => {
                    tracing::warn!(path = %path.display(), "dropping an unreadable spooled report: {why}");
                    self.errors += 1;
                    self.dropped += 1;
                    if let Some(entry) = self.entries.remove(pos) {
                        self.forget(&entry);
                    }
                }
            }
        }
    }

    /// Id of the oldest queued message.
    pub fn first_id(&self) -> Option<u64> {
        self.entries.front().map(|e| e.id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            queued: self.entries.len() as u64,
            bytes: self.bytes,
            dropped: self.dropped,
            errors: self.errors,
        }
    }
}

/// Write `topic\npayload` to `path` atomically (temp file, then rename). No fsync: a report
/// survives an agent crash (page cache); a power cut may lose the last ones, which is the
/// trade for not syncing the disk every interval.
fn write_message(dir: &Path, path: &Path, topic: &str, payload: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(topic.as_bytes())?;
        f.write_all(b"\n")?;
        f.write_all(payload)?;
        drop(f);
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write to {}: {e}", dir.display())
    })
}

fn read_message(path: &Path) -> Result<(String, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no topic line")?;
    let topic = std::str::from_utf8(&bytes[..nl])
        .map_err(|_| "topic is not UTF-8")?
        .to_string();
    if topic.is_empty() {
        return Err("empty topic".to_string());
    }
    Ok((topic, bytes[nl + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(spool: &mut Spool) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(m) = spool.next_from(from) {
            from = m.id + 1;
            out.push((m.id, String::from_utf8(m.payload).expect("utf8")));
        }
        out
    }

    #[test]
    fn fifo_survives_reopen_and_acks_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 1 << 20);
        assert!(spool.is_empty());
        for i in 1..=5 {
            let out = spool.push("t/r", format!("report {i}").as_bytes());
            assert_eq!(out, PushOutcome::default());
        }
        spool.ack(2);
        spool.ack(99); // unknown: ignored
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20);
        let got = drain(&mut spool);
        assert_eq!(
            got.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            vec!["report 1", "report 3", "report 4", "report 5"]
        );
        // New messages come after the old ones.
        spool.push("t/r", b"report 6");
        assert_eq!(spool.next_from(6).expect("new").payload, b"report 6");
        for (id, _) in &got {
            spool.ack(*id);
        }
        spool.ack(6);
        assert!(spool.is_empty());
        assert_eq!(spool.stats().bytes, 0);
        let left: Vec<_> = std::fs::read_dir(dir.path().join(QUEUE_DIR))
            .expect("list")
            .collect();
        assert!(left.is_empty(), "files left: {left:?}");
    }

    #[test]
    fn full_spool_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 30);
        assert_eq!(spool.push("t", b"0123456789").dropped, 0);
        assert_eq!(spool.push("t", b"abcdefghij").dropped, 0);
        assert_eq!(spool.push("t", b"ABCDEFGHIJ").dropped, 0);
        // 40 bytes > 30: the oldest goes.
        assert_eq!(spool.push("t", b"klmnopqrst").dropped, 1);
        let stats = spool.stats();
        assert_eq!((stats.queued, stats.bytes, stats.dropped), (3, 30, 1));
        let got: Vec<String> = drain(&mut spool).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, vec!["abcdefghij", "ABCDEFGHIJ", "klmnopqrst"]);
        // Its file is gone too.
        let files = std::fs::read_dir(dir.path().join(QUEUE_DIR))
            .expect("list")
            .count();
        assert_eq!(files, 3);
    }

    #[test]
    fn unwritable_directory_falls_back_to_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").expect("write");
        // The spool dir would be below a regular file: it cannot be created.
        let mut spool = Spool::open(&file, 1 << 20);
        let out = spool.push("t/r", b"kept in memory");
        assert!(out.in_memory);
        assert!(spool.stats().errors >= 1);
        let m = spool.next_from(0).expect("message");
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            ("t/r", &b"kept in memory"[..])
        );
        spool.ack(m.id);
        assert!(spool.is_empty());
    }

    #[test]
    fn memory_fallback_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").expect("write");
        let mut spool = Spool::open(&file, u64::MAX);
        let big = vec![b'x'; 1024 * 1024];
        let mut dropped = 0;
        for _ in 0..12 {
            dropped += spool.push("t", &big).dropped;
        }
        assert_eq!(dropped, 4, "8 MiB kept in memory at most");
        assert_eq!(spool.stats().bytes, MEMORY_FALLBACK_MAX_BYTES);
    }

    #[test]
    fn damaged_files_are_dropped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = dir.path().join(QUEUE_DIR);
        std::fs::create_dir_all(&queue).expect("mkdir");
        std::fs::write(queue.join(format!("{:020}.msg", 3)), b"t/r\nthree").expect("write");
        std::fs::write(queue.join(format!("{:020}.msg", 1)), b"no newline").expect("write");
        std::fs::write(queue.join(format!("{:020}.tmp", 4)), b"half").expect("write");
        std::fs::write(queue.join("README"), b"foreign").expect("write");
        let mut spool = Spool::open(dir.path(), 1 << 20);
        assert_eq!(spool.stats().dropped, 1);
        assert_eq!(drain(&mut spool), vec![(3, "three".to_string())]);
        assert!(!queue.join(format!("{:020}.tmp", 4)).exists());
        // Ids continue after the highest found.
        spool.push("t/r", b"four");
        assert_eq!(spool.next_from(4).expect("next").id, 4);
        // A file removed behind the spool's back is skipped.
        std::fs::remove_file(queue.join(format!("{:020}.msg", 3))).expect("rm");
        assert_eq!(spool.next_from(0).expect("next").id, 4);
    }
}
