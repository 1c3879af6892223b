//! Time as the engine sees it: milliseconds since the Unix epoch, passed in, never read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The wall clock, read only at the edges (ingest, tick driver, API).
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A duration as milliseconds, saturating.
pub fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// RFC 3339 with milliseconds, UTC (`2026-11-29T16:09:01.123Z`). Values outside
/// 1970..=9999 are clamped to that range (never panics).
pub fn rfc3339(ms: Millis) -> String {
    use std::fmt::Write as _;
    let ms = ms.clamp(0, tocsin_protocol::MAX_TS_MS);
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    let mut out = String::new();
    if write!(out, "{}", humantime::format_rfc3339_millis(t)).is_err() {
        out = format!("@{ms}ms");
    }
    out
}

/// "1h 2m 3s" style for durations shown to people.
pub fn human(ms: Millis) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(1_764_412_345_123), "2025-11-29T10:32:25.123Z");
        assert_eq!(human(3_723_000), "1h 2m 3s");
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }
}
