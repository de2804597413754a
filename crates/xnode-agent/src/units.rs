//! The agent's effects on systemd, behind a small trait: the real one is
//! `xnode_systemd::Systemd`; tests of the decisions use a fake.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};
use xnode_spec::plan::{ObservedUnit, Plan};
use xnode_systemd::{ApplyOptions, ApplyReport, Config, Error, Systemd, UnitStatus, Usage};

/// What the agent does to units.
pub trait Units {
    /// The units named like the agent's, with their files and states.
    fn observe(&self) -> impl Future<Output = Result<Vec<ObservedUnit>, Error>> + Send;
    /// Carries out a plan.
    fn apply(
        &self,
        plan: &Plan,
        options: &ApplyOptions,
    ) -> impl Future<Output = Result<ApplyReport, Error>> + Send;
    /// One unit's state now.
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, Error>> + Send;
    /// What systemd accounts for one service: restarts, memory, CPU time.
    fn usage(&self, unit: &str) -> impl Future<Output = Result<Usage, Error>> + Send;
    /// Every loaded unit named like the agent's: (name, ActiveState, SubState), in one
    /// cheap call.
    fn states(&self) -> impl Future<Output = Result<Vec<(String, String, String)>, Error>> + Send;
    /// Something woken when an agent's unit changes, and the task that feeds it (it
    /// ends when the connection does).
    fn watch(&self) -> impl Future<Output = Result<Watch, Error>> + Send;
    /// Puts one of the agent's own units (not a workload) in place; whether it changed.
    fn install(&self, name: &str, text: &str) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// What [`Units::watch`] returns.
pub type Watch = (Arc<Notify>, tokio::task::JoinHandle<()>);

impl Units for Systemd {
    fn observe(&self) -> impl Future<Output = Result<Vec<ObservedUnit>, Error>> + Send {
        Systemd::observe(self)
    }
    fn apply(
        &self,
        plan: &Plan,
        options: &ApplyOptions,
    ) -> impl Future<Output = Result<ApplyReport, Error>> + Send {
        Systemd::apply(self, plan, options)
    }
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, Error>> + Send {
        Systemd::status(self, unit)
    }
    fn usage(&self, unit: &str) -> impl Future<Output = Result<Usage, Error>> + Send {
        Systemd::usage(self, unit)
    }
    fn states(&self) -> impl Future<Output = Result<Vec<(String, String, String)>, Error>> + Send {
        Systemd::states(self)
    }
    fn watch(&self) -> impl Future<Output = Result<Watch, Error>> + Send {
        Systemd::watch_units(self)
    }
    fn install(&self, name: &str, text: &str) -> impl Future<Output = Result<bool, Error>> + Send {
        Systemd::install(self, name, text)
    }
}

/// systemd through a connection that is made again when it breaks (dbus-daemon
/// restarted, say): a call that fails for want of a connection is retried once on a
/// fresh one.
pub struct Reconnecting {
    config: Config,
    current: Mutex<Option<Arc<Systemd>>>,
}

impl Reconnecting {
    /// Connects now, so a node without systemd fails at start with a clear error.
    pub async fn connect(config: Config) -> Result<Reconnecting, Error> {
        let first = Systemd::connect(&config).await?;
        Ok(Reconnecting {
            config,
            current: Mutex::new(Some(Arc::new(first))),
        })
    }

    async fn connection(&self, fresh: bool) -> Result<Arc<Systemd>, Error> {
        let mut current = self.current.lock().await;
        if fresh {
            *current = None;
        }
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Systemd::connect(&self.config).await?);
        info!("connected to systemd again");
        *current = Some(c.clone());
        Ok(c)
    }

    /// Runs `op`, and once more on a new connection if the first try lost the bus.
    async fn with<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: Fn(Arc<Systemd>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        match op(self.connection(false).await?).await {
            Err(e) if lost_bus(&e) => {
                warn!("lost the connection to systemd ({e}); reconnecting");
                op(self.connection(true).await?).await
            }
            other => other,
        }
    }
}

/// Whether an error means the bus connection is gone rather than systemd saying no.
fn lost_bus(e: &Error) -> bool {
    match e {
        Error::Unreachable { .. } => true,
        Error::Call { source, .. } => {
            matches!(source, zbus::Error::InputOutput(_))
                || matches!(source, zbus::Error::FDO(f) if matches!(**f, zbus::fdo::Error::Disconnected(_) | zbus::fdo::Error::NoReply(_) | zbus::fdo::Error::ServiceUnknown(_)))
        }
        _ => false,
    }
}

impl Units for Reconnecting {
    async fn observe(&self) -> Result<Vec<ObservedUnit>, Error> {
        self.with(|s| async move { s.observe().await }).await
    }
    async fn apply(&self, plan: &Plan, options: &ApplyOptions) -> Result<ApplyReport, Error> {
        self.with(|s| async move { s.apply(plan, options).await })
            .await
    }
    async fn status(&self, unit: &str) -> Result<UnitStatus, Error> {
        self.with(|s| async move { s.status(unit).await }).await
    }
    async fn usage(&self, unit: &str) -> Result<Usage, Error> {
        self.with(|s| async move { s.usage(unit).await }).await
    }
    async fn states(&self) -> Result<Vec<(String, String, String)>, Error> {
        self.with(|s| async move { s.states().await }).await
    }
    async fn watch(&self) -> Result<Watch, Error> {
        self.with(|s| async move { s.watch_units().await }).await
    }
    async fn install(&self, name: &str, text: &str) -> Result<bool, Error> {
        self.with(|s| async move { s.install(name, text).await })
            .await
    }
}

/// How long an apply of `spec` waits for systemd's jobs: the default, or longer when a
/// oneshot may run longer (its start job lasts as long as it runs, and the starts
/// ordered after it wait that long too).
pub fn apply_options(spec: &xnode_spec::Spec) -> ApplyOptions {
    let default = ApplyOptions::default();
    let longest = spec
        .workloads
        .values()
        .filter(|w| w.kind == xnode_spec::Kind::Oneshot)
        .map(|w| std::time::Duration::from_millis(w.health.timeout.as_millis()))
        .max()
        .unwrap_or_default();
    ApplyOptions {
        job_timeout: default
            .job_timeout
            .max(longest + std::time::Duration::from_secs(10)),
    }
}
