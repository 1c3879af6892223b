//! Gives the memory DuckDB freed back to the system: glibc keeps it in its arenas otherwise;
//! reads glibc's accounting of them.
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

/// What glibc's `malloc` holds: bytes in live allocations and bytes free in its arenas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MallocBytes {
    /// Handed out and not freed (DuckDB's, mostly: the Rust side allocates from mimalloc).
    pub in_use: u64,
    /// Free chunks glibc keeps in its heaps; a trim gives their whole pages back to the
    /// system but they stay counted here (resident only where touched since).
    pub free: u64,
    /// Arenas (heaps) glibc keeps: a thread that allocates while the others' are taken
    /// gets one of its own, up to 8 per core (`MALLOC_ARENA_MAX` caps them); 0 where
    /// `malloc_info` cannot tell.
    pub arenas: u32,
}

/// glibc's accounting over all its arenas (`mallinfo2`); `None` off glibc.
///
/// It locks each arena while it sums its bins, like a trim; the writer calls it between
/// batches once a minute, after its trim.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn malloc_bytes() -> Option<MallocBytes> {
    // SAFETY: `mallinfo2` takes no pointers and returns a plain struct by value; it only
    // reads glibc's own bookkeeping, under the arenas' locks.
    let info = unsafe { libc::mallinfo2() };
    Some(MallocBytes {
        // Chunks in use in the heaps plus the ones served by their own `mmap`.
        in_use: (info.uordblks + info.hblkhd) as u64,
        free: info.fordblks as u64,
        arenas: malloc_arenas().unwrap_or(0),
    })
}

/// How many arenas glibc keeps: `malloc_info` writes one `<heap nr="..">` element each.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn malloc_arenas() -> Option<u32> {
    let mut buf: *mut libc::c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: `open_memstream` keeps the two pointers, which outlive the stream (closed
    // below); after `fclose` `buf` holds `len` bytes allocated by glibc's `malloc`, freed
    // here with its `free`. `malloc_info` only writes to the stream it is given.
    unsafe {
        let stream = libc::open_memstream(&mut buf, &mut len);
        if stream.is_null() {
            return None;
        }
        let written = libc::malloc_info(0, stream);
        let closed = libc::fclose(stream);
        if buf.is_null() {
            return None;
        }
        let text = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let heaps = text.windows(9).filter(|w| w == b"<heap nr=").count();
        libc::free(buf.cast());
        (written == 0 && closed == 0).then(|| u32::try_from(heaps).unwrap_or(u32::MAX))
    }
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

    /// Both tests move hundreds of MB through glibc, whose counters are the process's: one
    /// at a time (the other tests of this binary move far less).
    static BIG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Memory freed below a live allocation stays resident until trimmed. The library test
    /// has no global allocator of its own, so its `Vec`s come from glibc's `malloc`, as
    /// DuckDB's blocks do in the collector: 256 MB in 2 KB pieces (under glibc's mmap
    /// threshold), all freed but the last, which pins the heap's top.
    #[test]
    fn trimming_gives_back_what_was_freed_below_a_live_allocation() {
        let _one = BIG.lock().unwrap_or_else(|e| e.into_inner());
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

    /// glibc's accounting sees an allocation while it lives and its chunk as free after it
    /// is freed below a live one (until trimmed).
    #[test]
    fn malloc_bytes_tells_in_use_from_free() {
        let _one = BIG.lock().unwrap_or_else(|e| e.into_inner());
        let before = malloc_bytes().expect("glibc");
        assert!(
            before.arenas >= 1,
            "malloc_info shows the main arena: {before:?}"
        );
        let mut pieces: Vec<Vec<u8>> = (0..128_000).map(|i| vec![i as u8; 2048]).collect();
        let live = malloc_bytes().expect("glibc");
        // 256 MB more in use; half as the margin for the other tests of this binary.
        assert!(
            live.in_use >= before.in_use + (128 << 20),
            "before {before:?}, with 256 MB live {live:?}"
        );
        let pin = pieces.pop().expect("128,000 pieces");
        drop(std::hint::black_box(pieces));
        let freed = malloc_bytes().expect("glibc");
        assert!(
            freed.free >= live.free + (128 << 20),
            "with 256 MB live {live:?}, freed below a live piece {freed:?}"
        );
        assert!(
            freed.in_use + (128 << 20) <= live.in_use,
            "with 256 MB live {live:?}, freed {freed:?}"
        );
        assert_eq!(std::hint::black_box(pin)[0], (127_999 % 256) as u8);
    }
}
