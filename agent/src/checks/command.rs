//! Command check: run a Nagios/Icinga plugin in its own process group; exit 0/1/2/3 -> ok/warning/critical/unknown.
//!
//! The plugin gets stdin from /dev/null and the agent's environment. At most [`OUTPUT_LIMIT`]
//! of stdout and of stderr is kept; the rest is read and discarded so the plugin never blocks
//! on a full pipe. At the timeout the whole process group is killed (grandchildren too) and
//! reaped; after a normal exit, leftovers in the group are killed as well.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tocsin_protocol::{CheckResult, CheckStatus};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{millis, result};
use crate::config::format_duration;

/// Bytes of stdout (and of stderr) kept from one run.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// Longest output line reported, in characters.
pub const MAX_OUTPUT_CHARS: usize = 512;
/// How long the pipes may stay open after the plugin exited (a grandchild holding them).
const AFTER_EXIT: Duration = Duration::from_millis(250);
/// How long reaping a killed plugin may take.
const REAP_LIMIT: Duration = Duration::from_secs(1);

/// Kills the process group when dropped, unless disarmed: a run that is cancelled
/// (scheduler hard limit, reload) leaves nothing behind.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (nobody left in the group) is the normal case after a clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `argv` within `timeout` and map its exit code to a status.
pub async fn check(name: String, argv: &[String], timeout: Duration) -> CheckResult {
    let Some((program, args)) = argv.split_first() else {
        return result(name, CheckStatus::Unknown, "no command to run");
    };
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return result(
                name,
                CheckStatus::Unknown,
                format!("cannot run {program}: {}", describe_spawn(&e)),
            );
        }
    };
    // The child leads its own group, so the group id is its pid (known until it is reaped).
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut pipes_open = true;
    {
        let out_done = read_capped(stdout, &mut out);
        let err_done = read_capped(stderr, &mut err);
        tokio::pin!(out_done, err_done);
        let (mut out_eof, mut err_eof) = (false, false);
        let limit = tokio::time::sleep_until(deadline);
        tokio::pin!(limit);
        loop {
            if status.is_some() && out_eof && err_eof {
                pipes_open = false;
                break;
            }
            tokio::select! {
                s = child.wait(), if status.is_none() => {
                    status = Some(s);
                    // The plugin is done; give the pipes a moment to drain, no more.
                    let after = (tokio::time::Instant::now() + AFTER_EXIT).min(deadline);
                    limit.as_mut().reset(after);
                }
                () = &mut out_done, if !out_eof => out_eof = true,
                () = &mut err_done, if !err_eof => err_eof = true,
                () = &mut limit => break,
            }
        }
    }
    let latency_ms = Some(millis(start.elapsed()));
    let Some(status) = status else {
        // Timed out: kill the group while the leader is unreaped (its id cannot be reused), then reap.
        guard.kill();
        if tokio::time::timeout(REAP_LIMIT, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(program = %program, "plugin did not die after SIGKILL");
        }
        return CheckResult {
            name,
            status: CheckStatus::Critical,
            output: format!("timed out after {}", format_duration(timeout)),
            latency_ms,
        };
    };
    if pipes_open {
        tracing::debug!(program = %program, "plugin exited but its output pipes stayed open; killing its process group");
    }
    // Leftovers (background children) die with the group; nothing left is the usual case.
    guard.kill();
    let (status, output) = match status {
        Ok(exit) => interpret(exit, &out, &err),
        Err(e) => (
            CheckStatus::Unknown,
            format!("waiting for {program} failed: {e}"),
        ),
    };
    CheckResult {
        name,
        status,
        output,
        latency_ms,
    }
}

/// Read `from` to its end, keeping the first [`OUTPUT_LIMIT`] bytes in `into`.
async fn read_capped<R: AsyncRead + Unpin>(from: Option<R>, into: &mut Vec<u8>) {
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(into.len());
                into.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The Nagios plugin convention: exit code to status; output is the first line printed.
pub fn interpret(exit: ExitStatus, stdout: &[u8], stderr: &[u8]) -> (CheckStatus, String) {
    let line = first_line(stdout).or_else(|| first_line(stderr));
    match (exit.code(), exit.signal()) {
        (Some(code @ 0..=3), _) => (
            CheckStatus::from_exit_code(code),
            line.unwrap_or_else(|| format!("(no output, exit code {code})")),
        ),
        (Some(code), _) => (
            CheckStatus::Unknown,
            with_line(format!("exit code {code}"), line),
        ),
        (None, Some(signal)) => {
            let what = match Signal::try_from(signal) {
                Ok(s) => format!("killed by signal {signal} ({})", s.as_str()),
                Err(_) => format!("killed by signal {signal}"),
            };
            (CheckStatus::Unknown, with_line(what, line))
        }
        (None, None) => (
            CheckStatus::Unknown,
            with_line("ended without an exit code".to_string(), line),
        ),
    }
}

fn with_line(reason: String, line: Option<String>) -> String {
    match line {
        Some(line) => format!("{reason}: {line}"),
        None => reason,
    }
}

/// First non-blank line, trimmed, at most [`MAX_OUTPUT_CHARS`] characters.
pub fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_OUTPUT_CHARS)
        .collect();
    Some(line)
}

