//! Gives the memory DuckDB freed back to the system: glibc keeps it in its arenas otherwise.
//!
//! DuckDB allocates through the C library's `malloc` (the Rust side uses mimalloc, which
//! returns what it frees by itself). glibc hands freed memory back only from the top of a
//! heap, so after checkpoints and prunes tens of MB of free chunks stayed resident between
//! live ones: at 50,000 nodes about 55 of the 140 MB in glibc's arenas were free
//! (BENCHMARKS.md). `malloc_trim(0)` releases the free pages of every arena.

use std::time::{Duration, Instant};

/// What one trim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Resident set before and after, in bytes (0 where `/proc` cannot tell).
    pub rss_before: u64,
    pub rss_after: u64,
    pub took: Duration,
}

impl Trimmed {
    /// Bytes the trim gave back (never negative: other threads may allocate meanwhile).
    pub fn released(&self) -> u64 {
        self.rss_before.saturating_sub(self.rss_after)
    }
}

/// Release the free pages of glibc's arenas; `None` off glibc, where there is nothing to do.
///
/// glibc locks each arena while it walks it, so a thread allocating meanwhile waits; the
/// writer calls this between batches, once a minute, where a walk of a few ms costs nothing.
pub fn release_free_memory() -> Option<Trimmed> {
    let started = Instant::now();
    let rss_before = resident_bytes().unwrap_or(0);
    if !malloc_trim() {
        return None;
    }
    Some(Trimmed {
        rss_before,
        rss_after: resident_bytes().unwrap_or(0),
        took: started.elapsed(),
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn malloc_trim() -> bool {
    // SAFETY: `malloc_trim` takes no pointers and touches only glibc's own free lists, under
    // the arenas' locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() -> bool {
    false
}

/// This process's resident set in bytes (`VmRSS` of `/proc/self/status`).
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Memory freed below a live allocation stays resident until trimmed. The library test
    /// has no global allocator of its own, so its `Vec`s come from glibc's `malloc`, as
    /// DuckDB's blocks do in the collector: 256 MB in 2 KB pieces (under glibc's mmap
    /// threshold), all freed but the last, which pins the heap's top.
    #[test]
    fn trimming_gives_back_what_was_freed_below_a_live_allocation() {
        let mut pieces: Vec<Vec<u8>> = (0..128_000).map(|i| vec![i as u8; 2048]).collect();
        let pin = pieces.pop().expect("128,000 pieces");
        drop(std::hint::black_box(pieces));
        let trimmed = release_free_memory().expect("glibc trims");
        assert!(trimmed.rss_before > 0, "VmRSS read: {trimmed:?}");
        assert!(
            // Half: other tests of this binary allocate meanwhile.
            trimmed.released() > 128 << 20,
            "expected most of 256 MB back: {trimmed:?}"
        );
        assert_eq!(std::hint::black_box(pin)[0], (127_999 % 256) as u8);
    }
}
