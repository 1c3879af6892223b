//! The report a node row carries to the store: decoded, or the JSON text it came in.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tocsin_protocol::Report;

/// The report a `Node` effect carries to the store, which keeps a node's newest one.
///
/// The engine hands on the report it evaluated ([`ReportBody::Decoded`]); the collector swaps
/// it for the text it came in ([`ReportBody::Json`]) before the effect waits for the store's
/// writer: decoded, a 30-metric report holds 8 to 17 KB in 70 to 120 allocations (every
/// metric's name and label map), its text about 2 KB in one, and up to a thousand and more wait
/// for the writer when it is behind. The writer stores the text as it is, rather than
/// serialising the report again. Either serialises as the report object.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportBody {
    Decoded(Arc<Report>),
    /// Text that decoded to a valid [`Report`] and that DuckDB's JSON takes too
    /// ([`ReportBody::text_of`]).
    Json(Arc<str>),
}

impl ReportBody {
    /// The text of a report that decoded, to store as it came; `None` when it may not be
    /// stored as it is. serde_json skips the fields a [`Report`] does not have without
    /// checking their `\u` escapes, and DuckDB's JSON refuses a lone surrogate
    /// (`"\ud800"`): such a text would fail the whole batch it is written in, every time it
    /// is retried. So a text with any surrogate escape is not kept (the decoded report is
    /// stored instead, serialised again); a false alarm (a valid pair, an escaped backslash
    /// before `ud8`) only costs that.
    pub fn text_of(payload: &[u8]) -> Option<Arc<str>> {
        let text = std::str::from_utf8(payload).ok()?;
        (!has_surrogate_escape(text)).then(|| Arc::from(text))
    }

    /// The report as JSON text (`None`: a decoded report that would not serialise, which a
    /// report of strings and numbers always does).
    pub fn json(&self) -> Option<Cow<'_, str>> {
        match self {
            ReportBody::Decoded(r) => serde_json::to_string(&**r).ok().map(Cow::Owned),
            ReportBody::Json(text) => Some(Cow::Borrowed(text)),
        }
    }

    /// The decoded report (decoding the text: `None` if it does not decode as one).
    pub fn decode(&self) -> Option<Cow<'_, Report>> {
        match self {
            ReportBody::Decoded(r) => Some(Cow::Borrowed(&**r)),
            ReportBody::Json(text) => serde_json::from_str(text).ok().map(Cow::Owned),
        }
    }
}

/// Whether `text` has a `\u` escape of a UTF-16 surrogate (D800 to DFFF), paired or not.
fn has_surrogate_escape(text: &str) -> bool {
    text.as_bytes().windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && matches!(w[2], b'd' | b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

impl Serialize for ReportBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ReportBody::Decoded(r) => r.serialize(s),
            ReportBody::Json(text) => serde_json::from_str::<serde_json::Value>(text)
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ReportBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Report::deserialize(d).map(|r| ReportBody::Decoded(Arc::new(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        serde_json::from_str(
            r#"{"v":1,"node":"web-01","site":"dc1","seq":7,"ts":5,
                "metrics":[{"name":"fs.used_pct","labels":{"mount":"/"},"value":97.5}]}"#,
        )
        .expect("a report")
    }

    /// Both forms give the same report, as text, decoded, and serialised.
    #[test]
    fn decoded_and_text_are_the_same_report() {
        let r = report();
        let text = serde_json::to_string(&r).expect("serialises");
        let decoded = ReportBody::Decoded(Arc::new(r.clone()));
        // Text as an agent may send it: spaced out, fields in another order.
        let spaced = format!(" {} ", text.replace(',', " , "));
        let json = ReportBody::Json(spaced.as_str().into());
        assert_eq!(decoded.json().as_deref(), Some(text.as_str()));
        assert_eq!(
            json.json().as_deref(),
            Some(spaced.as_str()),
            "stored as it came"
        );
        assert_eq!(json.decode().as_deref(), Some(&r));
        assert_eq!(decoded.decode().as_deref(), Some(&r));
        assert_eq!(
            serde_json::to_value(&json).expect("serialises"),
            serde_json::to_value(&decoded).expect("serialises")
        );
        let back: ReportBody = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, decoded);
        assert!(ReportBody::Json("{".into()).decode().is_none());
    }

    /// A text is kept unless it has a surrogate escape, which DuckDB's JSON may refuse
    /// (serde_json does not check them in fields it skips).
    #[test]
    fn a_text_with_a_surrogate_escape_is_not_kept() {
        let ok = r#"{"v":1,"node":"n","site":"s","seq":1,"ts":1,"note":"a \"quote\" \u00e9 \n"}"#;
        assert_eq!(ReportBody::text_of(ok.as_bytes()).as_deref(), Some(ok));
        for bad in [
            r#"{"v":1,"node":"n","site":"s","seq":1,"ts":1,"note":"\ud800"}"#,
            r#"{"note":"\uDC00"}"#,
            r#"{"note":"\ud83d\ude00"}"#, // a valid pair: not kept either, harmless
        ] {
            assert!(ReportBody::text_of(bad.as_bytes()).is_none(), "{bad}");
        }
        // The lone surrogate is in a field a Report does not have: it decodes.
        let lone = r#"{"v":1,"node":"n","site":"s","seq":1,"ts":1,"note":"\ud800"}"#;
        assert!(serde_json::from_str::<Report>(lone).is_ok());
        assert!(ReportBody::text_of(&[0xff, 0xfe]).is_none(), "not UTF-8");
    }
}
