//! Evaluator tests: tables of timed inputs and the transitions they must produce.

use std::collections::BTreeMap;

use tocsin_protocol::{CheckResult, CheckStatus, Metric, NodeKind, NodeState, Report};

use super::alert::{ActiveAlert, AlertSource, AlertState, AlertTransition};
use super::check::parse_rules;
use super::eval::Evaluator;
use crate::time::Millis;

use AlertState::{Firing, Pending, Resolved};

const RULES: &str = r#"
    [[rule]]
    name = "fs_full"
    expr = "fs.used_pct > 90"
    for = "20s"
    clear = "fs.used_pct < 85"
    severity = "warning"
    category = "hardware"
    summary = "{{node}}: {{labels.mount}} is {{value}}% full"

    [[rule]]
    name = "check_critical"
    check = "*"
    severity = "critical"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}: {{output}}"

    [[rule]]
    name = "node_offline"
    when = "offline"
    for = "30s"
    severity = "critical"
    category = "network"
    summary = "{{node}} is offline"
"#;

/// A metric sample: (name, labels, value).
type M<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

fn rules(text: &str) -> Evaluator {
    Evaluator::new(parse_rules("t", text).unwrap_or_else(|e| panic!("{e}")))
}

fn report_of(node: &str, ts: Millis, metrics: &[M], checks: &[(&str, CheckStatus)]) -> Report {
    Report {
        v: 1,
        node: node.into(),
        site: "dc1".into(),
        kind: NodeKind::Host,
        seq: ts.max(0) as u64,
        ts,
        interval_s: 10,
        via: None,
        metrics: metrics
            .iter()
            .map(|(name, labels, v)| {
                let mut m = Metric::new(*name, *v);
                for (k, lv) in *labels {
                    m = m.with_label(*k, *lv);
                }
                m
            })
            .collect(),
        checks: checks
            .iter()
            .map(|(n, s)| CheckResult {
                name: n.to_string(),
                status: *s,
                output: "connect refused".into(),
                latency_ms: None,
            })
            .collect(),
    }
}

/// A host report of web-01 with `fs.used_pct` per mount and checks.
fn report(ts: Millis, fs: &[(&str, f64)], checks: &[(&str, CheckStatus)]) -> Report {
    let metrics: Vec<M> = fs
        .iter()
        .map(|(mount, v)| {
            let labels: &[(&str, &str)] = match *mount {
                "/" => &[("mount", "/")],
                "/var" => &[("mount", "/var")],
                _ => &[("mount", "/other")],
            };
            ("fs.used_pct", labels, *v)
        })
        .collect();
    report_of("web-01", ts, &metrics, checks)
}

fn states(out: &[AlertTransition]) -> Vec<(String, AlertState)> {
    out.iter().map(|t| (t.rule.clone(), t.state)).collect()
}

/// (ts, fs value on "/", expected transition state or None)
#[test]
fn threshold_with_for_and_hysteresis() {
    let table: &[(Millis, f64, Option<AlertState>)] = &[
        (0, 50.0, None),
        (10_000, 95.0, Some(Pending)),
        (20_000, 96.0, None),
        (30_000, 97.0, Some(Firing)),
        (40_000, 88.0, None), // below threshold but above clear: still firing
        (50_000, 80.0, Some(Resolved)),
        (60_000, 95.0, Some(Pending)),
        (70_000, 50.0, Some(Resolved)), // pending episode cancelled
    ];
    let mut ev = rules(RULES);
    for (ts, value, want) in table {
        let out = ev.on_report(&report(*ts, &[("/", *value)], &[]), *ts);
        assert_eq!(out.first().map(|t| t.state), *want, "at {ts}");
        assert!(out.len() <= 1);
        if let Some(t) = out.first() {
            assert_eq!(t.key, "fs_full:dc1/web-01{mount=/}");
            assert_eq!(t.at, *ts);
            assert_eq!(t.source, AlertSource::Metric);
            assert_eq!(t.description, "");
            if t.state == Firing {
                assert_eq!(t.summary, "web-01: / is 97% full");
                assert_eq!(t.detail, "fs.used_pct = 97 (rule: fs.used_pct > 90)");
                assert_eq!(t.started_at, 10_000);
            }
        }
    }
    assert_eq!(ev.active_series(), 0);
}

