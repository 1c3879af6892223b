//! Tests of `[[check]]` configs: every kind with its keys, every refusal as one line.
use super::*;
use crate::config::AgentConfig;

fn parse(check: &str) -> Result<AgentConfig, String> {
    AgentConfig::from_toml_str(&format!("site = \"dc1\"\nnode = \"a\"\n[[check]]\n{check}"))
        .map_err(|e| e.to_string())
}

fn one(check: &str) -> CheckConfig {
    let mut config = parse(check).unwrap_or_else(|e| panic!("{check}\n{e}"));
    let again = AgentConfig::from_toml_str(&config.to_toml_string()).expect("round trip");
    assert_eq!(again, config, "written and read back");
    config.checks.remove(0)
}

#[test]
fn every_kind_parses_with_its_keys() {
    let c = one("name = \"db\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:5432\"\ninterval = \"30s\"");
    assert_eq!(
        (c.kind, c.target.as_str()),
        (CheckKind::Tcp, "127.0.0.1:5432")
    );
    assert_eq!(c.every(Duration::from_secs(10)), Duration::from_secs(30));

    let c = one(
        "name = \"web\"\nkind = \"http\"\ntarget = \"https://127.0.0.1:8443/health\"\n\
         expect_status = [200, \"301-302\"]\nbody_contains = \"ok\"\nca_file = \"/etc/ssl/ca.pem\"\n\
         tls_verify = false\ncert_warning_days = 30\ncert_critical_days = 7\ntimeout = \"2s\"",
    );
    assert_eq!(c.report_name(), "http:web");
    assert_eq!(c.expect_status().to_string(), "200,301-302");
    assert!(c.expect_status().contains(302) && !c.expect_status().contains(303));
    assert_eq!(c.body_contains.as_deref(), Some("ok"));
    assert_eq!(c.ca_file, Some(PathBuf::from("/etc/ssl/ca.pem")));
    assert!(!c.tls_verify());
    assert_eq!((c.cert_warning_days(), c.cert_critical_days()), (30, 7));
    assert_eq!(c.timeout, Duration::from_secs(2));

    let c = one("name = \"web\"\nkind = \"http\"\ntarget = \"http://localhost/\"");
    assert_eq!(c.expect_status().to_string(), "200-399");
    assert!(c.tls_verify());
    assert_eq!((c.cert_warning_days(), c.cert_critical_days()), (14, 3));
    let c =
        one("name = \"web\"\nkind = \"http\"\ntarget = \"http://localhost/\"\nexpect_status = 204");
    assert_eq!(c.expect_status().to_string(), "204");

    let c = one("name = \"nginx\"\nkind = \"process\"\ntarget = \"nginx\"\nmax = 8");
    assert_eq!((c.process_min(), c.max), (1, Some(8)));
    let c = one(
        "name = \"app\"\nkind = \"process\"\npattern = \"java .*app\\\\.jar\"\nmin = 2\nmax = 2",
    );
    assert_eq!(
        c.pattern.as_ref().map(ProcessPattern::as_str),
        Some("java .*app\\.jar")
    );
    assert!(c.target.is_empty());

    let c = one("name = \"web\"\nkind = \"systemd\"\ntarget = \"nginx\"");
    assert_eq!(c.report_name(), "systemd:web");

    let c = one(
        "name = \"load\"\nkind = \"command\"\ncommand = [\"/usr/lib/nagios/plugins/check_load\", \"-w\", \"5,4,3\"]",
    );
    assert_eq!(
        c.command,
        ["/usr/lib/nagios/plugins/check_load", "-w", "5,4,3"]
    );
    let c = one("name = \"t\"\nkind = \"command\"\ncommand = [\"check_true\"]");
    assert_eq!(c.command, ["check_true"]);
}

