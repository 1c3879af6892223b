//! Tests of rule-file checking: every error class, reported with file and line, all at once.

use std::path::PathBuf;

use super::check::{check_dir, check_text, parse_rules};
use super::config::{Condition, When};
use super::expr::Func;

/// Every error of `text` as displayed.
fn errors(text: &str) -> Vec<String> {
    match check_text("t.toml", text) {
        Ok(rules) => panic!("expected errors, got {} rules from:\n{text}", rules.len()),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// A rule `a` with the given extra lines between name and the required keys; the extra
/// lines start at line 3.
fn rule(extra: &str) -> String {
    format!(
        "[[rule]]\nname = \"a\"\n{extra}\nseverity = \"warning\"\ncategory = \"hardware\"\nsummary = \"x\"\n"
    )
}

#[test]
fn parses_each_kind() {
    let rules = parse_rules(
        "t.toml",
        r#"
        [[rule]]
        name = "filesystem_almost_full"
        expr = "fs.used_pct > 90"
        for = "5m"
        clear = "fs.used_pct < 85"
        severity = "warning"
        category = "hardware"
        summary = "{{node}}: {{labels.mount}} is {{value}}% full"
        description = "{{metric}} above {{threshold}} for {{for}}"
        runbook = "kb/filesystem-full.md"
        group_by = ["service"]

        [[rule]]
        name = "check_failed"
        check = "tcp:*"
        status = ["critical", "unknown"]
        keep_firing_for = "2m"
        severity = "critical"
        category = "software"
        summary = "{{check}} is {{status}}"

        [[rule]]
        name = "node_offline"
        when = "offline"
        for = "30s"
        severity = "critical"
        category = "network"
        summary = "{{node}} is offline"

        [[rule]]
        name = "stale"
        absent_for = "3m"
        severity = "critical"
        category = "network"
        summary = "{{node}}: nothing for {{absent_for}}"

        [[rule]]
        name = "root_gone"
        absent_for = "5m"
        metric = 'fs.used_pct{mount="/"}'
        severity = "warning"
        category = "software"
        summary = "{{node}}: no {{metric}}"

        [[rule]]
        name = "port_down"
        expr = "if.oper_up == 0"
        and = "if.admin_up == 1"
        node_down = true
        severity = "warning"
        category = "network"
        summary = "{{labels.interface}} down"

        [[rule]]
        name = "rebooted"
        expr = "resets(system.uptime_s) > 0"
        keep_firing_for = "10m"
        severity = "info"
        category = "hardware"
        summary = "{{node}} rebooted"
        "#,
    )
    .expect("valid rules");
    assert_eq!(rules.len(), 7);
    assert_eq!(rules[0].for_ms, 300_000);
    assert_eq!(rules[0].group_by, ["service"]);
    assert!(rules[0].description.is_some());
    assert!(matches!(
        rules[0].condition,
        Condition::Threshold {
            clear: Some(_),
            and: None,
            ..
        }
    ));
    assert!(
        matches!(&rules[1].condition, Condition::Check { statuses, .. } if statuses.len() == 2)
    );
    assert_eq!(rules[1].keep_firing_for_ms, 120_000);
    assert!(matches!(
        rules[2].condition,
        Condition::Status(When::Offline)
    ));
    assert!(matches!(
        rules[3].condition,
        Condition::Absent {
            metric: None,
            after_ms: 180_000
        }
    ));
    assert!(matches!(
        &rules[4].condition,
        Condition::Absent { metric: Some(sel), .. } if sel.metric == "fs.used_pct"
    ));
    assert!(matches!(
        &rules[5].condition,
        Condition::Threshold { and: Some(a), .. } if a.metric() == "if.admin_up"
    ));
    assert!(matches!(
        &rules[6].condition,
        Condition::Threshold { expr, .. } if expr.func == Func::Resets
    ));
    // node_down: default true for when=offline and node-level absent_for, else false;
    // an explicit value wins.
    let down: Vec<bool> = rules.iter().map(|r| r.node_down).collect();
    assert_eq!(down, [false, false, true, true, false, true, false]);
}

/// (extra lines of rule "a" starting at line 3, expected fragment of the first error)
#[test]
fn each_error_class_names_file_line_and_rule() {
    let table: &[(&str, &str)] = &[
        // Unknown keys, with a suggestion.
        (
            "expr = \"x.y > 1\"\nsevrity = \"warning\"",
            "t.toml:4: rule \"a\": unknown key `sevrity` (did you mean `severity`?",
        ),
        // Durations.
        (
            "expr = \"x.y > 1\"\nfor = \"soon\"",
            "t.toml:4: rule \"a\": for = \"soon\" is not a duration",
        ),
        (
            "expr = \"x.y > 1\"\nkeep_firing_for = \"10 minutes please\"",
            "t.toml:4: rule \"a\": keep_firing_for = ",
        ),
        (
            "absent_for = \"3\"",
            "t.toml:3: rule \"a\": absent_for = \"3\" is not a duration",
        ),
        (
            "absent_for = \"0s\"",
            "t.toml:3: rule \"a\": absent_for must be longer than 0s",
        ),
        // Wrong TOML types.
        (
            "expr = \"x.y > 1\"\nfor = 5",
            "t.toml:4: rule \"a\": invalid type: integer `5`",
        ),
        (
            "expr = \"x.y > 1\"\nnode_down = \"yes\"",
            "t.toml:4: rule \"a\": invalid type: string \"yes\", expected a boolean",
        ),
        // Expressions and regexes.
        (
            "expr = \"x.y >> 1\"",
            "t.toml:3: rule \"a\": expression \"x.y >> 1\"",
        ),
        (
            "expr = 'x.y{a=~\"(\"} > 1'",
            "t.toml:3: rule \"a\": expression \"x.y{a=~\\\"(\\\"} > 1\": bad regex \"(\" for label \"a\"",
        ),
        (
            "expr = \"x.y > 1\"\nand = 'if.up{a!~\"[\"} == 1'",
            "t.toml:4: rule \"a\": and: expression",
        ),
        (
            "expr = \"x.y > 1\"\nand = \"rate(if.up) > 1\"",
            "t.toml:4: rule \"a\": and takes a plain comparison",
        ),
        (
            "absent_for = \"1m\"\nmetric = \"fs.used_pct > 3\"",
            "t.toml:4: rule \"a\": metric: selector",
        ),
        // Clears that do not bound the expr.
        (
            "expr = \"x.y > 1\"\nclear = \"x.z < 1\"",
            "t.toml:4: rule \"a\": clear must test the same metric and labels as expr (x.y)",
        ),
        (
            "expr = 'x.y{a=\"1\"} > 1'\nclear = \"x.y < 1\"",
            "clear must test the same metric and labels",
        ),
        (
            "expr = \"x.y > 90\"\nclear = \"x.y > 85\"",
            "t.toml:4: rule \"a\": clear \"x.y > 85\" does not bound expr \"x.y > 90\": it must compare with < or <= a threshold at most 90",
        ),
        (
            "expr = \"x.y > 90\"\nclear = \"x.y < 95\"",
            "does not bound expr",
        ),
        (
            "expr = \"x.y <= 10\"\nclear = \"x.y >= 5\"",
            "it must compare with > or >= a threshold at least 10",
        ),
        (
            "expr = \"x.y == 0\"\nclear = \"x.y > 0\"",
            "compares with ==: it has no side to clear on",
        ),
        (
            "expr = \"rate(x.y) > 1\"\nclear = \"x.y < 1\"",
            "must apply the same function as expr",
        ),
        // Keys on kinds that cannot use them.
        (
            "when = \"offline\"\nkeep_firing_for = \"5m\"",
            "t.toml:4: rule \"a\": keep_firing_for only goes with expr or check",
        ),
        (
            "absent_for = \"5m\"\nkeep_firing_for = \"5m\"",
            "keep_firing_for only goes with expr or check",
        ),
        (
            "check = \"*\"\nclear = \"x.y < 1\"",
            "t.toml:4: rule \"a\": clear only goes with expr",
        ),
        (
            "check = \"*\"\nand = \"x.y == 1\"",
            "and only goes with expr",
        ),
        (
            "expr = \"x.y > 1\"\nstatus = [\"warning\"]",
            "status only goes with check",
        ),
        (
            "expr = \"x.y > 1\"\nmetric = \"x.y\"",
            "metric only goes with absent_for",
        ),
        (
            "absent_for = \"1m\"\nfor = \"1m\"",
            "for does not go with absent_for",
        ),
        // Conditions.
        ("", "t.toml:1: rule \"a\": give exactly one of expr"),
        ("expr = \"x.y > 1\"\ncheck = \"*\"", "give exactly one of"),
        (
            "when = \"online\"",
            "t.toml:3: rule \"a\": when \"online\" is not a node status",
        ),
        (
            "check = \"*\"\nstatus = [\"ok\"]",
            "t.toml:4: rule \"a\": a rule cannot fire on status ok",
        ),
        (
            "check = \"*\"\nstatus = [\"bad\"]",
            "status \"bad\" is not one of",
        ),
        (
            "check = \"*\"\nstatus = []",
            "status must name at least one status",
        ),
        // Templates.
        (
            "expr = \"x.y > 1\"\ndescription = \"{{nope}}\"",
            "t.toml:4: rule \"a\": description: template \"{{nope}}\": unknown placeholder {{nope}}",
        ),
        (
            "expr = \"x.y > 1\"\ndescription = \"{{check}} is {{status}}\"",
            "description: placeholder {{check}} means nothing in a threshold rule",
        ),
        (
            "when = \"offline\"\ndescription = \"{{labels.mount}}\"",
            "placeholder {{labels.mount}} means nothing in a status rule",
        ),
        // group_by.
        (
            "expr = \"x.y > 1\"\ngroup_by = [\"service\", \"bad-label\"]",
            "t.toml:4: rule \"a\": group_by: \"bad-label\" is not a label name",
        ),
        (
            "expr = \"x.y > 1\"\ngroup_by = [\"s\", \"s\"]",
            "group_by names \"s\" twice",
        ),
    ];
    for (extra, want) in table {
        let errs = errors(&rule(extra));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{extra:?}: want {want:?} in {errs:#?}"
        );
        for e in &errs {
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}

#[test]
fn required_keys_values_and_names() {
    let table: &[(&str, &str)] = &[
        (
            "[[rule]]\nname = \"a\"\nexpr = \"x.y > 1\"\n",
            "t.toml:1: rule \"a\": severity is missing",
        ),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"x.y > 1\"\nseverity = \"huge\"\ncategory = \"x\"\nsummary = \"s\"\n",
            "t.toml:4: rule \"a\": severity \"huge\" is not one of critical, warning, info",
        ),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"x.y > 1\"\nseverity = \"info\"\ncategory = \"x\"\nsummary = \"s\"\n",
            "t.toml:5: rule \"a\": category \"x\" is not one of",
        ),
        (
            "[[rule]]\nname = \"a b\"\nexpr = \"x.y > 1\"\nseverity = \"info\"\ncategory = \"software\"\nsummary = \"s\"\n",
            "t.toml:2: rule \"a b\": name must match",
        ),
        (
            "[[rule]]\nexpr = \"x.y > 1\"\nseverity = \"info\"\ncategory = \"software\"\nsummary = \"s\"\n",
            "t.toml:1: name is missing",
        ),
        ("[[rule]]\nname = \"a\"\nexpr = \n", "t.toml:3: "),
        (
            "rule = 3\n",
            "t.toml:1: `rule` must be written as [[rule]] tables",
        ),
        (
            "[[rules]]\nname = \"a\"\n",
            "t.toml:1: unknown top-level key `rules`",
        ),
    ];
    for (text, want) in table {
        let errs = errors(text);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{text:?}: want {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn reports_every_error_not_just_the_first() {
    let text = "\
[[rule]]
name = \"one\"
expr = \"x.y > 1\"
sevrity = \"warning\"
colour = \"red\"
category = \"hardware\"
summary = \"x\"

[[rule]]
name = \"two\"
expr = \"x.y > 1\"
for = \"soon\"
severity = \"loud\"
category = \"hardware\"
summary = \"{{nope}}\"

[[rule]]
name = \"one\"
check = \"*\"
severity = \"info\"
category = \"software\"
summary = \"x\"
";
    let errs = errors(text);
    let want = [
        "t.toml:4: rule \"one\": unknown key `sevrity`",
        "t.toml:5: rule \"one\": unknown key `colour`",
        "t.toml:1: rule \"one\": severity is missing",
        "t.toml:12: rule \"two\": for = \"soon\"",
        "t.toml:13: rule \"two\": severity \"loud\"",
        "t.toml:15: rule \"two\": summary: template",
        "t.toml:18: rule \"one\": defined twice: first at t.toml:1, again here",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "want {w:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    // In line order; parse_rules reports the first, and how many more there are, on one line.
    let lines: Vec<&str> = errs
        .iter()
        .map(|e| e.split(':').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(lines, ["1", "4", "5", "12", "13", "15", "18"]);
    let err = parse_rules("t.toml", text).expect_err("invalid");
    assert!(
        err.starts_with("t.toml:1: rule \"one\": severity is missing"),
        "{err}"
    );
    assert!(err.contains("(and 6 more"), "{err}");
    assert!(!err.contains('\n'));
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "tocsin-rules-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write scratch file");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn check_dir_reports_every_file_and_duplicates_across_files() {
    let dir = Scratch::new("dir");
    dir.write("a.toml", &rule("expr = \"x.y > 1\""));
    dir.write(
        "b.toml",
        &format!(
            "# second file\n{}\n{}",
            rule("check = \"*\""),
            rule("expr = \"x.y > 1\"\nfor = \"soon\"").replace("\"a\"", "\"b\"")
        ),
    );
    dir.write("policy.toml", "this is not a rule file [");
    dir.write("notes.txt", "ignored");
    let errs: Vec<String> = check_dir(&dir.0)
        .expect_err("duplicate across files")
        .iter()
        .map(ToString::to_string)
        .collect();
    let a = dir.0.join("a.toml").display().to_string();
    let b = dir.0.join("b.toml").display().to_string();
    assert_eq!(
        errs,
        [
            format!("{b}:3: rule \"a\": defined twice: first at {a}:1, again here"),
            format!(
                "{b}:12: rule \"b\": for = \"soon\" is not a duration (write e.g. \"90s\", \"5m\", \"4h\", \"3d\")"
            ),
        ]
    );
    // The start-up error shows the same messages.
    let err = super::check::load_rules_dir(&dir.0)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("2 error(s)") && err.contains(&errs[0]),
        "{err}"
    );
    assert!(check_dir(&dir.0.join("missing")).is_err());
}