/// Samples a few ms under 10 s apart (collection jitter) fire `for = "20s"` at the third
/// sample, not the fourth; a sample more than the slack (a tenth of `for`, at most 1 s)
/// short of `for` does not.
#[test]
fn for_allows_collection_jitter() {
    let table: &[(Millis, f64, Option<AlertState>)] = &[
        (10_000, 95.0, Some(Pending)),
        (19_997, 95.0, None),
        (29_994, 95.0, Some(Firing)),
        (40_000, 50.0, Some(Resolved)),
        (60_000, 95.0, Some(Pending)),
        (78_999, 95.0, None), // held 18.999 s: more than the 1 s slack short of 20 s
        (79_000, 95.0, Some(Firing)),
    ];
    let mut ev = rules(RULES);
    for (ts, value, want) in table {
        let out = ev.on_report(&report(*ts, &[("/", *value)], &[]), *ts);
        assert_eq!(out.first().map(|t| t.state), *want, "at {ts}");
    }
}

#[test]
fn checks_fire_at_once_and_resolve() {
    let mut ev = rules(RULES);
    let checks = [
        ("tcp:pg", CheckStatus::Critical),
        ("tcp:web", CheckStatus::Ok),
    ];
    let out = ev.on_report(&report(1_000, &[], &checks), 1_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, Firing);
    assert_eq!(
        out[0].summary,
        "web-01: tcp:pg is critical: connect refused"
    );
    assert_eq!(
        out[0].labels.get("check").map(String::as_str),
        Some("tcp:pg")
    );
    let crit = [("tcp:pg", CheckStatus::Critical)];
    assert!(ev.on_report(&report(2_000, &[], &crit), 2_000).is_empty());
    let ok = [("tcp:pg", CheckStatus::Ok)];
    let out = ev.on_report(&report(3_000, &[], &ok), 3_000);
    assert_eq!(out[0].state, Resolved);
    assert_eq!(out[0].started_at, 1_000);
}

#[test]
fn vanished_series_resolve() {
    let mut ev = rules(RULES);
    let crit = [("tcp:pg", CheckStatus::Critical)];
    ev.on_report(&report(1_000, &[], &crit), 1_000);
    let out = ev.on_report(&report(2_000, &[], &[]), 2_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, Resolved);
    assert!(out[0].detail.contains("no longer reported"));
}

#[test]
fn a_report_only_resolves_its_own_nodes_vanished_series() {
    let mut ev = rules(RULES);
    let crit = [("tcp:pg", CheckStatus::Critical)];
    let mut other = report(1_000, &[], &crit);
    other.node = "db-01".into();
    assert_eq!(ev.on_report(&other, 1_000).len(), 1);
    ev.on_report(&report(1_000, &[], &crit), 1_000);
    // web-01 stops reporting its check: only web-01's alert resolves.
    let out = ev.on_report(&report(2_000, &[], &[]), 2_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].node, "web-01");
    assert_eq!(ev.active_series(), 1);
}

#[test]
fn offline_pends_then_fires_on_tick_and_online_resolves() {
    let mut ev = rules(RULES);
    assert_eq!(ev.next_due(), None);
    let out = ev.on_status(1_000, "dc1", "web-01", NodeState::Offline);
    assert_eq!(out[0].state, Pending);
    // The collector is told when `for` (30 s) runs out, to tick exactly then.
    assert_eq!(ev.next_due(), Some(31_000));
    // A repeated will while pending adds no second deadline.
    assert!(
        ev.on_status(2_000, "dc1", "web-01", NodeState::Offline)
            .is_empty()
    );
    assert!(ev.tick(20_000).is_empty());
    assert_eq!(ev.next_due(), Some(31_000));
    let out = ev.tick(31_000);
    assert_eq!(out[0].state, Firing);
    assert_eq!(ev.next_due(), None, "a tick takes the deadlines it passed");
    assert_eq!(out[0].summary, "web-01 is offline");
    assert!(out[0].node_down);
    let out = ev.on_status(40_000, "dc1", "web-01", NodeState::Online);
    assert_eq!(out[0].state, Resolved);
    // A clean stop never raises anything.
    assert!(
        ev.on_status(50_000, "dc1", "web-01", NodeState::Stopped)
            .is_empty()
    );
}