#[test]
fn wrong_keys_and_values_are_refused_in_one_line() {
    let cases: &[(&str, &str)] = &[
        (
            "name = \"db\"\nkind = \"tcp\"\ntarget = \"h:1\"\nbody_contains = \"x\"",
            "config: check \"tcp:db\": key body_contains applies only to http checks",
        ),
        (
            "name = \"db\"\nkind = \"tcp\"\ntarget = \"h:1\"\nexpect_status = 200",
            "check \"tcp:db\": key expect_status applies only to http checks",
        ),
        (
            "name = \"db\"\nkind = \"tcp\"\ntarget = \"h:1\"\npattern = \"x\"",
            "check \"tcp:db\": key pattern applies only to process checks",
        ),
        (
            "name = \"db\"\nkind = \"tcp\"\ntarget = \"h:1\"\ncommand = [\"/bin/true\"]",
            "check \"tcp:db\": key command applies only to command checks",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nmin = 1",
            "check \"http:w\": key min applies only to process checks",
        ),
        (
            "name = \"p\"\nkind = \"process\"\ntarget = \"x\"\nca_file = \"/x\"",
            "check \"process:p\": key ca_file applies only to http checks",
        ),
        (
            "name = \"s\"\nkind = \"systemd\"\ntarget = \"x\"\ntls_verify = false",
            "check \"systemd:s\": key tls_verify applies only to http checks",
        ),
        (
            "name = \"s\"\nkind = \"systemd\"\ntarget = \"x\"\nmax = 2",
            "check \"systemd:s\": key max applies only to process checks",
        ),
        (
            "name = \"c\"\nkind = \"command\"\ncommand = [\"/bin/true\"]\ncert_warning_days = 2",
            "check \"command:c\": key cert_warning_days applies only to http checks",
        ),
        (
            "name = \"c\"\nkind = \"command\"\ntarget = \"/bin/true\"\ncommand = [\"/bin/true\"]",
            "check \"command:c\": key target does not apply to command checks; put the program in command = [",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nca_file = \"/ca.pem\"",
            "check \"http:w\": key ca_file applies only to https:// targets, not \"http://h/\"",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"https://h/\"\ncert_critical_days = 20",
            "check \"http:w\": cert_critical_days 20 must not be more than cert_warning_days 14",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nexpect_status = \"600\"",
            "check \"http:w\": expect_status \"600\": status 600 is not between 100 and 599",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nexpect_status = \"399-200\"",
            "check \"http:w\": expect_status \"399-200\": range 399-200 ends before it starts",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nexpect_status = [200, \"3xx\"]",
            "check \"http:w\": expect_status \"3xx\": expected a status code or a range like \"200-399\"",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nexpect_status = []",
            "check \"http:w\": expect_status must list at least one status code",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nexpect_status = true",
            "line 7: invalid type: boolean `true`, expected a status code (200), a range (\"200-399\") or a list of those",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"http://h/\"\nbody_contains = \"\"",
            "check \"http:w\": body_contains must not be empty",
        ),
        (
            "name = \"w\"\nkind = \"http\"\ntarget = \"ftp://h/\"",
            "check \"http:w\": target \"ftp://h/\" must start with http:// or https://",
        ),
        (
            "name = \"w\"\nkind = \"http\"",
            "check \"http:w\": target = \"http://...\" or \"https://...\" is required",
        ),
        (
            "name = \"db\"\nkind = \"tcp\"",
            "check \"tcp:db\": target = \"host:port\" is required",
        ),
        (
            "name = \"p\"\nkind = \"process\"\npattern = \"(\"",
            "check \"process:p\": pattern \"(\": invalid regex: unclosed group",
        ),
        (
            "name = \"p\"\nkind = \"process\"",
            "check \"process:p\": set target = \"<process name>\" or pattern = \"<regex on the command line>\"",
        ),
        (
            "name = \"p\"\nkind = \"process\"\ntarget = \"x\"\npattern = \"x\"",
            "check \"process:p\": set either target (process name) or pattern (regex), not both",
        ),
        (
            "name = \"p\"\nkind = \"process\"\ntarget = \"x\"\nmin = 3\nmax = 1",
            "check \"process:p\": min 3 must not be more than max 1",
        ),
        (
            "name = \"p\"\nkind = \"process\"\ntarget = \"x\"\nmax = 0",
            "check \"process:p\": min 1 must not be more than max 0",
        ),
        (
            "name = \"p\"\nkind = \"process\"\ntarget = \"x\"\nmin = -1",
            "line 7: invalid value: integer `-1`, expected u32",
        ),
        (
            "name = \"s\"\nkind = \"systemd\"",
            "check \"systemd:s\": target = \"<unit>\" is required",
        ),
        (
            "name = \"s\"\nkind = \"systemd\"\ntarget = \"--all\"",
            "check \"systemd:s\": target \"--all\" is not a systemd unit name",
        ),
        (
            "name = \"c\"\nkind = \"command\"",
            "check \"command:c\": command = [\"/path/to/plugin\", \"arg\", ...] is required",
        ),
        (
            "name = \"c\"\nkind = \"command\"\ncommand = []",
            "check \"command:c\": command must name a program",
        ),
        (
            "name = \"c\"\nkind = \"command\"\ncommand = [\"plugins/check_x\"]",
            "check \"command:c\": command[0] \"plugins/check_x\" must be an absolute path or a program name found in PATH",
        ),
        (
            "name = \"x\"\nkind = \"toaster\"\ntarget = \"x\"",
            "unknown check kind \"toaster\" (supported: tcp, http, process, systemd, command)",
        ),
        (
            "name = \"x\"\nkind = \"http\"\ntarget = \"http://h/\"\ncolour = 1",
            "unknown field `colour`",
        ),
    ];
    for (check, want) in cases {
        let got = parse(check).expect_err(check);
        assert!(
            got.contains(want),
            "{check:?}\n  got:  {got}\n  want: {want}"
        );
        assert!(!got.contains('\n'), "error is not one line: {got:?}");
    }
}

#[test]
fn constructors_make_valid_checks() {
    let every = Duration::from_secs(10);
    let pattern = ProcessPattern::new("nginx: master").expect("regex");
    for check in [
        CheckConfig::tcp("db", "127.0.0.1:5432"),
        CheckConfig::http("web", "https://127.0.0.1/health"),
        CheckConfig::process("nginx", "nginx"),
        CheckConfig::process_matching("nginx", pattern),
        CheckConfig::systemd("nginx", "nginx.service"),
        CheckConfig::command(
            "load",
            ["/usr/lib/nagios/plugins/check_load", "-w", "5,4,3"],
        ),
    ] {
        check
            .validate(every)
            .unwrap_or_else(|e| panic!("{check:?}: {e}"));
    }
    // Options set in code are checked the same way as in a file.
    let mut tcp = CheckConfig::tcp("db", "127.0.0.1:5432");
    tcp.min = Some(1);
    assert_eq!(
        tcp.validate(every),
        Err("check \"tcp:db\": key min applies only to process checks".to_string())
    );
    assert!(ProcessPattern::new("").is_err());
    assert_eq!(
        ProcessPattern::new("a").expect("a"),
        ProcessPattern::new("a").expect("a")
    );
}
