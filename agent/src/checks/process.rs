//! Process check: count processes by exact name or by a regex on the full command line; critical outside min..=max.
//!
//! Reads `/proc` through sysinfo with nothing but names (and command lines when needed):
//! no CPU, memory or per-thread work, so the agent stays light. Threads and zombies do not count.

use std::ffi::{OsStr, OsString};
use std::time::Instant;

use serde::{Serialize, Serializer};
use tocsin_protocol::{CheckResult, CheckStatus};

use super::{millis, result};
use crate::config::{CheckConfig, format_duration};

/// Linux keeps this many bytes of a process name (`comm`); longer names are cut.
const COMM_LEN: usize = 15;

/// Which processes a check counts.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Exact process name. A name longer than Linux keeps also matches a process whose cut
    /// name starts it and whose `argv[0]` file name is the full name.
    Name(String),
    /// Regex on the command line (arguments joined by spaces; the name for kernel threads).
    Pattern(ProcessPattern),
}

impl Matcher {
    /// The matcher a `process` check's config asks for.
    pub fn from_config(check: &CheckConfig) -> Self {
        match &check.pattern {
            Some(p) => Matcher::Pattern(p.clone()),
            None => Matcher::Name(check.target.clone()),
        }
    }

    /// Whether matching a process named `comm` needs its command line: always for a pattern,
    /// for a name only when the kernel's 15-byte name could be the long name cut short.
    fn wants_cmd_for(&self, comm: &str) -> bool {
        match self {
            Matcher::Name(name) => {
                name.len() > COMM_LEN
                    && comm.len() == COMM_LEN
                    && name.as_bytes().starts_with(comm.as_bytes())
            }
            Matcher::Pattern(_) => true,
        }
    }

    /// Whether a process with this name and command line is counted.
    pub fn matches(&self, name: &OsStr, cmd: &[OsString]) -> bool {
        match self {
            Matcher::Name(want) => {
                let name = name.as_encoded_bytes();
                if name == want.as_bytes() {
                    return true;
                }
                want.len() > COMM_LEN
                    && name.len() == COMM_LEN
                    && want.as_bytes().starts_with(name)
                    && cmd.first().is_some_and(|argv0| {
                        let argv0 = argv0.as_encoded_bytes();
                        let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
                        base == want.as_bytes()
                    })
            }
            Matcher::Pattern(re) => {
                if cmd.is_empty() {
                    return re.is_match(&name.to_string_lossy());
                }
                let line = cmd
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ");
                re.is_match(&line)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Matcher::Name(name) => name.clone(),
            Matcher::Pattern(p) => format!("/{}/", p.as_str()),
        }
    }
}

/// Count the live processes `matcher` matches (blocking: reads `/proc`, sharing the cycle's
/// process snapshot with the host collection; command lines are read only when needed).
pub fn count(matcher: &Matcher) -> usize {
    let Some(list) = crate::collect::procfs::processes() else {
        return 0;
    };
    list.iter()
        .filter(|p| !matches!(p.state, 'Z' | 'X' | 'x'))
        .filter(|p| {
            let name = OsStr::new(&p.comm);
            let cmd = if matcher.wants_cmd_for(&p.comm) {
                crate::collect::procfs::cmdline(p.pid)
            } else {
                Vec::new()
            };
            matcher.matches(name, &cmd)
        })
        .count()
}

/// The status and output for `n` matching processes against `min..=max`.
pub fn evaluate(matcher: &Matcher, n: usize, min: u32, max: Option<u32>) -> (CheckStatus, String) {
    let noun = if n == 1 { "process" } else { "processes" };
    let mut output = format!("{n} {noun} matching {}", matcher.describe());
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    let in_range = n >= u64::from(min) && max.is_none_or(|max| n <= u64::from(max));
    if in_range {
        return (CheckStatus::Ok, output);
    }
    let expected = match max {
        Some(max) if max == min => format!("exactly {min}"),
        Some(max) if min == 0 => format!("at most {max}"),
        Some(max) => format!("{min} to {max}"),
        None => format!("at least {min}"),
    };
    output.push_str(&format!(" (expected {expected})"));
    (CheckStatus::Critical, output)
}

/// Count the processes the check asks for, within its timeout.
pub async fn check(name: String, config: &CheckConfig) -> CheckResult {
    let matcher = Matcher::from_config(config);
    let start = Instant::now();
    let counting = {
        let matcher = matcher.clone();
        tokio::task::spawn_blocking(move || count(&matcher))
    };
    let n = match tokio::time::timeout(config.timeout, counting).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            return result(
                name,
                CheckStatus::Unknown,
                format!("reading the process list failed: {e}"),
            );
        }
        Err(_) => {
            return result(
                name,
                CheckStatus::Unknown,
                format!(
                    "reading the process list timed out after {}",
                    format_duration(config.timeout)
                ),
            );
        }
    };
    let latency_ms = Some(millis(start.elapsed()));
    let (status, output) = evaluate(&matcher, n, config.process_min(), config.max);
    CheckResult {
        name,
        status,
        output,
        latency_ms,
    }
}

/// A `process` check's regex on the full command line. Equal when the source text is equal.
#[derive(Debug, Clone)]
pub struct ProcessPattern(regex::Regex);

