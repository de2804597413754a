//! Telling systemd the agent is ready, and that its loop is alive (Type=notify,
//! WatchdogSec). The loop pings on its own clock: a loop that stops turning is
//! restarted by systemd, not kept alive by a timer of its own.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

/// Sends READY=1. Outside systemd this does nothing.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify systemd: {e}");
    }
}

/// systemd's watchdog, when it asked for one.
#[derive(Debug)]
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// The watchdog systemd set up (`WATCHDOG_USEC`), if any: pinged at half its
    /// interval.
    pub fn from_env() -> Option<Watchdog> {
        sd_notify::watchdog_enabled().map(|interval| Watchdog {
            every: interval / 2,
            last: None,
        })
    }

    /// Pings if half the interval has passed since the last ping.
    pub fn ping_if_due(&mut self, now: Instant) {
        if self.last.is_some_and(|t| now < t + self.every) {
            return;
        }
        self.last = Some(now);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    }
}