#[test]
fn restore_resumes_series() {
    let mut ev = rules(RULES);
    let dropped = ev.restore(&[
        ActiveAlert {
            key: "check_critical:dc1/web-01{check=tcp:pg}".into(),
            rule: "check_critical".into(),
            site: "dc1".into(),
            node: "web-01".into(),
            labels: [("check".to_string(), "tcp:pg".to_string())].into(),
            state: Firing,
            started_at: 500,
            summary: String::new(),
            detail: String::new(),
            suppressed_by: None,
        },
        ActiveAlert {
            key: "gone:dc1/web-01".into(),
            rule: "gone".into(),
            site: "dc1".into(),
            node: "web-01".into(),
            labels: BTreeMap::new(),
            state: Firing,
            started_at: 500,
            summary: String::new(),
            detail: String::new(),
            suppressed_by: None,
        },
    ]);
    assert_eq!(dropped, vec!["gone:dc1/web-01".to_string()]);
    // Still critical: no new firing transition.
    let crit = [("tcp:pg", CheckStatus::Critical)];
    assert!(ev.on_report(&report(1_000, &[], &crit), 1_000).is_empty());
    let ok = [("tcp:pg", CheckStatus::Ok)];
    let out = ev.on_report(&report(2_000, &[], &ok), 2_000);
    assert_eq!(out[0].state, Resolved);
    assert_eq!(out[0].started_at, 500);
}

/// (interface label, selected by `=~"(eth|ens)\d+"` and `!~".*\.\d+"`)
#[test]
fn regex_matchers_select_samples() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "rx_errors"
        expr = 'net.rx_errors_per_s{interface=~"(eth|ens)\d+", interface!~".*\.\d+"} > 1'
        severity = "warning"
        category = "network"
        summary = "{{labels.interface}}"
        "#,
    );
    let table = [
        ("eth0", true),
        ("ens18", true),
        ("eth0.100", false),
        ("veth1234", false),
        ("wlan0", false),
    ];
    for (i, (interface, want)) in table.iter().enumerate() {
        let ts = i as Millis * 1000;
        let labels = [("interface", *interface)];
        let r = report_of("web-01", ts, &[("net.rx_errors_per_s", &labels, 5.0)], &[]);
        let out = ev.on_report(&r, ts);
        assert_eq!(out.iter().any(|t| t.state == Firing), *want, "{interface}");
    }
}

/// (ts, counter value, expected transition, expected value)
#[test]
fn rate_is_per_second_and_skips_resets() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "drops"
        expr = "rate(agent.reports_dropped_count) > 1"
        severity = "warning"
        category = "software"
        summary = "{{node}} drops {{value}} reports/s"
        "#,
    );
    let table: &[(Millis, f64, Option<AlertState>, Option<f64>)] = &[
        (0, 0.0, None, None),                     // first sample: no rate
        (10_000, 5.0, None, None),                // 0.5/s
        (20_000, 25.0, Some(Firing), Some(2.0)),  // 2/s
        (20_000, 99.0, None, None),               // same ts: ignored
        (30_000, 3.0, None, None),                // went down: reset, no rate, stays firing
        (40_000, 4.0, Some(Resolved), Some(0.1)), // 0.1/s
        (50_000, 100.0, Some(Firing), Some(9.6)), // 9.6/s
        (60_000, 100.0, Some(Resolved), Some(0.0)),
    ];
    for (ts, v, want, value) in table {
        let r = report_of(
            "web-01",
            *ts,
            &[("agent.reports_dropped_count", &[], *v)],
            &[],
        );
        let out = ev.on_report(&r, *ts);
        assert_eq!(out.first().map(|t| t.state), *want, "at {ts}");
        assert_eq!(out.first().and_then(|t| t.value), *value, "at {ts}");
        if let Some(t) = out.first().filter(|t| t.state == Firing && *ts == 20_000) {
            assert_eq!(t.summary, "web-01 drops 2 reports/s");
            assert_eq!(
                t.detail,
                "rate(agent.reports_dropped_count) = 2/s (rule: rate(agent.reports_dropped_count) > 1)"
            );
        }
    }
    // Each node and label set has its own previous sample.
    let r = report_of(
        "db-01",
        70_000,
        &[("agent.reports_dropped_count", &[], 1e6)],
        &[],
    );
    assert!(ev.on_report(&r, 70_000).is_empty());
}

