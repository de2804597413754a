//! The connection to systemd and the few reads every other part needs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};

use crate::Error;

/// Which bus systemd is on.
#[derive(Debug, Clone, Default)]
pub enum Bus {
    /// The system bus (what xnoded uses on a node).
    #[default]
    System,
    /// A bus address, e.g. a container's `unix:path=/proc/PID/root/run/dbus/system_bus_socket`.
    Address(String),
}

/// How to reach the systemd to drive.
#[derive(Debug, Clone)]
pub struct Config {
    /// Its bus.
    pub bus: Bus,
    /// Its filesystem root as this process sees it: `/` on a node, `/proc/PID/root`
    /// for a container driven from outside. Unit file paths are resolved under it.
    pub root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bus: Bus::System,
            root: PathBuf::from("/"),
        }
    }
}

/// Calls kept in flight at once on one connection: dbus-daemon refuses more than 128
/// pending replies per connection (`max_replies_per_connection`).
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// Where the agent's unit files live: runtime units, recreated from the spec at boot.
pub(crate) const UNIT_DIR: &str = "run/systemd/system";

/// A connection to one systemd.
pub struct Systemd {
    pub(crate) conn: zbus::Connection,
    pub(crate) manager: ManagerProxy<'static>,
    root: PathBuf,
    mutations: AtomicU64,
    subscribed: tokio::sync::OnceCell<()>,
}

/// What systemd accounts for a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Restarts systemd made under the restart policy since the unit was loaded.
    pub restarts: u32,
    /// Memory its cgroup uses now, when accounted.
    pub memory_bytes: Option<u64>,
    /// CPU time it used, when accounted.
    pub cpu_ns: Option<u64>,
}

/// A unit's state after an apply, as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// The unit.
    pub name: String,
    /// `ActiveState`, e.g. `active`, `failed`.
    pub active_state: String,
    /// `SubState`, e.g. `running`, `exited`, `auto-restart`.
    pub sub_state: String,
    /// The service's `Result`, e.g. `success`, `exit-code`.
    pub result: String,
    /// How the main process ended, if it did: `exited`, `killed` or `dumped`.
    pub exit_code: Option<&'static str>,
    /// Its exit status (or signal number when killed).
    pub exit_status: i32,
}

impl Systemd {
    /// Connects to systemd.
    pub async fn connect(config: &Config) -> Result<Systemd, Error> {
        let (builder, bus) = match &config.bus {
            Bus::System => (
                zbus::connection::Builder::system(),
                "the system bus".to_owned(),
            ),
            Bus::Address(a) => (zbus::connection::Builder::address(a.as_str()), a.clone()),
        };
        let unreachable = |source| Error::Unreachable {
            bus: bus.clone(),
            source,
        };
        let conn = builder.build().await.map_err(unreachable)?;
        let manager = ManagerProxy::new(&conn).await.map_err(unreachable)?;
        // One cheap call proves systemd itself answers, not just the bus.
        manager.version().await.map_err(unreachable)?;
        Ok(Systemd {
            conn,
            manager,
            root: config.root.clone(),
            mutations: AtomicU64::new(0),
            subscribed: tokio::sync::OnceCell::new(),
        })
    }

    /// How many calls that change systemd or its files this connection has made; an
    /// apply of an empty plan makes none.
    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::Relaxed)
    }

    pub(crate) fn mutated(&self, n: u64) {
        self.mutations.fetch_add(n, Ordering::Relaxed);
    }

    /// Asks systemd to send job signals to this connection, once: systemd sends them
    /// only to subscribers.
    pub(crate) async fn subscribe(&self) -> Result<(), Error> {
        self.subscribed
            .get_or_try_init(|| async { self.manager.subscribe().await })
            .await
            .map(|_| ())
            .map_err(Error::call("Subscribe"))
    }

    /// A path of systemd's filesystem as this process sees it.
    pub(crate) fn host_path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The directory of the agent's unit files, as this process sees it.
    pub(crate) fn unit_dir(&self) -> PathBuf {
        self.root.join(UNIT_DIR)
    }

    pub(crate) async fn unit_proxy(
        &self,
        path: OwnedObjectPath,
    ) -> zbus::Result<UnitProxy<'static>> {
        UnitProxy::builder(&self.conn)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    async fn service_proxy(&self, path: OwnedObjectPath) -> zbus::Result<ServiceProxy<'static>> {
        ServiceProxy::builder(&self.conn)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    /// Why a failed service failed, by its object path: its `Result`, and whether its
    /// process ended after the unit began to stop (a stop job ended it, and it failed
    /// on the way: a timeout, or an exit status the program gives on SIGTERM) rather
    /// than by itself while it ran.
    pub(crate) async fn failure(
        &self,
        name: &str,
        path: OwnedObjectPath,
    ) -> Result<(String, bool), Error> {
        let read = async {
            let service = self.service_proxy(path.clone()).await?;
            let unit = self.unit_proxy(path).await?;
            let result = service.result().await?;
            let started = service.exec_main_start_timestamp_monotonic().await?;
            let exited = service.exec_main_exit_timestamp_monotonic().await?;
            let became_active = unit.active_enter_timestamp_monotonic().await?;
            let left_active = unit.active_exit_timestamp_monotonic().await?;
            // This run became active, and its process outlived its leaving active: a
            // stop ended it. (A run that failed to start never became active.)
            let this_run = became_active >= started && left_active >= became_active;
            Ok::<_, zbus::Error>((result, this_run && exited > left_active))
        };
        read.await
            .map_err(Error::call(format!("reading why {name} failed")))
    }

    /// What systemd accounts for a service now: restarts, memory and CPU time.
    pub async fn usage(&self, unit: &str) -> Result<Usage, Error> {
        let read = async {
            let path = self.manager.load_unit(unit.to_owned()).await?;
            let s = self.service_proxy(path).await?;
            Ok::<_, zbus::Error>((
                s.n_restarts().await?,
                s.memory_current().await?,
                s.cpu_usage_n_sec().await?,
            ))
        };
        let (restarts, memory, cpu) = read
            .await
            .map_err(Error::call(format!("reading what {unit} uses")))?;
        // systemd says "not accounted" with the largest value.
        let accounted = |v: u64| (v != u64::MAX).then_some(v);
        Ok(Usage {
            restarts,
            memory_bytes: accounted(memory),
            cpu_ns: accounted(cpu),
        })
    }

    /// A unit's current state, read fresh.
    pub async fn status(&self, unit: &str) -> Result<UnitStatus, Error> {
        // One call at a time: many statuses run side by side, and the bus limits how
        // many calls a connection may have pending.
        let read = async {
            let path = self.manager.load_unit(unit.to_owned()).await?;
            let u = self.unit_proxy(path.clone()).await?;
            let (active, sub) = (u.active_state().await?, u.sub_state().await?);
            // A timer has no process, so nothing of one to read.
            if !unit.ends_with(".service") {
                return Ok::<_, zbus::Error>((active, sub, String::new(), 0, 0));
            }
            let s = self.service_proxy(path).await?;
            Ok((
                active,
                sub,
                s.result().await?,
                s.exec_main_code().await?,
                s.exec_main_status().await?,
            ))
        };
        let (active, sub, result, code, status) = read
            .await
            .map_err(Error::call(format!("reading the state of {unit}")))?;
        Ok(UnitStatus {
            name: unit.to_owned(),
            active_state: active,
            sub_state: sub,
            result,
            // siginfo's CLD_* codes.
            exit_code: match code {
                1 => Some("exited"),
                2 => Some("killed"),
                3 => Some("dumped"),
                _ => None,
            },
            exit_status: status,
        })
    }
}
