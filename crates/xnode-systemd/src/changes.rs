//! Notice of changes to the agent's units (a unit failed, stopped, started), so the
//! agent reconciles on events and not only on a timer.

use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::sync::Notify;
use zbus::MatchRule;
use zbus::message::Type;

use crate::{Error, Systemd};

/// The object-path prefix of `xnode-*` units (systemd escapes '-' as `_2d`).
const UNIT_PATHS: &str = "/org/freedesktop/systemd1/unit/xnode_2d";

impl Systemd {
    /// Returns a [`Notify`] that is woken whenever an `xnode-*` unit's properties
    /// change, and a task that feeds it. A burst of changes wakes it once; the task
    /// drains the signals at once, so they never hold up method replies on the shared
    /// connection. The task ends when the connection does.
    pub async fn watch_units(&self) -> Result<(Arc<Notify>, tokio::task::JoinHandle<()>), Error> {
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.systemd1")
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .build()
            .map_err(Error::call("building the PropertiesChanged match rule"))?;
        let mut stream = zbus::MessageStream::for_match_rule(rule, &self.conn, None)
            .await
            .map_err(Error::call("AddMatch(PropertiesChanged)"))?;
        self.subscribe().await?;
        let notify = Arc::new(Notify::new());
        let waker = notify.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                let ours = message
                    .ok()
                    .and_then(|m| {
                        m.header()
                            .path()
                            .map(|p| p.as_str().starts_with(UNIT_PATHS))
                    })
                    .unwrap_or(false);
                if ours {
                    waker.notify_one();
                }
            }
        });
        Ok((notify, task))
    }
}
