//! Service-manager notifications (systemd `Type=notify`): ready, reloading, stopping, status.
//!
//! Each call is a no-op unless `NOTIFY_SOCKET` is set, so the same binaries run unchanged
//! from a shell, in tests and under systemd. A failed send is logged, never fatal: the
//! service manager then times the unit out, which says more than a crash would.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The daemon is up and doing its work; `status` is the line `systemctl status` shows.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload (SIGHUP) started; call [`ready`] when it is done, whatever its outcome.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        // MONOTONIC_USEC lets systemd (253+, Type=notify-reload) match this to its request.
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown started.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Update the status line without changing the state.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

// Tested end to end (tests/tests/systemd_notify.rs): setting NOTIFY_SOCKET in-process would need
// `unsafe` (`std::env::set_var`), so the tests run the real binaries with it.
