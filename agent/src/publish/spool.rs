//! The store-and-forward spool: reports on disk, in order, until the broker acknowledged them.
//!
//! Every report is written to `<spool.dir>/queue/<id>.msg` (a line with the retain flag and
//! the topic, then the payload) before it is published, and deleted only when its PUBACK arrives, so reports survive a
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
    bytes: u64,
    /// `Some` when the message lives in memory only: (topic, retain, payload).
    memory: Option<(String, bool, Vec<u8>)>,
    /// Failed attempts to read it back (a message that cannot be read three times is dropped).
    read_failures: u8,
}

/// A message read back for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub topic: String,
    pub retain: bool,
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
                    // Read lazily when sent; here only the size (a big backlog opens fast).
                    match entry.metadata() {
                        Ok(meta) => found.push(Entry {
                            id,
                            bytes: meta.len(),
                            memory: None,
                            read_failures: 0,
                        }),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot read a spooled report's size; skipping it for now");
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
    pub fn push(&mut self, topic: &str, retain: bool, payload: &[u8]) -> PushOutcome {
        let id = self.next_id;
        self.next_id += 1;
        let mut outcome = PushOutcome::default();
        let size = (topic.len() + 2 + payload.len()) as u64;
        let memory = match write_message(&self.dir, &self.path_of(id), topic, retain, payload) {
            Ok(()) => {
                self.disk_worked();
                None
            }
            Err(why) => {
                self.disk_failed(&why);
                outcome.in_memory = true;
                self.memory_bytes += size;
                Some((topic.to_string(), retain, payload.to_vec()))
            }
        };
        self.bytes += size;
        self.entries.push_back(Entry {
            id,
            bytes: size,
            memory,
            read_failures: 0,
        });
        outcome.dropped = self.enforce_limit();
        outcome
    }

    /// Drop the oldest messages until the spool fits its limits (the newest always stays):
    /// the oldest of all for the size limit, the oldest kept in memory for the memory limit
    /// (the disk backlog is not sacrificed for reports the disk could not take).
    fn enforce_limit(&mut self) -> u64 {
        let mut dropped = 0;
        while self.entries.len() > 1 && self.bytes > self.max_bytes {
            if let Some(oldest) = self.entries.pop_front() {
                self.forget(&oldest);
                dropped += 1;
            }
        }
        while self.memory_bytes > self.memory_limit() {
            let Some(pos) = self.entries.iter().position(|e| e.memory.is_some()) else {
                break;
            };
            if pos + 1 == self.entries.len() {
                break;
            }
            if let Some(entry) = self.entries.remove(pos) {
                self.forget(&entry);
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
    /// False for unknown ids (already dropped).
    pub fn ack(&mut self, id: u64) -> bool {
        if let Some(pos) = self.entries.iter().position(|e| e.id == id)
            && let Some(entry) = self.entries.remove(pos)
        {
            self.forget(&entry);
            return true;
        }
        false
    }

    /// The first queued message with an id of at least `from`, read back for publishing.
    /// A message whose file vanished or is damaged is dropped (counted) and the next one is
    /// returned; one that cannot be read for another reason (I/O error) gives `None` this
    /// time and is dropped after its third failure.
    pub fn next_from(&mut self, from: u64) -> Option<Message> {
        loop {
            let pos = self.entries.iter().position(|e| e.id >= from)?;
            let entry = &self.entries[pos];
            if let Some((topic, retain, payload)) = &entry.memory {
                return Some(Message {
                    id: entry.id,
                    topic: topic.clone(),
                    retain: *retain,
                    payload: payload.clone(),
                });
            }
            let id = entry.id;
            let path = self.path_of(id);
            let why = match read_message(&path) {
                Ok((topic, retain, payload)) => {
                    return Some(Message {
                        id,
                        topic,
                        retain,
                        payload,
                    });
                }
                Err(ReadError::Damaged(why)) => why,
                Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    "the file is gone".to_string()
                }
                Err(ReadError::Io(e)) => {
                    self.errors += 1;
                    let entry = &mut self.entries[pos];
                    entry.read_failures += 1;
                    if entry.read_failures < 3 {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read a spooled report; trying again later");
                        return None;
                    }
                    format!("unreadable three times: {e}")
                }
            };
            tracing::warn!(path = %path.display(), "dropping a spooled report: {why}");
            self.dropped += 1;
            if let Some(entry) = self.entries.remove(pos) {
                self.forget(&entry);
            }
        }
    }

    /// Drop queued messages whose topic does not start with `prefix` (this agent's
    /// `<root>/v1/<site>/`): reports spooled under an earlier site or topic root, e.g. the
    /// package's placeholder site before enrolment, must not reach the collector as a node
    /// that does not exist. Damaged files go too. Returns how many were dropped (counted).
    pub fn discard_foreign(&mut self, prefix: &str) -> usize {
        let before = self.entries.len();
        let mut kept = VecDeque::with_capacity(before);
        let mut example = None;
        for entry in std::mem::take(&mut self.entries) {
            let topic = match &entry.memory {
                Some((topic, _, _)) => Ok(topic.clone()),
                None => read_message(&self.path_of(entry.id)).map(|(topic, _, _)| topic),
            };
            match topic {
                Ok(topic) if topic.starts_with(prefix) => kept.push_back(entry),
                // Unreadable now (I/O): keep it; sending retries and gives up after three tries.
                Err(ReadError::Io(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                    kept.push_back(entry)
                }
                other => {
                    if let Ok(topic) = other {
                        example.get_or_insert(topic);
                    }
                    self.dropped += 1;
                    self.forget(&entry);
                }
            }
        }
        self.entries = kept;
        let dropped = before - self.entries.len();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                example = example.as_deref().unwrap_or("(damaged)"),
                expected = prefix,
                "dropped spooled reports of another site or topic root (the config changed since they were queued)"
            );
        }
        dropped
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

/// Write `<r|n><topic>\n<payload>` to `path` atomically (temp file, then rename); `r` marks a
/// retained message. No fsync: a report survives an agent crash (page cache); a power cut
/// may lose the last ones, which is the trade for not syncing the disk every interval.
fn write_message(
    dir: &Path,
    path: &Path,
    topic: &str,
    retain: bool,
    payload: &[u8],
) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(if retain { b"r" } else { b"n" })?;
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

enum ReadError {
    Io(std::io::Error),
    Damaged(String),
}

fn read_message(path: &Path) -> Result<(String, bool, Vec<u8>), ReadError> {
    let bytes = std::fs::read(path).map_err(ReadError::Io)?;
    let damaged = |why: &str| ReadError::Damaged(why.to_string());
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| damaged("no topic line"))?;
    let (retain, topic) = match bytes[..nl].split_first() {
        Some((b'r', topic)) => (true, topic),
        Some((b'n', topic)) => (false, topic),
        _ => return Err(damaged("no retain flag")),
    };
    let topic = std::str::from_utf8(topic)
        .map_err(|_| damaged("topic is not UTF-8"))?
        .to_string();
    if topic.is_empty() {
        return Err(damaged("empty topic"));
    }
    Ok((topic, retain, bytes[nl + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_another_site_are_dropped_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 1 << 20);
        spool.push("tocsin/v1/default/web-01/report", false, b"placeholder");
        spool.push("tocsin/v1/dc1/web-01/report", false, b"kept");
        spool.push("tocsin/v1/dc1/core-sw-1/report", false, b"device");
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20);
        assert_eq!(spool.discard_foreign("tocsin/v1/dc1/"), 1);
        assert_eq!(spool.stats().dropped, 1);
        let left: Vec<String> = drain(&mut spool).into_iter().map(|(_, p)| p).collect();
        assert_eq!(left, ["kept", "device"]);
        // The dropped file is gone from disk: a restart does not bring it back.
        let spool = Spool::open(dir.path(), 1 << 20);
        assert_eq!(spool.len(), 2);
    }

    fn drain(spool: &mut Spool) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(m) = spool.next_from(from) {
            from = m.id + 1;
            out.push((m.id, String::from_utf8(m.payload).expect("utf8")));
        }
        out
    }

    fn queue_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join(QUEUE_DIR))
            .expect("list")
            .count()
    }

    #[test]
    fn fifo_survives_reopen_and_acks_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 1 << 20);
        assert!(spool.is_empty());
        for i in 1..=5 {
            let out = spool.push("t/r", false, format!("report {i}").as_bytes());
            assert_eq!(out, PushOutcome::default());
        }
        spool.push("t/status", true, b"stopped");
        assert!(spool.ack(2));
        assert!(!spool.ack(99), "unknown ids are ignored");
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20);
        let got = drain(&mut spool);
        assert_eq!(
            got.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            vec!["report 1", "report 3", "report 4", "report 5", "stopped"]
        );
        let status = spool.next_from(6).expect("status");
        assert_eq!((status.topic.as_str(), status.retain), ("t/status", true));
        assert!(!spool.next_from(0).expect("report").retain);
        // New messages come after the old ones.
        spool.push("t/r", false, b"report 7");
        assert_eq!(spool.next_from(7).expect("new").payload, b"report 7");
        for (id, _) in &got {
            spool.ack(*id);
        }
        spool.ack(7);
        assert!(spool.is_empty());
        assert_eq!(spool.stats().bytes, 0);
        assert_eq!(queue_files(dir.path()), 0);
    }

    #[test]
    fn full_spool_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Each message takes topic + flag + newline + payload = 13 bytes.
        let mut spool = Spool::open(dir.path(), 39);
        assert_eq!(spool.push("t", false, b"0123456789").dropped, 0);
        assert_eq!(spool.push("t", false, b"abcdefghij").dropped, 0);
        assert_eq!(spool.push("t", false, b"ABCDEFGHIJ").dropped, 0);
        assert_eq!(spool.push("t", false, b"klmnopqrst").dropped, 1);
        let stats = spool.stats();
        assert_eq!((stats.queued, stats.bytes, stats.dropped), (3, 39, 1));
        let got: Vec<String> = drain(&mut spool).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, vec!["abcdefghij", "ABCDEFGHIJ", "klmnopqrst"]);
        assert_eq!(queue_files(dir.path()), 3, "the dropped file is gone too");
    }

    #[test]
    fn unwritable_directory_falls_back_to_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").expect("write");
        // The spool dir would be below a regular file: it cannot be created.
        let mut spool = Spool::open(&file, 1 << 20);
        let out = spool.push("t/r", true, b"kept in memory");
        assert!(out.in_memory);
        assert!(spool.stats().errors >= 1);
        let m = spool.next_from(0).expect("message");
        assert_eq!(
            (m.topic.as_str(), m.retain, m.payload.as_slice()),
            ("t/r", true, &b"kept in memory"[..])
        );
        spool.ack(m.id);
        assert!(spool.is_empty());
    }

    #[test]
    fn memory_fallback_is_bounded_and_spares_the_disk_backlog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), u64::MAX);
        for i in 0..3 {
            spool.push("t", false, format!("on disk {i}").as_bytes());
        }
        // The disk stops taking writes: the queue directory becomes a file.
        std::fs::remove_dir_all(dir.path().join(QUEUE_DIR)).expect("rm");
        std::fs::write(dir.path().join(QUEUE_DIR), "x").expect("block");
        let big = vec![b'x'; 1024 * 1024];
        let mut dropped = 0;
        for _ in 0..12 {
            let out = spool.push("t", false, &big);
            assert!(out.in_memory);
            dropped += out.dropped;
        }
        let stats = spool.stats();
        assert_eq!(dropped, 5, "at most 8 MiB in memory");
        assert_eq!(stats.queued, 3 + 7, "the three on disk are kept");
        assert!(stats.bytes - 3 * 12 <= MEMORY_FALLBACK_MAX_BYTES);
    }

    #[test]
    fn damaged_files_are_dropped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = dir.path().join(QUEUE_DIR);
        std::fs::create_dir_all(&queue).expect("mkdir");
        std::fs::write(queue.join(format!("{:020}.msg", 3)), b"nt/r\nthree").expect("write");
        std::fs::write(queue.join(format!("{:020}.msg", 1)), b"no newline").expect("write");
        std::fs::write(queue.join(format!("{:020}.msg", 2)), b"xt/r\nno flag").expect("write");
        std::fs::write(queue.join(format!("{:020}.tmp", 4)), b"half").expect("write");
        std::fs::write(queue.join("README"), b"foreign").expect("write");
        let mut spool = Spool::open(dir.path(), 1 << 20);
        assert!(!queue.join(format!("{:020}.tmp", 4)).exists());
        assert_eq!(drain(&mut spool), vec![(3, "three".to_string())]);
        assert_eq!(spool.stats().dropped, 2);
        assert!(
            queue.join("README").exists(),
            "foreign files are left alone"
        );
        // Ids continue after the highest found.
        spool.push("t/r", false, b"four");
        assert_eq!(spool.next_from(4).expect("next").id, 4);
        // A file removed behind the spool's back is skipped.
        std::fs::remove_file(queue.join(format!("{:020}.msg", 3))).expect("rm");
        assert_eq!(spool.next_from(0).expect("next").id, 4);
    }
}
