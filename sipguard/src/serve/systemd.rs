//! systemd `Type=notify` readiness. Without NOTIFY_SOCKET (not under
//! systemd) these do nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("cannot notify systemd: {e}");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("filtering")]);
}

/// Ready, but with nothing to do yet; `status` says why.
pub fn idle(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// systemd 253+ wants a monotonic timestamp with RELOADING=1.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(t) => send(&[NotifyState::Reloading, t]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