/// Reboot detection: resets() fires once, keep_firing_for holds it, then it resolves.
/// (ts in s, uptime, expected transition)
#[test]
fn resets_with_keep_firing_for() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "rebooted"
        expr = "resets(system.uptime_s) > 0"
        keep_firing_for = "10m"
        severity = "warning"
        category = "hardware"
        summary = "{{node}} rebooted"
        description = "uptime went down; this alert stays {{keep_firing_for}}"
        "#,
    );
    let table: &[(Millis, f64, Option<AlertState>)] = &[
        (0, 1000.0, None),
        (60, 1060.0, None),
        (120, 30.0, Some(Firing)), // rebooted
        (180, 90.0, None),         // clear since 180
        (600, 510.0, None),
        (700, 20.0, None), // rebooted again while firing: stays firing, clear clock restarts
        (760, 80.0, None), // clear since 760
        (1300, 620.0, None),
        (1360, 680.0, Some(Resolved)), // 600 s after 760
        (1420, 740.0, None),
    ];
    for (s, uptime, want) in table {
        let ts = s * 1000;
        let r = report_of("web-01", ts, &[("system.uptime_s", &[], *uptime)], &[]);
        let out = ev.on_report(&r, ts);
        assert_eq!(out.first().map(|t| t.state), *want, "at {s}s");
        if let Some(t) = out.first() {
            assert_eq!(t.started_at, 120_000);
            assert_eq!(t.description, "uptime went down; this alert stays 10m");
        }
    }
}

/// "Interface down while admin up". (oper_up, admin_up or None when absent, expected)
#[test]
fn and_needs_the_same_labelled_sample() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "port_down"
        expr = "if.oper_up == 0"
        and = "if.admin_up == 1"
        severity = "warning"
        category = "network"
        summary = "{{node}}: {{labels.interface}} is down"
        "#,
    );
    let table: &[(f64, Option<f64>, Option<AlertState>)] = &[
        (1.0, Some(1.0), None),
        (0.0, Some(1.0), Some(Firing)),
        (0.0, Some(1.0), None),
        (0.0, Some(0.0), Some(Resolved)), // shut down on purpose
        (0.0, Some(0.0), None),
        (0.0, Some(1.0), Some(Firing)),
        (0.0, None, Some(Resolved)), // the admin state is not known
        (1.0, Some(1.0), None),
    ];
    let ge1: &[(&str, &str)] = &[("interface", "ge-0/0/1")];
    let ge2: &[(&str, &str)] = &[("interface", "ge-0/0/2")];
    for (i, (oper, admin, want)) in table.iter().enumerate() {
        let ts = i as Millis * 10_000;
        // ge-0/0/2 is down and admin-down throughout, and its admin_up must not be
        // mistaken for ge-0/0/1's.
        let mut metrics: Vec<M> = vec![
            ("if.oper_up", ge2, 0.0),
            ("if.admin_up", ge2, 0.0),
            ("if.oper_up", ge1, *oper),
        ];
        if let Some(a) = admin {
            metrics.push(("if.admin_up", ge1, *a));
        }
        let out = ev.on_report(&report_of("sw-1", ts, &metrics, &[]), ts);
        assert_eq!(out.first().map(|t| t.state), *want, "step {i}");
        assert!(out.len() <= 1, "step {i}: {out:?}");
        if let Some(t) = out.first() {
            assert_eq!(t.summary, "sw-1: ge-0/0/1 is down");
            assert_eq!(
                t.detail,
                "if.oper_up = 0 (rule: if.oper_up == 0 and if.admin_up == 1)"
            );
        }
    }
}

/// One timed input of a staleness scenario.
enum In {
    /// A report of web-01 received at this collector time (its own ts is a day behind).
    Report(bool),
    Status(NodeState),
    Tick,
}

