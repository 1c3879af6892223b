//! systemd unit check: `systemctl show` of ActiveState, SubState and LoadState, mapped to a status.
//!
//! `active` is ok; `activating`, `deactivating`, `reloading`, `refreshing` are warning;
//! `failed`, `inactive` and a unit that does not exist are critical; a host without
//! systemd (no `/run/systemd/system`) gives unknown.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tocsin_protocol::{CheckResult, CheckStatus};

use super::command::first_line;
use super::{millis, result};
use crate::config::format_duration;

/// Exists exactly when systemd is the running init system (what `sd_booted()` tests).
pub const SYSTEMD_MARKER: &str = "/run/systemd/system";

/// Unit suffixes systemd knows; a target without one gets `.service`.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".automount",
    ".swap",
    ".path",
    ".slice",
    ".scope",
    ".device",
];

/// The unit a target names: `nginx` -> `nginx.service`, `docker.socket` stays.
pub fn unit_name(target: &str) -> String {
    if UNIT_SUFFIXES.iter().any(|s| target.ends_with(s)) {
        target.to_string()
    } else {
        format!("{target}.service")
    }
}

/// What `systemctl show --property=ActiveState,SubState,LoadState` says about a unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub load: String,
    pub active: String,
    pub sub: String,
}

/// Parse `Key=Value` lines; `LoadState` and `ActiveState` must be there.
pub fn parse_show(text: &str) -> Result<UnitState, String> {
    let mut state = UnitState::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "LoadState" => state.load = value,
            "ActiveState" => state.active = value,
            "SubState" => state.sub = value,
            _ => {}
        }
    }
    if state.load.is_empty() || state.active.is_empty() {
        return Err(format!(
            "unexpected systemctl output: {:?}",
            first_line(text.as_bytes()).unwrap_or_default()
        ));
    }
    Ok(state)
}

/// The status and one-line output for `unit` in `state`.
pub fn evaluate(unit: &str, state: &UnitState) -> (CheckStatus, String) {
    if state.load == "not-found" {
        return (CheckStatus::Critical, format!("unit {unit} not found"));
    }
    let status = match state.active.as_str() {
        "active" => CheckStatus::Ok,
        "failed" | "inactive" => CheckStatus::Critical,
        "activating" | "deactivating" | "reloading" | "refreshing" | "maintenance" => {
            CheckStatus::Warning
        }
        _ => CheckStatus::Unknown,
    };
    let mut output = format!("{unit} is {}", state.active);
    if !state.sub.is_empty() && state.sub != state.active {
        output.push_str(&format!(" ({})", state.sub));
    }
    if state.load != "loaded" {
        output.push_str(&format!(", load state {}", state.load));
    }
    (status, output)
}

/// Check the unit `target` names within `timeout`.
pub async fn check(name: String, target: &str, timeout: Duration) -> CheckResult {
    check_with(
        name,
        target,
        timeout,
        Path::new(SYSTEMD_MARKER),
        "systemctl",
    )
    .await
}