fn describe_spawn(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file (or not found in PATH)".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => super::tcp::describe(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;

    fn plugin(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    async fn run(argv: &[String], timeout: Duration) -> CheckResult {
        check("command:t".into(), argv, timeout).await
    }

    #[tokio::test]
    async fn exit_codes_map_to_statuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (0, CheckStatus::Ok, "LOAD OK - load average: 0.1"),
            (1, CheckStatus::Warning, "LOAD WARNING - load average: 6"),
            (2, CheckStatus::Critical, "LOAD CRITICAL - load average: 9"),
            (3, CheckStatus::Unknown, "LOAD UNKNOWN - cannot read"),
        ];
        for (code, want, line) in cases {
            let p = plugin(
                dir.path(),
                &format!("p{code}"),
                &format!("echo '  {line}  '\necho second line\nexit {code}"),
            );
            let r = run(&[p], Duration::from_secs(5)).await;
            assert_eq!(r.status, want, "exit {code}: {}", r.output);
            assert_eq!(r.output, line);
            assert!(r.latency_ms.is_some());
        }
    }

    #[tokio::test]
    async fn other_exit_codes_and_signals_are_unknown_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = plugin(dir.path(), "seven", "echo odd\nexit 7");
        let r = run(&[p], Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(r.output, "exit code 7: odd");

        let p = plugin(dir.path(), "killed", "kill -TERM $$");
        let r = run(&[p], Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(r.output, "killed by signal 15 (SIGTERM)");
    }

    #[tokio::test]
    async fn arguments_pass_and_stderr_is_used_when_stdout_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = plugin(dir.path(), "args", "echo \"got $1 $2\" >&2\nexit 2");
        let r = run(&[p, "-w".into(), "5,4,3".into()], Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert_eq!(r.output, "got -w 5,4,3");

        let p = plugin(dir.path(), "silent", "exit 0");
        let r = run(&[p], Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Ok);
        assert_eq!(r.output, "(no output, exit code 0)");
    }

    #[tokio::test]
    async fn programs_are_found_in_path_and_missing_ones_are_unknown() {
        let r = run(&["true".into()], Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.output);
        let r = run(&["/nonexistent/check_x".into()], Duration::from_secs(5)).await;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(
            r.output,
            "cannot run /nonexistent/check_x: no such file (or not found in PATH)"
        );
    }

    #[tokio::test]
    async fn stdin_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = plugin(dir.path(), "stdin", "n=$(wc -c)\necho \"stdin $n\"");
        let r = run(&[p], Duration::from_secs(5)).await;
        assert_eq!(r.output, "stdin 0");
    }

    #[tokio::test]
    async fn huge_output_is_bounded_and_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = plugin(
            dir.path(),
            "chatty",
            "yes 'WARNING - this line repeats' | head -c 10000000\nexit 1",
        );
        let start = Instant::now();
        let r = run(&[p], Duration::from_secs(10)).await;
        assert_eq!(r.status, CheckStatus::Warning, "{}", r.output);
        assert_eq!(r.output, "WARNING - this line repeats");
        assert!(start.elapsed() < Duration::from_secs(8));

        // One line without a newline: the kept part is bounded, the reported line too.
        let p = plugin(
            dir.path(),
            "oneline",
            "head -c 3000000 /dev/zero | tr '\\0' x",
        );
        let r = run(&[p], Duration::from_secs(10)).await;
        assert_eq!(r.status, CheckStatus::Ok);
        assert_eq!(r.output.chars().count(), MAX_OUTPUT_CHARS);
    }

    fn gone(pid: i32) -> bool {
        // Dead, or a zombie waiting for a reaper that is not us (pid 1 in a container may not reap).
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file: PathBuf = dir.path().join("grandchild.pid");
        let p = plugin(
            dir.path(),
            "hang",
            &format!(
                "sleep 1000 &\necho $! > {}\necho started\nsleep 1000",
                pid_file.display()
            ),
        );
        let check = crate::config::CheckConfig {
            timeout: Duration::from_millis(700),
            ..crate::config::CheckConfig::command("hang", [p])
        };
        let start = Instant::now();
        let (results, _) = super::super::run_all(std::slice::from_ref(&check)).await;
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1700), "took {took:?}");
        assert_eq!(results[0].status, CheckStatus::Critical);
        assert_eq!(results[0].output, "timed out after 700ms");

        let grandchild: i32 = std::fs::read_to_string(&pid_file)
            .expect("plugin wrote the grandchild pid")
            .trim()
            .parse()
            .expect("pid");
        let mut waited = Duration::ZERO;
        while !gone(grandchild) && waited < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert!(gone(grandchild), "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn background_child_holding_the_pipe_does_not_hold_the_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("bg.pid");
        let p = plugin(
            dir.path(),
            "leaky",
            &format!(
                "sleep 1000 &\necho $! > {}\necho OK - done\nexit 0",
                pid_file.display()
            ),
        );
        let start = Instant::now();
        let r = run(&[p], Duration::from_secs(5)).await;
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(r.status, CheckStatus::Ok);
        assert_eq!(r.output, "OK - done");
        let bg: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        let mut waited = Duration::ZERO;
        while !gone(bg) && waited < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert!(gone(bg), "background child {bg} survived");
    }

    #[test]
    fn first_lines() {
        assert_eq!(
            first_line(b"\n\n  OK - fine \nmore"),
            Some("OK - fine".into())
        );
        assert_eq!(first_line(b"   \n"), None);
        assert_eq!(first_line(b"a\tb\r\n"), Some("a\tb".replace('\t', " ")));
        let long = "é".repeat(600);
        assert_eq!(
            first_line(long.as_bytes()).map(|l| l.chars().count()),
            Some(MAX_OUTPUT_CHARS)
        );
    }
}