/// (collector time in s, input, expected transitions as (rule, state))
type Timed<'a> = (Millis, In, &'a [(&'a str, AlertState)]);

#[test]
fn absent_data_is_judged_on_the_collectors_clock() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "stale"
        absent_for = "3m"
        severity = "critical"
        category = "network"
        summary = "{{node}}: no report for {{absent_for}}"
        description = "last report {{value}} s ago"

        [[rule]]
        name = "root_gone"
        absent_for = "5m"
        metric = 'fs.used_pct{mount="/"}'
        severity = "warning"
        category = "software"
        summary = "{{node}}: no {{metric}}"
        "#,
    );
    use In::{Report as R, Status as S, Tick as T};
    use NodeState::{Offline, Online, Stopped};
    let table: Vec<Timed> = vec![
        (0, R(false), &[]), // never carried "/": the metric clock has not started
        (10, R(true), &[]),
        (100, T, &[]),
        (189, T, &[]),
        (190, T, &[("stale", Firing)]), // 180 s after the last report
        (200, T, &[]),
        (210, R(false), &[("stale", Resolved)]),
        (300, R(false), &[]), // 290 s without "/"
        (310, R(false), &[("root_gone", Firing)]),
        (320, R(false), &[]),
        (330, R(true), &[("root_gone", Resolved)]),
        (340, S(Offline), &[]),
        (520, T, &[("stale", Firing)]), // offline keeps the clock running
        (530, S(Stopped), &[("stale", Resolved)]),
        (2000, T, &[]), // stopped: not watched
        (2000, S(Online), &[]),
        (2179, T, &[]),
        (2180, T, &[("stale", Firing)]), // a birth without reports goes stale too
        (2190, R(false), &[("stale", Resolved)]),
        (2500, R(false), &[]), // "/" clock was reset by the stop
        (2600, S(Stopped), &[]),
        (5000, T, &[]),
    ];
    for (s, input, want) in table {
        let now = s * 1000;
        let out = match input {
            R(with_root) => {
                let root: &[(&str, &str)] = &[("mount", "/")];
                let metrics: &[M] = if with_root {
                    &[("fs.used_pct", root, 10.0)]
                } else {
                    &[("cpu.usage_pct", &[], 1.0)]
                };
                // The agent's clock is a day behind: staleness must not care.
                let r = report_of("web-01", now - 86_400_000, metrics, &[]);
                ev.on_report(&r, now)
            }
            S(state) => ev.on_status(now, "dc1", "web-01", state),
            T => ev.tick(now),
        };
        let got: Vec<(String, AlertState)> = states(&out);
        let want: Vec<(String, AlertState)> =
            want.iter().map(|(r, st)| (r.to_string(), *st)).collect();
        assert_eq!(got, want, "at {s}s");
        for t in &out {
            assert_eq!(t.source, AlertSource::Absent);
            assert_eq!(t.at, now);
            assert_eq!(t.node_down, t.rule == "stale");
            if t.rule == "stale" && t.state == Firing && s == 190 {
                assert_eq!(t.summary, "web-01: no report for 3m");
                assert_eq!(t.description, "last report 180 s ago");
                assert_eq!(t.started_at, 10_000);
            }
            if t.rule == "root_gone" && t.state == Firing {
                assert_eq!(t.summary, r#"web-01: no fs.used_pct{mount="/"}"#);
            }
        }
    }
    assert_eq!(ev.active_series(), 0);
    // A stop of a node never seen leaves nothing behind.
    assert!(
        ev.on_status(1, "dc1", "ghost", NodeState::Stopped)
            .is_empty()
    );
    assert!(ev.tick(1_000_000).is_empty());
}

#[test]
fn stale_nodes_fire_in_key_order() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "stale"
        absent_for = "1m"
        severity = "critical"
        category = "network"
        summary = "{{node}}"
        "#,
    );
    for node in ["c", "a", "d", "b"] {
        ev.on_report(&report_of(node, 0, &[], &[]), 0);
    }
    let keys: Vec<String> = ev.tick(60_000).into_iter().map(|t| t.key).collect();
    assert_eq!(
        keys,
        ["stale:dc1/a", "stale:dc1/b", "stale:dc1/c", "stale:dc1/d"]
    );
}