async fn check_with(
    name: String,
    target: &str,
    timeout: Duration,
    marker: &Path,
    systemctl: &str,
) -> CheckResult {
    let unit = unit_name(target);
    if !tokio::fs::try_exists(marker).await.unwrap_or(false) {
        return result(
            name,
            CheckStatus::Unknown,
            format!(
                "systemd is not running on this host (no {}); cannot check {unit}",
                marker.display()
            ),
        );
    }
    let start = Instant::now();
    let run = tokio::process::Command::new(systemctl)
        .args([
            "show",
            "--no-pager",
            "--property=ActiveState,SubState,LoadState",
            "--",
            &unit,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            return result(
                name,
                CheckStatus::Critical,
                format!(
                    "systemctl show {unit}: timed out after {}",
                    format_duration(timeout)
                ),
            );
        }
        Ok(Err(e)) => {
            return result(
                name,
                CheckStatus::Unknown,
                format!("cannot run {systemctl}: {}", super::tcp::describe(&e)),
            );
        }
        Ok(Ok(output)) => output,
    };
    let latency_ms = Some(millis(start.elapsed()));
    if !output.status.success() {
        let why = first_line(&output.stderr)
            .or_else(|| first_line(&output.stdout))
            .unwrap_or_else(|| output.status.to_string());
        return CheckResult {
            name,
            status: CheckStatus::Unknown,
            output: format!("systemctl show {unit} failed: {why}"),
            latency_ms,
        };
    }
    let (status, text) = match parse_show(&String::from_utf8_lossy(&output.stdout)) {
        Ok(state) => evaluate(&unit, &state),
        Err(e) => (CheckStatus::Unknown, format!("systemctl show {unit}: {e}")),
    };
    CheckResult {
        name,
        status,
        output: text,
        latency_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn state(load: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            load: load.into(),
            active: active.into(),
            sub: sub.into(),
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("nginx.service"), "nginx.service");
        assert_eq!(unit_name("docker.socket"), "docker.socket");
        assert_eq!(unit_name("backup.timer"), "backup.timer");
        assert_eq!(unit_name("php8.2-fpm"), "php8.2-fpm.service");
        assert_eq!(unit_name("getty@tty1"), "getty@tty1.service");
    }

    #[test]
    fn parses_systemctl_show() {
        let s = parse_show("ActiveState=active\nSubState=running\nLoadState=loaded\n").expect("ok");
        assert_eq!(s, state("loaded", "active", "running"));
        // Order and extra lines do not matter.
        let s = parse_show("LoadState=not-found\nFoo=bar\r\nActiveState=inactive\nSubState=dead")
            .expect("ok");
        assert_eq!(s, state("not-found", "inactive", "dead"));
        let e = parse_show("Failed to connect to bus: No such file or directory\n")
            .expect_err("garbage");
        assert_eq!(
            e,
            "unexpected systemctl output: \"Failed to connect to bus: No such file or directory\""
        );
        assert!(parse_show("").is_err());
    }

    #[test]
    fn states_map_to_statuses() {
        let cases = [
            (
                state("loaded", "active", "running"),
                CheckStatus::Ok,
                "nginx.service is active (running)",
            ),
            (
                state("loaded", "active", "exited"),
                CheckStatus::Ok,
                "nginx.service is active (exited)",
            ),
            (
                state("loaded", "failed", "failed"),
                CheckStatus::Critical,
                "nginx.service is failed",
            ),
            (
                state("loaded", "inactive", "dead"),
                CheckStatus::Critical,
                "nginx.service is inactive (dead)",
            ),
            (
                state("masked", "inactive", "dead"),
                CheckStatus::Critical,
                "nginx.service is inactive (dead), load state masked",
            ),
            (
                state("loaded", "activating", "start-pre"),
                CheckStatus::Warning,
                "nginx.service is activating (start-pre)",
            ),
            (
                state("loaded", "deactivating", "stop-sigterm"),
                CheckStatus::Warning,
                "nginx.service is deactivating (stop-sigterm)",
            ),
            (
                state("loaded", "reloading", "reload"),
                CheckStatus::Warning,
                "nginx.service is reloading (reload)",
            ),
            (
                state("not-found", "inactive", "dead"),
                CheckStatus::Critical,
                "unit nginx.service not found",
            ),
            (
                state("loaded", "weird", ""),
                CheckStatus::Unknown,
                "nginx.service is weird",
            ),
        ];
        for (s, status, output) in cases {
            assert_eq!(
                evaluate("nginx.service", &s),
                (status, output.to_string()),
                "{s:?}"
            );
        }
    }

    #[tokio::test]
    async fn without_systemd_the_check_is_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("run-systemd-system");
        let r = check_with(
            "systemd:web".into(),
            "nginx",
            Duration::from_secs(2),
            &missing,
            "systemctl",
        )
        .await;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(
            r.output,
            format!(
                "systemd is not running on this host (no {}); cannot check nginx.service",
                missing.display()
            )
        );
        // On this machine: whatever the init system, the answer is one clear line.
        let r = check("systemd:web".into(), "nginx", Duration::from_secs(2)).await;
        if !Path::new(SYSTEMD_MARKER).exists() {
            assert_eq!(r.status, CheckStatus::Unknown);
            assert!(
                r.output.starts_with("systemd is not running"),
                "{}",
                r.output
            );
        }
        assert!(!r.output.contains('\n'));
    }

    #[tokio::test]
    async fn runs_systemctl_and_reads_its_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("systemctl");
        std::fs::write(
            &fake,
            "#!/bin/sh\n\
             [ \"$1 $2 $3 $4\" = \"show --no-pager --property=ActiveState,SubState,LoadState --\" ] || exit 9\n\
             case \"$5\" in\n\
             nginx.service) printf 'ActiveState=failed\\nSubState=failed\\nLoadState=loaded\\n' ;;\n\
             gone.service) printf 'ActiveState=inactive\\nSubState=dead\\nLoadState=not-found\\n' ;;\n\
             *) echo 'Failed to connect to bus' >&2; exit 1 ;;\n\
             esac\n",
        )
        .expect("write");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let fake = fake.display().to_string();
        let marker = dir.path();
        let t = Duration::from_secs(5);

        let r = check_with("systemd:web".into(), "nginx", t, marker, &fake).await;
        assert_eq!(r.status, CheckStatus::Critical, "{}", r.output);
        assert_eq!(r.output, "nginx.service is failed");
        assert!(r.latency_ms.is_some());

        let r = check_with("systemd:gone".into(), "gone.service", t, marker, &fake).await;
        assert_eq!(
            (r.status, r.output.as_str()),
            (CheckStatus::Critical, "unit gone.service not found")
        );

        let r = check_with("systemd:x".into(), "other", t, marker, &fake).await;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(
            r.output,
            "systemctl show other.service failed: Failed to connect to bus"
        );

        let r = check_with("systemd:x".into(), "x", t, marker, "/nonexistent/systemctl").await;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert!(
            r.output.starts_with("cannot run /nonexistent/systemctl"),
            "{}",
            r.output
        );
    }
}