impl ProcessPattern {
    /// Compile `pattern`; the error is one line (`pattern "(": invalid regex: unclosed group`).
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("pattern must not be empty".to_string());
        }
        regex::Regex::new(pattern)
            .map(ProcessPattern)
            .map_err(|e| format!("pattern {pattern:?}: invalid regex: {}", regex_reason(&e)))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_match(&self, haystack: &str) -> bool {
        self.0.is_match(haystack)
    }
}

/// The `error: ...` line of a multi-line regex syntax error, or the whole message on one line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl PartialEq for ProcessPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for ProcessPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_comm() -> String {
        std::fs::read_to_string("/proc/self/comm")
            .expect("comm")
            .trim_end()
            .to_string()
    }

    fn own_exe_name() -> String {
        std::env::current_exe()
            .expect("exe")
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn names_match_exactly_and_long_names_by_argv0() {
        let m = Matcher::Name("nginx".into());
        let cmd = |s: &str| -> Vec<OsString> { s.split(' ').map(OsString::from).collect() };
        assert!(m.matches(OsStr::new("nginx"), &cmd("nginx: master process")));
        assert!(!m.matches(OsStr::new("nginx-proxy"), &[]));
        assert!(!m.matches(OsStr::new("ngin"), &[]));
        let long = Matcher::Name("tocsin-collector".into());
        assert!(long.matches(
            OsStr::new("tocsin-collecto"),
            &cmd("/usr/bin/tocsin-collector run")
        ));
        assert!(!long.matches(
            OsStr::new("tocsin-collecto"),
            &cmd("/usr/bin/tocsin-collectorX")
        ));
        let re = Matcher::Pattern(ProcessPattern::new("java .*-jar app\\.jar").expect("regex"));
        assert!(re.matches(
            OsStr::new("java"),
            &cmd("/usr/bin/java -Xmx1g -jar app.jar")
        ));
        assert!(!re.matches(OsStr::new("java"), &cmd("/usr/bin/java -jar other.jar")));
        // Kernel threads have no command line: their name is matched.
        let k = Matcher::Pattern(ProcessPattern::new("^kthreadd$").expect("regex"));
        assert!(k.matches(OsStr::new("kthreadd"), &[]));
    }

    #[test]
    fn ranges() {
        let m = Matcher::Name("nginx".into());
        assert_eq!(
            evaluate(&m, 3, 1, None),
            (CheckStatus::Ok, "3 processes matching nginx".into())
        );
        assert_eq!(
            evaluate(&m, 1, 1, Some(1)),
            (CheckStatus::Ok, "1 process matching nginx".into())
        );
        assert_eq!(
            evaluate(&m, 0, 1, None),
            (
                CheckStatus::Critical,
                "0 processes matching nginx (expected at least 1)".into()
            )
        );
        assert_eq!(
            evaluate(&m, 5, 2, Some(4)),
            (
                CheckStatus::Critical,
                "5 processes matching nginx (expected 2 to 4)".into()
            )
        );
        assert_eq!(
            evaluate(&m, 2, 0, Some(0)).0,
            CheckStatus::Critical,
            "max 0: the process must not run"
        );
        assert_eq!(
            evaluate(&m, 2, 0, Some(1)).1,
            "2 processes matching nginx (expected at most 1)"
        );
        assert_eq!(
            evaluate(&m, 2, 1, Some(1)).1,
            "2 processes matching nginx (expected exactly 1)"
        );
    }

    #[tokio::test]
    async fn finds_this_test_process_by_name_and_by_pattern() {
        let by_comm = CheckConfig::process("me", own_comm());
        let r = check("process:me".into(), &by_comm).await;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
        assert!(r.latency_ms.is_some());

        // The test binary's file name is longer than Linux keeps: matched through argv[0].
        let exe = own_exe_name();
        assert!(exe.len() > COMM_LEN, "{exe}");
        let by_exe = CheckConfig::process("me", exe.clone());
        let r = check("process:me".into(), &by_exe).await;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
        assert_eq!(r.output, format!("1 process matching {exe}"));

        let pattern = ProcessPattern::new(&regex::escape(&exe)).expect("regex");
        let by_pattern = CheckConfig::process_matching("me", pattern);
        let r = check("process:me".into(), &by_pattern).await;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
        assert!(r.output.starts_with("1 process matching /"), "{}", r.output);
    }

    #[tokio::test]
    async fn min_and_max_violations_are_critical() {
        let exe = own_exe_name();
        let mut too_few = CheckConfig::process("me", exe.clone());
        too_few.min = Some(2);
        let r = check("process:me".into(), &too_few).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert_eq!(
            r.output,
            format!("1 process matching {exe} (expected at least 2)")
        );

        let mut must_not_run = CheckConfig::process("me", exe.clone());
        must_not_run.min = Some(0);
        must_not_run.max = Some(0);
        let r = check("process:me".into(), &must_not_run).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert_eq!(
            r.output,
            format!("1 process matching {exe} (expected exactly 0)")
        );

        let missing = CheckConfig::process("none", "no-such-proc-xyz");
        let r = check("process:none".into(), &missing).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert_eq!(
            r.output,
            "0 processes matching no-such-proc-xyz (expected at least 1)"
        );
    }
}
