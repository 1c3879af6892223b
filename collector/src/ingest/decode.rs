//! Topic + payload -> engine input, or a rejection kept with its reason (pure).

use tocsin_protocol::{Topic, TopicKind, decode_report, decode_status};

use crate::engine::Input;
use crate::store::{REJECTED_KEEP_BYTES, RejectedRow};
use crate::time::Millis;

/// What one MQTT message became.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Input(Input),
    Rejected(RejectedRow),
    /// Nothing to do: an empty retained payload (a retained status being cleared).
    Ignored,
}

fn reject(
    now: Millis,
    topic: &str,
    site: Option<&str>,
    node: Option<&str>,
    reason: &str,
    error: String,
    payload: &[u8],
) -> Decoded {
    let keep = &payload[..payload.len().min(REJECTED_KEEP_BYTES)];
    Decoded::Rejected(RejectedRow {
        received_at: now,
        topic: topic.to_string(),
        site: site.map(str::to_string),
        node: node.map(str::to_string),
        reason: reason.to_string(),
        error,
        payload_size: payload.len(),
        payload: String::from_utf8_lossy(keep).into_owned(),
    })
}

/// Decode one message received at `now` on `topic` under `root`.
pub fn decode(root: &str, topic: &str, payload: &[u8], now: Millis) -> Decoded {
    let t = match Topic::parse(root, topic) {
        Ok(t) => t,
        Err(e) => return reject(now, topic, None, None, "bad_topic", e.to_string(), payload),
    };
    let (site, node) = (Some(t.site.as_str()), Some(t.node.as_str()));
    match t.kind {
        TopicKind::Report => match decode_report(payload) {
            Ok(report) if report.site != t.site || report.node != t.node => reject(
                now,
                topic,
                site,
                node,
                "invalid",
                format!(
                    "payload names {}/{} but the topic names {}/{}",
                    report.site, report.node, t.site, t.node
                ),
                payload,
            ),
            Ok(report) => Decoded::Input(Input::Report(Box::new(report))),
            Err(e) => reject(now, topic, site, node, e.reason(), e.to_string(), payload),
        },
        TopicKind::Status if payload.is_empty() => Decoded::Ignored,
        TopicKind::Status => match decode_status(payload) {
            Ok(status) => Decoded::Input(Input::Status {
                site: t.site,
                node: t.node,
                status: Box::new(status),
            }),
            Err(e) => reject(now, topic, site, node, e.reason(), e.to_string(), payload),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(d: &Decoded) -> &str {
        match d {
            Decoded::Rejected(r) => &r.reason,
            _ => "accepted",
        }
    }

    #[test]
    fn accepts_reports_and_statuses() {
        let report = br#"{"v":1,"node":"web-01","site":"dc1","seq":1,"ts":5}"#;
        assert!(matches!(
            decode("tocsin", "tocsin/v1/dc1/web-01/report", report, 9),
            Decoded::Input(Input::Report(_))
        ));
        let status = br#"{"v":1,"state":"offline"}"#;
        assert!(matches!(
            decode("tocsin", "tocsin/v1/dc1/web-01/status", status, 9),
            Decoded::Input(Input::Status { .. })
        ));
        assert_eq!(
            decode("tocsin", "tocsin/v1/dc1/web-01/status", b"", 9),
            Decoded::Ignored
        );
    }

    #[test]
    fn refuses_with_reason_and_keeps_a_bounded_copy() {
        let ok = br#"{"v":1,"node":"web-01","site":"dc1","seq":1,"ts":5}"#;
        assert_eq!(
            reason(&decode("tocsin", "tocsin/v1/dc1/web-02/report", ok, 9)),
            "invalid"
        );
        assert_eq!(
            reason(&decode("tocsin", "tocsin/v1/dc1/web-01/other", ok, 9)),
            "bad_topic"
        );
        assert_eq!(
            reason(&decode("tocsin", "tocsin/v1/dc1/web-01/report", b"{", 9)),
            "malformed"
        );
        assert_eq!(
            reason(&decode(
                "tocsin",
                "tocsin/v1/dc1/web-01/report",
                br#"{"v":9}"#,
                9
            )),
            "unknown_version"
        );
        let huge = vec![b'x'; tocsin_protocol::MAX_PAYLOAD_BYTES + 1];
        match decode("tocsin", "tocsin/v1/dc1/web-01/report", &huge, 9) {
            Decoded::Rejected(r) => {
                assert_eq!(r.reason, "too_large");
                assert_eq!(r.payload_size, huge.len());
                assert_eq!(r.payload.len(), REJECTED_KEEP_BYTES);
                assert_eq!(r.node.as_deref(), Some("web-01"));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(
            reason(&decode(
                "tocsin",
                "tocsin/v1/dc1/web-01/status",
                b"\xff\xfe",
                9
            )),
            "malformed"
        );
    }
}