/// (placeholders in a description, expected rendering)
#[test]
fn descriptions_render_like_summaries() {
    let table = [
        (
            "{{metric}} at {{value}} over {{threshold}} for {{for}} on {{labels.mount}}",
            "fs.used_pct at 97 over 90 for 20s on /",
        ),
        (
            "{{rule}} {{severity}} {{category}} {{site}}",
            "fs warning hardware dc1",
        ),
        ("{{labels.nope}}", "?"),
    ];
    for (template, want) in table {
        let text = format!(
            "[[rule]]\nname = \"fs\"\nexpr = \"fs.used_pct > 90\"\nfor = \"20s\"\nseverity = \"warning\"\ncategory = \"hardware\"\nsummary = \"s\"\ndescription = \"{}\"\n",
            template.replace('"', "\\\"")
        );
        let mut ev = rules(&text);
        ev.on_report(&report(0, &[("/", 97.0)], &[]), 0);
        let out = ev.on_report(&report(20_000, &[("/", 97.0)], &[]), 20_000);
        assert_eq!(out[0].description, want, "{template}");
    }
    // Check rules fill check, status and output.
    let mut ev = rules(
        r#"
        [[rule]]
        name = "c"
        check = "tcp:*"
        severity = "critical"
        category = "software"
        summary = "s"
        description = "{{check}} {{status}} ({{value}}): {{output}}"
        "#,
    );
    let crit = [("tcp:pg", CheckStatus::Critical)];
    let out = ev.on_report(&report(0, &[], &crit), 0);
    assert_eq!(out[0].description, "tcp:pg critical (2): connect refused");
}

#[test]
fn reload_keeps_series_of_surviving_rules_and_resolves_the_others() {
    let mut ev = rules(RULES);
    let crit = [("tcp:pg", CheckStatus::Critical)];
    ev.on_report(&report(0, &[("/", 95.0), ("/var", 99.0)], &crit), 0);
    ev.on_report(
        &report(20_000, &[("/", 95.0), ("/var", 99.0)], &crit),
        20_000,
    );
    ev.on_status(20_000, "dc1", "web-01", NodeState::Offline);
    assert_eq!(ev.active_series(), 4);
    // fs_full survives (new threshold, first in the file now); check_critical is gone;
    // node_offline became a threshold rule.
    let new = parse_rules(
        "t",
        r#"
        [[rule]]
        name = "node_offline"
        expr = "cpu.usage_pct > 1"
        severity = "info"
        category = "software"
        summary = "s"

        [[rule]]
        name = "fs_full"
        expr = "fs.used_pct > 96"
        clear = "fs.used_pct < 90"
        severity = "critical"
        category = "hardware"
        summary = "{{labels.mount}} {{value}}"
        "#,
    )
    .expect("rules");
    let out = ev.reload(new, 30_000);
    let got: Vec<(&str, &str, AlertState)> = out
        .iter()
        .map(|t| (t.key.as_str(), t.detail.as_str(), t.state))
        .collect();
    assert_eq!(
        got,
        [
            (
                "check_critical:dc1/web-01{check=tcp:pg}",
                "rule check_critical was removed on reload",
                Resolved
            ),
            (
                "node_offline:dc1/web-01",
                "rule node_offline changed from a status to a threshold rule on reload",
                Resolved
            ),
        ]
    );
    assert!(out.iter().all(|t| t.at == 30_000));
    assert_eq!(out[0].severity, crate::rules::Severity::Critical); // the old rule's
    assert_eq!(
        ev.live_keys(),
        [
            "fs_full:dc1/web-01{mount=/var}",
            "fs_full:dc1/web-01{mount=/}"
        ]
    );
    // The kept series follow the new rule: / at 95 is inside the new hysteresis band (still
    // firing), /var drops below the new clear.
    let out = ev.on_report(&report(40_000, &[("/", 95.0), ("/var", 85.0)], &[]), 40_000);
    assert_eq!(states(&out), [("fs_full".to_string(), Resolved)]);
    assert_eq!(out[0].summary, "/var 85");
    assert_eq!(out[0].started_at, 0);
    assert_eq!(ev.active_series(), 1);
}

