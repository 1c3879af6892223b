//! tocsin's fleet simulator: N simulated nodes speaking the real MQTT protocol (sites,
//! switches with hosts behind them, 30 metrics a report from a seeded random walk), failures
//! injected on a plan (disks filling, services dying, a switch going down with everything
//! behind it, flapping checks, agents crashing without a clean stop), and the latency from
//! each failure to the ticket the collector opens for it. Also the benchmark's flood
//! publisher and bare counting subscriber (`bench/e2e`).
//!
//! Pure parts ([`fleet`], [`faults`], [`latency`]) hold no I/O; [`run`], [`flood`] and
//! [`count`] do the MQTT.

pub mod count;
pub mod faults;
pub mod fleet;
pub mod flood;
pub mod latency;
pub mod mqtt;
pub mod run;

/// Rule name -> `for` (ms) for every rule of the pack in `dir` (what latencies are net of).
pub fn rule_windows(
    dir: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, i64>, String> {
    let rules = tocsin_core::rules::load_rules_dir(dir).map_err(|e| e.to_string())?;
    Ok(rules.into_iter().map(|r| (r.name, r.for_ms)).collect())
}
