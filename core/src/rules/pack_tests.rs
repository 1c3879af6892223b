//! The shipped rule pack (rules/*.toml) and its reference (docs/RULES.md) stay valid and in step.

use std::path::{Path, PathBuf};

use super::check::check_dir;
use super::config::{Condition, RULE_KEYS, Rule};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn shipped() -> Vec<Rule> {
    match check_dir(&repo("rules")) {
        Ok(rules) => rules,
        Err(errs) => {
            let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
            panic!("shipped rules have errors:\n{}", lines.join("\n"))
        }
    }
}

/// (file, rule names in it, in order)
#[test]
fn shipped_rule_pack_loads_with_zero_errors() {
    let rules = shipped();
    let table: &[(&str, &[&str])] = &[
        (
            "agents.toml",
            &["node_stale", "agent_dropping_reports", "agent_spool_errors"],
        ),
        (
            "checks.toml",
            &[
                "check_critical",
                "check_warning",
                "tls_certificate_expiring",
            ],
        ),
        (
            "devices.toml",
            &[
                "device_unreachable",
                "device_snmp_failed",
                "device_packet_loss",
                "device_latency_high",
                "device_interface_down",
                "device_interface_errors",
                "device_rebooted",
            ],
        ),
        (
            "host.toml",
            &[
                "cpu_saturated",
                "load_high",
                "memory_exhausted",
                "swap_heavy",
                "filesystem_almost_full",
                "filesystem_full",
                "inodes_almost_full",
                "inodes_full",
                "host_rebooted",
                "interface_errors",
            ],
        ),
        ("node.toml", &["node_offline"]),
    ];
    let mut want = Vec::new();
    for (file, names) in table {
        for name in *names {
            want.push((file.to_string(), name.to_string()));
        }
    }
    let got: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            let file = Path::new(&r.source)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            (file, r.name.clone())
        })
        .collect();
    assert_eq!(got, want);
    for rule in &rules {
        let runbook = rule.runbook.as_deref().unwrap_or("");
        assert!(
            runbook.starts_with("kb/") && runbook.ends_with(".md"),
            "rule {} needs a runbook kb/<topic>.md",
            rule.name
        );
    }
    let by_name = |n: &str| rules.iter().find(|r| r.name == n).expect(n);
    assert!(by_name("device_unreachable").node_down);
    assert!(by_name("node_stale").node_down);
    assert!(by_name("node_offline").node_down);
    assert!(!by_name("device_interface_down").node_down);
    assert!(by_name("host_rebooted").keep_firing_for_ms > 0);
    assert!(by_name("device_rebooted").keep_firing_for_ms > 0);
}

/// Every metric a shipped rule reads (expr, clear, and, absent metric, function arguments)
/// is one the agent emits: docs/METRICS.md lists them.
#[test]
fn shipped_rules_read_only_documented_metrics() {
    let doc = std::fs::read_to_string(repo("docs/METRICS.md")).expect("docs/METRICS.md");
    for rule in shipped() {
        let metrics: Vec<String> = match &rule.condition {
            Condition::Threshold { expr, clear, and } => [Some(expr), clear.as_ref(), and.as_ref()]
                .into_iter()
                .flatten()
                .map(|e| e.metric().to_string())
                .collect(),
            Condition::Absent {
                metric: Some(sel), ..
            } => vec![sel.metric.clone()],
            _ => Vec::new(),
        };
        for m in metrics {
            assert!(
                doc.contains(&format!("| `{m}` |")),
                "rule {} reads {m}, which docs/METRICS.md does not list",
                rule.name
            );
        }
    }
}

/// docs/RULES.md documents every key the parser accepts and lists every shipped rule.
#[test]
fn rules_reference_is_complete() {
    let doc = std::fs::read_to_string(repo("docs/RULES.md")).expect("docs/RULES.md");
    for key in RULE_KEYS {
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "docs/RULES.md has no row for the rule key `{key}`"
        );
    }
    for placeholder in super::template::PLACEHOLDERS {
        assert!(
            doc.contains(&format!("`{{{{{placeholder}}}}}`")),
            "docs/RULES.md does not explain the placeholder {{{{{placeholder}}}}}"
        );
    }
    for rule in shipped() {
        assert!(
            doc.contains(&format!("| `{}` |", rule.name)),
            "docs/RULES.md does not list the shipped rule `{}`",
            rule.name
        );
    }
}
