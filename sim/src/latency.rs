//! Failure-to-ticket latency: injections matched with the `ticket.opened` events seen (pure).

use std::collections::BTreeMap;

use serde::Serialize;

/// A failure as it was actually injected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Injected {
    pub id: u64,
    pub kind: String,
    pub site: String,
    pub node: String,
    /// The rule expected to open the ticket, and its `for` (ms).
    pub rule: String,
    pub for_ms: i64,
    /// Wall clock when the failure became visible: the first report showing it was
    /// published, or the agent's connection dropped (ms since the epoch).
    pub at_ms: i64,
}

/// A `ticket.opened` event as the watcher received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketSeen {
    pub number: String,
    pub site: String,
    pub node: String,
    /// When the event reached the watcher (ms since the epoch).
    pub arrived_ms: i64,
    /// When the engine opened the ticket, from the event (ms since the epoch).
    pub opened_ms: Option<i64>,
}

/// Percentiles of a set of latencies (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: i64,
    pub p90_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

impl Spread {
    /// Nearest-rank percentiles.
    pub fn of(mut v: Vec<i64>) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            count: v.len(),
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: v[v.len() - 1],
        }
    }
}

/// The matched figures.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct LatencyReport {
    /// Injection to the ticket event's arrival, minus the rule's `for`.
    pub end_to_end: Spread,
    /// Injection to the engine's decision (the ticket's open time), minus `for`.
    pub engine: Spread,
    pub by_kind: BTreeMap<String, Spread>,
    pub injected: usize,
    pub matched: usize,
    /// Injections no ticket was seen for: `id kind site/node`.
    pub unmatched: Vec<String>,
}

/// Match each injection with the first ticket opened for its node after it.
pub fn measure(injected: &[Injected], tickets: &[TicketSeen]) -> LatencyReport {
    let mut by_node: BTreeMap<(&str, &str), Vec<&TicketSeen>> = BTreeMap::new();
    for t in tickets {
        by_node
            .entry((t.site.as_str(), t.node.as_str()))
            .or_default()
            .push(t);
    }
    for list in by_node.values_mut() {
        list.sort_by_key(|t| t.arrived_ms);
    }
    let mut end_to_end = Vec::new();
    let mut engine = Vec::new();
    let mut kinds: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for i in injected {
        let found = by_node
            .get(&(i.site.as_str(), i.node.as_str()))
            .and_then(|list| list.iter().find(|t| t.arrived_ms >= i.at_ms));
        match found {
            Some(t) => {
                let l = t.arrived_ms - i.at_ms - i.for_ms;
                end_to_end.push(l);
                kinds.entry(i.kind.clone()).or_default().push(l);
                if let Some(o) = t.opened_ms {
                    engine.push(o - i.at_ms - i.for_ms);
                }
            }
            None => unmatched.push(format!("{} {} {}/{}", i.id, i.kind, i.site, i.node)),
        }
    }
    LatencyReport {
        matched: end_to_end.len(),
        end_to_end: Spread::of(end_to_end),
        engine: Spread::of(engine),
        by_kind: kinds.into_iter().map(|(k, v)| (k, Spread::of(v))).collect(),
        injected: injected.len(),
        unmatched,
    }
}

/// Read a `ticket.opened` event payload (see docs/TICKETS.md): the ticket's number, site and
/// node, and the entry's time. None for anything else.
pub fn parse_ticket_event(payload: &[u8], arrived_ms: i64) -> Option<TicketSeen> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if v.get("event")?.as_str()? != "ticket.opened" {
        return None;
    }
    let t = v.get("ticket")?;
    let opened_ms = v
        .get("entry")
        .and_then(|e| e.get("at"))
        .and_then(|a| a.as_str())
        .and_then(|a| humantime::parse_rfc3339_weak(a).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    Some(TicketSeen {
        number: t.get("number")?.as_str()?.to_string(),
        site: t.get("site")?.as_str()?.to_string(),
        node: t.get("node")?.as_str()?.to_string(),
        arrived_ms,
        opened_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inj(id: u64, node: &str, at_ms: i64, for_ms: i64) -> Injected {
        Injected {
            id,
            kind: "service_down".into(),
            site: "s1".into(),
            node: node.into(),
            rule: "check_critical".into(),
            for_ms,
            at_ms,
        }
    }

    fn seen(node: &str, arrived_ms: i64) -> TicketSeen {
        TicketSeen {
            number: format!("INC-{arrived_ms}"),
            site: "s1".into(),
            node: node.into(),
            arrived_ms,
            opened_ms: Some(arrived_ms - 5),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Spread::of((1..=100).rev().collect());
        assert_eq!(
            (s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms),
            (100, 50, 90, 99, 100)
        );
        assert_eq!(Spread::of(vec![7]).p99_ms, 7);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    #[test]
    fn matches_the_first_ticket_after_the_injection_net_of_for() {
        let injected = [
            inj(1, "a", 1_000, 0),
            inj(2, "b", 2_000, 30_000),
            inj(3, "c", 5_000, 0),
        ];
        let tickets = [
            seen("a", 900), // before the injection: an older ticket of that node
            seen("a", 1_040),
            seen("a", 9_000),
            seen("b", 32_200),
            seen("x", 3_000),
        ];
        let r = measure(&injected, &tickets);
        assert_eq!(r.injected, 3);
        assert_eq!(r.matched, 2);
        assert_eq!(r.unmatched, vec!["3 service_down s1/c".to_string()]);
        assert_eq!(r.end_to_end.p50_ms, 40);
        assert_eq!(r.end_to_end.max_ms, 200);
        assert_eq!(r.engine.max_ms, 195);
        assert_eq!(r.by_kind["service_down"].count, 2);
    }

    #[test]
    fn reads_ticket_opened_events_only() {
        let ev =
            br#"{"event":"ticket.opened","ticket":{"number":"INC-000001","site":"s1","node":"h1"},
            "entry":{"at":"2026-11-30T10:00:00.250Z"}}"#;
        let t = parse_ticket_event(ev, 5).expect("a ticket event");
        assert_eq!(
            (t.number.as_str(), t.node.as_str(), t.arrived_ms),
            ("INC-000001", "h1", 5)
        );
        assert_eq!(t.opened_ms, Some(1_796_032_800_250));
        let other =
            br#"{"event":"ticket.closed","ticket":{"number":"INC-1","site":"s","node":"n"}}"#;
        assert!(parse_ticket_event(other, 5).is_none());
        assert!(parse_ticket_event(b"not json", 5).is_none());
    }
}