#[test]
fn reload_keeps_previous_samples_only_where_still_needed() {
    let rate_rule = r#"
        [[rule]]
        name = "drops"
        expr = "rate(agent.reports_dropped_count) > 1"
        severity = "warning"
        category = "software"
        summary = "s"
    "#;
    let sample = |ts: Millis, v: f64| {
        report_of(
            "web-01",
            ts,
            &[("agent.reports_dropped_count", &[], v)],
            &[],
        )
    };
    let mut ev = rules(rate_rule);
    ev.on_report(&sample(0, 0.0), 0);
    ev.reload(parse_rules("t", rate_rule).expect("rules"), 1);
    // The previous sample survived: the next one has a rate.
    assert_eq!(ev.on_report(&sample(10_000, 50.0), 10_000).len(), 1);
    // Without a rule using it, it is dropped; with the rule back, rates start over.
    assert_eq!(
        ev.reload(parse_rules("t", RULES).expect("rules"), 2).len(),
        1
    );
    ev.reload(parse_rules("t", rate_rule).expect("rules"), 3);
    assert!(ev.on_report(&sample(20_000, 500.0), 20_000).is_empty());
    assert_eq!(ev.on_report(&sample(30_000, 600.0), 30_000).len(), 1);
}

#[test]
fn previous_samples_of_quiet_series_are_forgotten() {
    let mut ev = rules(
        r#"
        [[rule]]
        name = "errs"
        expr = "rate(if.errors_count) > 1"
        severity = "warning"
        category = "network"
        summary = "s"
        "#,
    );
    let eth = |i: &'static str| -> &'static [(&'static str, &'static str)] {
        match i {
            "eth0" => &[("interface", "eth0")],
            _ => &[("interface", "eth1")],
        }
    };
    let ttl = super::node::PREV_TTL_MS;
    let r = |ts: Millis, ifs: &[(&'static str, f64)]| {
        let metrics: Vec<M> = ifs
            .iter()
            .map(|(i, v)| ("if.errors_count", eth(i), *v))
            .collect();
        report_of("sw-1", ts, &metrics, &[])
    };
    ev.on_report(&r(0, &[("eth0", 0.0), ("eth1", 0.0)]), 0);
    // eth1 goes quiet for longer than the TTL; eth0 keeps reporting.
    for step in 1..=8 {
        let ts = step * ttl / 4;
        ev.on_report(&r(ts, &[("eth0", 0.0)]), ts);
    }
    // eth1 is back with a big jump: no rate from a sample two hours old.
    let ts = 9 * ttl / 4;
    assert!(
        ev.on_report(&r(ts, &[("eth0", 0.0), ("eth1", 1e9)]), ts)
            .is_empty()
    );
    let ts = 10 * ttl / 4;
    let out = ev.on_report(&r(ts, &[("eth0", 0.0), ("eth1", 2e9)]), ts);
    assert_eq!(states(&out), [("errs".to_string(), Firing)]);
}

/// The hot path's shortcuts (index by metric, no work for inactive samples) must not
/// change results: 40 rules, a 30-metric report, repeated.
#[test]
fn many_rules_many_metrics() {
    let mut text = String::new();
    for i in 0..40 {
        // Rules 0..30 watch m.<i>, each > i; the rest watch metrics the report lacks.
        text.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nexpr = 'm.{i}{{k=~\"v.*\"}} > {i}'\nseverity = \"info\"\ncategory = \"software\"\nsummary = \"{{{{value}}}}\"\n\n"
        ));
    }
    let mut ev = rules(&text);
    let labels: &[(&str, &str)] = &[("k", "v1")];
    let names: Vec<String> = (0..30).map(|i| format!("m.{i}")).collect();
    // Metric i carries 2 * (i % 3) + 0.5: above its threshold i only for small i.
    let metrics: Vec<M> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), labels, 2.0 * (i % 3) as f64 + 0.5))
        .collect();
    let want: Vec<String> = (0..30)
        .filter(|i| 2.0 * (i % 3) as f64 + 0.5 > *i as f64)
        .map(|i| format!("r{i}"))
        .collect();
    let out = ev.on_report(&report_of("web-01", 0, &metrics, &[]), 0);
    let mut fired: Vec<String> = out.iter().map(|t| t.rule.clone()).collect();
    fired.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(fired, want_sorted);
    assert_eq!(ev.active_series(), want.len());
    // The same report again changes nothing.
    assert!(
        ev.on_report(&report_of("web-01", 10_000, &metrics, &[]), 10_000)
            .is_empty()
    );
    // Without the metrics, every live series resolves, in key order.
    let out = ev.on_report(&report_of("web-01", 20_000, &[], &[]), 20_000);
    let keys: Vec<&str> = out.iter().map(|t| t.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(out.len(), want.len());
    assert_eq!(ev.active_series(), 0);
}
