//! The failure plan: which node fails how and when, decided up front from the seed (pure).

use std::collections::BTreeSet;

use crate::fleet::{FaultKind, Fleet};

/// How many failures, of which kinds, over which part of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// Failures started per minute (0: none).
    pub per_minute: f64,
    /// Kinds, taken in turn.
    pub kinds: Vec<FaultKind>,
    /// How long each failure lasts before the node recovers (ms).
    pub hold_ms: i64,
    /// No failure starts before this offset from the start of reporting (ms).
    pub start_ms: i64,
    /// Nor after this one (ms).
    pub end_ms: i64,
}

/// One planned failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Unique in the run; the injection log and the latency figures refer to it.
    pub id: u64,
    pub kind: FaultKind,
    /// The node it strikes (a switch for `SwitchDown`, a host otherwise).
    pub node: usize,
    /// Offset from the start of reporting (ms).
    pub at_ms: i64,
    pub heal_ms: i64,
}

/// Plan the failures. Each strikes a node no other failure touches, and a switch failure
/// takes the hosts behind it out of the draw, so every injected failure stands for one
/// incident of its own and its ticket can be matched to it. When no candidate is left the
/// plan ends early.
pub fn plan(fleet: &Fleet, spec: &FaultSpec, seed: u64) -> Vec<Planned> {
    if spec.per_minute <= 0.0 || spec.kinds.is_empty() || spec.end_ms <= spec.start_ms {
        return Vec::new();
    }
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_fa17);
    let children = fleet.children();
    let mut used: BTreeSet<usize> = BTreeSet::new();
    let spacing = 60_000.0 / spec.per_minute;
    let mut out = Vec::new();
    let mut t = spec.start_ms as f64;
    let mut turn = 0usize;
    let mut misses = 0usize;
    while t < spec.end_ms as f64 {
        let kind = spec.kinds[turn % spec.kinds.len()];
        turn += 1;
        let candidates: Vec<usize> = fleet
            .nodes
            .iter()
            .filter(|n| n.role == kind.role() && !used.contains(&n.index))
            .filter(|n| match kind {
                // A switch whose hosts are all untouched.
                FaultKind::SwitchDown => children
                    .get(&n.index)
                    .is_none_or(|hs| hs.iter().all(|h| !used.contains(h))),
                // A host whose switch is not planned to go down.
                _ => n.parent.is_none_or(|p| !used.contains(&p)),
            })
            .map(|n| n.index)
            .collect();
        if candidates.is_empty() {
            // Every kind came up empty in a row: the fleet is used up.
            misses += 1;
            if misses >= spec.kinds.len() {
                break;
            }
            continue;
        }
        misses = 0;
        let node = candidates[rng.usize(0..candidates.len())];
        used.insert(node);
        if kind == FaultKind::SwitchDown
            && let Some(hs) = children.get(&node)
        {
            used.extend(hs.iter().copied());
        }
        // A little jitter, so failures do not line up with report slots.
        let at = (t + (rng.f64() - 0.5) * 0.4 * spacing).max(spec.start_ms as f64) as i64;
        out.push(Planned {
            id: out.len() as u64 + 1,
            kind,
            node,
            at_ms: at,
            heal_ms: at + spec.hold_ms,
        });
        t += spacing;
    }
    out.sort_by_key(|p| (p.at_ms, p.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{FleetSpec, Role};

    fn fleet(nodes: usize) -> Fleet {
        Fleet::build(&FleetSpec {
            nodes,
            ..FleetSpec::default()
        })
    }

    fn spec(per_minute: f64, minutes: i64) -> FaultSpec {
        FaultSpec {
            per_minute,
            kinds: FaultKind::ALL.to_vec(),
            hold_ms: 120_000,
            start_ms: 60_000,
            end_ms: 60_000 + minutes * 60_000,
        }
    }

    #[test]
    fn spreads_kinds_over_time_on_separate_nodes() {
        let f = fleet(2_000);
        let p = plan(&f, &spec(10.0, 5), 42);
        assert_eq!(p.len(), 50);
        assert_eq!(p, plan(&f, &spec(10.0, 5), 42), "deterministic");
        assert_ne!(p, plan(&f, &spec(10.0, 5), 43), "the seed matters");
        for k in FaultKind::ALL {
            assert_eq!(p.iter().filter(|x| x.kind == k).count(), 10, "{k:?}");
        }
        assert!(p.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(
            p.iter()
                .all(|x| x.at_ms >= 60_000 && x.heal_ms == x.at_ms + 120_000)
        );
        let children = f.children();
        let mut touched = BTreeSet::new();
        for x in &p {
            assert_eq!(f.nodes[x.node].role, x.kind.role());
            assert!(touched.insert(x.node), "one failure per node");
            if x.kind == FaultKind::SwitchDown {
                for h in &children[&x.node] {
                    assert!(touched.insert(*h), "nothing else behind a failing switch");
                }
            }
        }
    }

    #[test]
    fn stops_when_the_fleet_runs_out_and_plans_nothing_at_rate_zero() {
        let f = fleet(10);
        let p = plan(&f, &spec(60.0, 10), 1);
        let switches = f.count(Role::Switch);
        assert!(p.iter().filter(|x| x.kind == FaultKind::SwitchDown).count() <= switches);
        assert!(p.len() < 600);
        assert!(plan(&f, &spec(0.0, 10), 1).is_empty());
    }
}
