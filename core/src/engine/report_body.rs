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
    /// Text that decoded to a valid [`Report`] (so, valid JSON).
    Json(Arc<str>),
}

impl ReportBody {
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
}
