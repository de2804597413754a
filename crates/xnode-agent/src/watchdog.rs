//! Telling systemd the agent is ready, and that it is alive (Type=notify, WatchdogSec).

use tracing::warn;

/// Sends READY=1 and, when systemd asked for a watchdog, starts pinging it at half the
/// watchdog interval. Outside systemd this does nothing.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify systemd: {e}");
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}
