//! Decoding and validation of raw payloads: size, JSON shape, version, names, numbers.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use crate::{MAX_PAYLOAD_BYTES, NodeKind, ProtocolError, Report, Status, VERSION};

const MAX_LABEL_KEY: usize = 64;
const MAX_LABEL_VALUE: usize = 256;
const MAX_CHECK_NAME: usize = 128;
const MAX_CHECK_OUTPUT: usize = 8 * 1024;
const MAX_METRIC_NAME: usize = 128;
const MAX_INTERVAL_S: u32 = 86_400;
/// 9999-12-31T23:59:59.999Z: later timestamps are nonsense and unprintable as RFC 3339.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;

/// Site and node names: `[A-Za-z0-9._-]{1,64}`.
pub fn is_valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Metric names: dotted lower case, e.g. `mem.used_pct` (`[a-z0-9_]+(\.[a-z0-9_]+)*`).
pub fn is_valid_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_METRIC_NAME
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

fn is_valid_label_key(s: &str) -> bool {
    (1..=MAX_LABEL_KEY).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A payload type with a protocol version field.
trait Versioned: DeserializeOwned {
    fn version(&self) -> u32;
}

impl Versioned for Report {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for Status {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Parse JSON after the size and version gates, so each failure gets its own reason.
///
/// A good payload is parsed once, straight into `T`; only a payload that fails that (or
/// carries another version) is parsed again as a JSON value, to tell a wrong version from
/// a malformed payload. Going through a `serde_json::Value` every time cost a fifth of the
/// collector's intake CPU at 5,000 reports/s (BENCHMARKS.md).
fn decode<T: Versioned>(payload: &[u8]) -> Result<T, ProtocolError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ProtocolError::TooLarge {
            size: payload.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    if let Ok(t) = serde_json::from_slice::<T>(payload)
        && t.version() == VERSION
    {
        return Ok(t);
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ProtocolError::Malformed("payload is not a JSON object".into()))?;
    match obj.get("v") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => return Err(ProtocolError::UnknownVersion(v.to_string())),
        None => return Err(ProtocolError::UnknownVersion("(missing)".into())),
    }
    serde_json::from_value(value).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// Decode and validate a report payload.
pub fn decode_report(payload: &[u8]) -> Result<Report, ProtocolError> {
    let report: Report = decode(payload)?;
    report.validate()?;
    Ok(report)
}

/// Decode and validate a status payload.
pub fn decode_status(payload: &[u8]) -> Result<Status, ProtocolError> {
    let status: Status = decode(payload)?;
    status.validate()?;
    Ok(status)
}

fn check_labels<'a>(
    field: &str,
    labels: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), ProtocolError> {
    for (k, v) in labels {
        if !is_valid_label_key(k) {
            return Err(ProtocolError::invalid(
                field,
                format!("label key {k:?} must match [A-Za-z_][A-Za-z0-9_]{{0,63}}"),
            ));
        }
        if v.len() > MAX_LABEL_VALUE {
            return Err(ProtocolError::invalid(
                field,
                format!("label {k:?} is longer than {MAX_LABEL_VALUE} bytes"),
            ));
        }
    }
    Ok(())
}

impl Report {
    /// Check every field against the protocol rules (the version is checked by decoding).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.v != VERSION {
            return Err(ProtocolError::UnknownVersion(self.v.to_string()));
        }
        if !is_valid_name(&self.node) {
            return Err(ProtocolError::invalid(
                "node",
                "must match [A-Za-z0-9._-]{1,64}",
            ));
        }
        if !is_valid_name(&self.site) {
            return Err(ProtocolError::invalid(
                "site",
                "must match [A-Za-z0-9._-]{1,64}",
            ));
        }
        if self.ts <= 0 || self.ts > MAX_TS_MS {
            return Err(ProtocolError::invalid(
                "ts",
                "must be milliseconds since the Unix epoch, before the year 10000",
            ));
        }
        if self.interval_s > MAX_INTERVAL_S {
            return Err(ProtocolError::invalid(
                "interval_s",
                "must be at most one day",
            ));
        }
        match (&self.kind, &self.via) {
            (NodeKind::Network, None) => {
                return Err(ProtocolError::invalid(
                    "via",
                    "a network report must name the probing agent",
                ));
            }
            (_, Some(via)) if !is_valid_name(via) => {
                return Err(ProtocolError::invalid(
                    "via",
                    "must match [A-Za-z0-9._-]{1,64}",
                ));
            }
            _ => {}
        }
        for m in &self.metrics {
            if !is_valid_metric_name(&m.name) {
                return Err(ProtocolError::invalid(
                    "metrics",
                    format!("name {:?} must be dotted lower case, unit last", m.name),
                ));
            }
            if !m.value.is_finite() {
                return Err(ProtocolError::invalid(
                    "metrics",
                    format!("{} is not a finite number", m.name),
                ));
            }
            check_labels("metrics", m.labels.iter())?;
        }
        let mut seen = BTreeSet::new();
        for c in &self.checks {
            if c.name.is_empty()
                || c.name.len() > MAX_CHECK_NAME
                || c.name.chars().any(char::is_control)
            {
                return Err(ProtocolError::invalid(
                    "checks",
                    format!(
                        "name {:?} must be 1..{MAX_CHECK_NAME} printable characters",
                        c.name
                    ),
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(ProtocolError::invalid(
                    "checks",
                    format!("check {:?} appears twice", c.name),
                ));
            }
            if c.output.len() > MAX_CHECK_OUTPUT {
                return Err(ProtocolError::invalid(
                    "checks",
                    format!(
                        "output of {:?} is longer than {MAX_CHECK_OUTPUT} bytes",
                        c.name
                    ),
                ));
            }
            if c.latency_ms.is_some_and(|l| !l.is_finite() || l < 0.0) {
                return Err(ProtocolError::invalid(
                    "checks",
                    format!(
                        "latency of {:?} is not a finite, non-negative number",
                        c.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Status {
    /// Check every field against the protocol rules.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.v != VERSION {
            return Err(ProtocolError::UnknownVersion(self.v.to_string()));
        }
        if self.ts.is_some_and(|ts| ts <= 0 || ts > MAX_TS_MS) {
            return Err(ProtocolError::invalid(
                "ts",
                "must be milliseconds since the Unix epoch",
            ));
        }
        for p in &self.parents {
            if !is_valid_name(p) {
                return Err(ProtocolError::invalid(
                    "parents",
                    format!("{p:?} must match [A-Za-z0-9._-]{{1,64}}"),
                ));
            }
        }
        check_labels("labels", self.labels.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CheckResult, CheckStatus, Inventory, Metric, NodeState};

    fn report() -> Report {
        Report {
            v: 1,
            node: "web-01".into(),
            site: "dc1".into(),
            kind: NodeKind::Host,
            seq: 1042,
            ts: 1_764_412_345_123,
            interval_s: 10,
            via: None,
            metrics: vec![
                Metric::new("cpu.usage_pct", 12.5),
                Metric::new("fs.used_pct", 91.2).with_label("mount", "/"),
            ],
            checks: vec![CheckResult {
                name: "tcp:postgres".into(),
                status: CheckStatus::Critical,
                output: "connect refused".into(),
                latency_ms: Some(0.4),
            }],
        }
    }

    fn refused(payload: &[u8]) -> ProtocolError {
        decode_report(payload).expect_err("payload should be refused")
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = serde_json::to_value(report()).expect("serialise");
        edit(&mut v);
        serde_json::to_vec(&v).expect("serialise")
    }

    #[test]
    fn report_round_trips() {
        let r = report();
        let bytes = serde_json::to_vec(&r).expect("serialise");
        assert_eq!(decode_report(&bytes).expect("valid"), r);
    }

    #[test]
    fn design_example_decodes_and_unknown_fields_are_ignored() {
        let raw = br#"{"v":1, "node":"web-01", "site":"dc1", "kind":"host", "seq":1042,
            "ts":1764412345123, "interval_s":10, "future_field": {"x": 1},
            "metrics":[{"name":"cpu.usage_pct","value":12.5},
                       {"name":"fs.used_pct","value":91.2,"labels":{"mount":"/"}}],
            "checks":[{"name":"tcp:postgres","status":"critical","output":"connect refused","latency_ms":0.4}]}"#;
        assert_eq!(decode_report(raw).expect("design example"), report());
    }

    #[test]
    fn network_report_needs_via() {
        let mut r = report();
        r.kind = NodeKind::Network;
        let bytes = serde_json::to_vec(&r).expect("serialise");
        assert_eq!(refused(&bytes).reason(), "invalid");
        r.via = Some("web-01".into());
        let bytes = serde_json::to_vec(&r).expect("serialise");
        assert!(decode_report(&bytes).is_ok());
    }

    #[test]
    fn every_kind_of_bad_report_is_refused_with_its_reason() {
        let big = {
            let mut r = report();
            r.checks[0].output = "x".repeat(4000);
            let mut v = serde_json::to_value(&r).expect("serialise");
            v["padding"] = serde_json::Value::String("y".repeat(MAX_PAYLOAD_BYTES));
            serde_json::to_vec(&v).expect("serialise")
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("oversized", big, "too_large"),
            ("not json", b"hello".to_vec(), "malformed"),
            ("truncated json", br#"{"v":1,"node":"#.to_vec(), "malformed"),
            ("json array", b"[1,2]".to_vec(), "malformed"),
            ("missing v", with(|v| { if let Some(o) = v.as_object_mut() { o.remove("v"); } }), "unknown_version"),
            ("v = 2", with(|v| v["v"] = 2.into()), "unknown_version"),
            ("v as string", with(|v| v["v"] = "1".into()), "unknown_version"),
            ("missing seq", with(|v| { if let Some(o) = v.as_object_mut() { o.remove("seq"); } }), "malformed"),
            ("negative seq", with(|v| v["seq"] = (-1).into()), "malformed"),
            ("value as string", with(|v| v["metrics"][0]["value"] = "12".into()), "malformed"),
            ("bad status", with(|v| v["checks"][0]["status"] = "bad".into()), "malformed"),
            ("bad kind", with(|v| v["kind"] = "toaster".into()), "malformed"),
            ("node with space", with(|v| v["node"] = "web 01".into()), "invalid"),
            ("empty site", with(|v| v["site"] = "".into()), "invalid"),
            ("long node", with(|v| v["node"] = "a".repeat(65).into()), "invalid"),
            ("zero ts", with(|v| v["ts"] = 0.into()), "invalid"),
            ("ts after year 9999", with(|v| v["ts"] = (MAX_TS_MS + 1).into()), "invalid"),
            ("upper-case metric", with(|v| v["metrics"][0]["name"] = "CPU.usage".into()), "invalid"),
            ("empty metric segment", with(|v| v["metrics"][0]["name"] = "cpu..usage".into()), "invalid"),
            ("bad label key", with(|v| v["metrics"][1]["labels"] = serde_json::json!({"mount point": "/"})), "invalid"),
            ("duplicate check", with(|v| {
                let c = v["checks"][0].clone();
                if let Some(a) = v["checks"].as_array_mut() {
                    a.push(c);
                }
            }), "invalid"),
            ("empty check name", with(|v| v["checks"][0]["name"] = "".into()), "invalid"),
            ("negative latency", with(|v| v["checks"][0]["latency_ms"] = (-1.0).into()), "invalid"),
            ("huge interval", with(|v| v["interval_s"] = 1_000_000.into()), "invalid"),
            ("number out of range", br#"{"v":1,"node":"a","site":"b","seq":1,"ts":1,"metrics":[{"name":"x","value":1e999}]}"#.to_vec(), "malformed"),
        ];
        for (what, payload, reason) in cases {
            let err = refused(&payload);
            assert_eq!(err.reason(), reason, "{what}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn non_finite_values_are_refused_when_validating_built_reports() {
        let mut r = report();
        r.metrics[0].value = f64::NAN;
        assert_eq!(r.validate().expect_err("NaN").reason(), "invalid");
        r.metrics[0].value = f64::INFINITY;
        assert_eq!(r.validate().expect_err("inf").reason(), "invalid");
    }

    #[test]
    fn status_birth_will_and_stop_round_trip() {
        let birth = Status {
            v: 1,
            state: NodeState::Online,
            ts: Some(1_764_412_345_123),
            agent: Some(crate::AgentInfo {
                version: "0.1.0".into(),
            }),
            inventory: Some(Inventory {
                hostname: Some("web-01".into()),
                os: Some("Debian GNU/Linux".into()),
                cpu_cores: Some(2),
                ip_addresses: vec!["127.0.0.1".into()],
                ..Inventory::default()
            }),
            parents: vec!["core-sw-1".into()],
            labels: [("criticality".to_string(), "high".to_string())].into(),
        };
        let bytes = serde_json::to_vec(&birth).expect("serialise");
        assert_eq!(decode_status(&bytes).expect("valid"), birth);

        let will = serde_json::to_vec(&Status::last_will()).expect("serialise");
        assert_eq!(will, br#"{"v":1,"state":"offline"}"#);
        assert_eq!(
            decode_status(&will).expect("valid").state,
            NodeState::Offline
        );

        let stopped = decode_status(br#"{"v":1,"state":"stopped","ts":5}"#).expect("valid");
        assert_eq!(stopped.state, NodeState::Stopped);
    }

    #[test]
    fn bad_status_payloads_are_refused() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"v":1,"state":"sleeping"}"#, "malformed"),
            (br#"{"v":3,"state":"online"}"#, "unknown_version"),
            (
                br#"{"v":1,"state":"online","parents":["bad parent"]}"#,
                "invalid",
            ),
            (br#"{"v":1,"state":"online","labels":{"":"x"}}"#, "invalid"),
            (b"", "malformed"),
        ];
        for (payload, reason) in cases {
            let err = decode_status(payload).expect_err("refused");
            assert_eq!(err.reason(), reason, "{}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn check_status_exit_codes() {
        for s in [
            CheckStatus::Ok,
            CheckStatus::Warning,
            CheckStatus::Critical,
            CheckStatus::Unknown,
        ] {
            assert_eq!(CheckStatus::from_exit_code(s.exit_code()), s);
            assert_eq!(CheckStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CheckStatus::from_exit_code(127), CheckStatus::Unknown);
    }

    #[test]
    fn names() {
        assert!(is_valid_name("web-01.dc_1"));
        assert!(!is_valid_name("web/01"));
        assert!(!is_valid_name("+"));
        assert!(is_valid_metric_name("net.rx_bytes_per_s"));
        assert!(!is_valid_metric_name("net.rx-bytes"));
        assert!(!is_valid_metric_name(".cpu"));
    }
}
