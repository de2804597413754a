//! The agent's loop. It owns the node's state and only decides: every piece of work
//! that waits (an apply with its health gate, a converge, reading the spec file,
//! checking a push, fencing stops) runs as a task beside it and reports back, as
//! comin's deployer does. So the loop answers every request at once, takes every mesh
//! event, renews the lease and pings systemd's watchdog, whatever an apply is doing.
//!
//! Its parts, by role: `spec_file` (watching the spec file), `api` (requests),
//! `apply` (the apply job), `converge` (drift repair), `mesh` (placement and the
//! lease).

mod api;
mod apply;
mod beside;
mod converge;
mod fleet;
mod fleet_view;
mod holding;
mod mesh;
mod mesh_requests;
mod owner_file;
mod realising;
mod reply;
mod rollout;
mod spec_file;
mod state_requests;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};
use xnode_spec::Validated;
use xnode_spec::plan::ObservedUnit;

pub use api::Command;
pub use reply::Reply;

use crate::deploy::Agent;
use crate::metrics::Metrics;
use crate::nix::Realise;
use crate::store::{Outcome, State, Store};
use crate::units::{Units, Watch};
use crate::watchdog::Watchdog;

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The spec file to watch.
    pub spec_file: PathBuf,
    /// How often the spec file is looked at.
    pub file_poll: Duration,
    /// How often the node is reconciled with no event at all.
    pub interval: Duration,
    /// Where metrics are served, for `status`.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where the owner of the spec in force is published for `xnodectl ssh-keys`.
    pub owner_file: Option<PathBuf>,
    /// The nftables set to hold the ports the workloads here expose, if any.
    pub firewall: Option<crate::firewall::NftSet>,
    /// The API over the network, for `status`, when xnoded listens on TCP.
    pub remote: Option<xnode_api::node::RemoteStatus>,
    /// How many members past a mesh workload's owners fetch its closure ahead.
    pub standbys: usize,
}

/// How long a burst of unit changes may take before the pass it triggers.
const SETTLE: Duration = Duration::from_millis(300);

/// What a background task reports when it ends.
enum Done<U, N> {
    Applied(Box<apply::Finished<U, N>>),
    Watching(Watch),
    Converged(converge::Converged),
    Fenced,
    SpecFile(spec_file::Read),
    Push(Box<api::CheckedPush>),
    Realised(xnode_spec::SpecHash, BTreeMap<String, String>),
    FleetSpec(Box<fleet::Taken>),
    Fetched(libp2p::PeerId, u64, Result<serde_json::Value, String>),
    /// A mesh workload's closure fetched ahead (its roots), or why not.
    Held(String, BTreeSet<String>, Result<(), String>),
}

/// The loop's state.
pub struct Service<U, N> {
    units: Arc<U>,
    settings: Settings,
    metrics: Arc<Metrics>,
    state: watch::Receiver<State>,
    apply: apply::Applies<U, N>,
    /// The spec in force.
    current: Option<Arc<Validated>>,
    /// Its workloads whose store paths could not be had; `None` until known.
    not_realised: Option<BTreeMap<String, String>>,
    /// The units as last observed, and why not when that failed.
    observed: Result<Vec<ObservedUnit>, String>,
    /// Why the last apply stopped short, if it did.
    apply_error: Option<String>,
    /// Whether the units as last observed are as the spec in force wants them (judged
    /// when they are observed, not at every `status`).
    in_sync: bool,
    spec_file: spec_file::SpecFile,
    converge: converge::Converging,
    mesh: Option<mesh::MeshPart>,
    fleet: fleet::FleetPart,
    placed: watch::Sender<BTreeSet<String>>,
    tasks: JoinSet<Done<U, N>>,
    watchdog: Option<Watchdog>,
    /// systemd's notice of unit changes, and since when.
    watch: Option<Watch>,
    watched_since: Instant,
    background: Background,
    /// Health, usage, back-off and the firewall, kept beside the loop.
    beside: beside::Beside,
    /// Placement changed: the services this node provides are told anew.
    advertise: bool,
}

/// The tasks of the loop's own that must be noticed if they die.
#[derive(Debug, Default)]
struct Background {
    /// Getting systemd's notice of unit changes.
    watching: Option<tokio::task::Id>,
    /// Finding what of the spec in force cannot be realised, at start.
    realising: Option<tokio::task::Id>,
}

impl<U, N> Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// A loop over the agent's parts; with a mesh, the node joins it as soon as it has
    /// a spec. Nothing happens until [`Service::run`].
    pub fn new(
        agent: Agent<U, N>,
        settings: Settings,
        metrics: Arc<Metrics>,
        mesh: Option<(
            crate::mesh::Mesh,
            mpsc::UnboundedReceiver<xnode_mesh::node::Event>,
        )>,
    ) -> Self {
        let units = agent.units.clone();
        let state = agent.store.watch();
        let fleet = fleet::FleetPart::load(agent.store.dir());
        Service {
            units,
            spec_file: spec_file::SpecFile::new(settings.spec_file.clone()),
            settings,
            metrics,
            state,
            apply: apply::Applies::new(agent),
            current: None,
            not_realised: None,
            observed: Ok(Vec::new()),
            apply_error: None,
            in_sync: false,
            converge: converge::Converging::default(),
            mesh: mesh.map(mesh::MeshPart::new),
            fleet,
            placed: watch::channel(BTreeSet::new()).0,
            tasks: JoinSet::new(),
            watchdog: None,
            watch: None,
            watched_since: Instant::now(),
            background: Background::default(),
            beside: beside::Beside::new(),
            advertise: false,
        }
    }

    /// Runs until the command channel closes. The loop is ready (systemd is told) once
    /// it has taken up the generation in force.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, ready: impl FnOnce()) {
        self.start().await;
        self.beside.start(
            &self.units,
            &self.metrics,
            &self.placed,
            self.settings.firewall.clone(),
        );
        ready();
        self.watchdog = Watchdog::from_env();
        let mut file_tick = interval(self.settings.file_poll);
        let mut reconcile_tick = interval(self.settings.interval);
        let mut renew_tick = interval(xnode_mesh::fencing::RENEW_EVERY);
        loop {
            // Watch the units again when the connection that fed the watch is gone.
            if self
                .watch
                .as_ref()
                .is_some_and(|(_, task)| task.is_finished())
            {
                self.watch = None;
                // A watch that ends as soon as it is made is not made again at once.
                let brief = self.watched_since.elapsed() < Duration::from_secs(1);
                self.watch_units(if brief {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                });
            }
            if self.watch.is_none() && self.background.watching.is_none() {
                self.watch_units(Duration::ZERO);
            }
            let notify = self.watch.as_ref().map(|(n, _)| n.clone());
            let changed = async move {
                match notify {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let deadline = self.next_deadline();
            let mut live = self.beside.live.clone();
            let mut withdrawn = self.beside.withdrawn.clone();
            let mesh = self.mesh.as_mut().map(mesh::MeshPart::next);
            let mesh_event = async {
                match mesh {
                    Some(next) => next.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                event = mesh_event => self.on_mesh(event).await,
                () = changed => self.converge.soon(SETTLE),
                Ok(()) = live.changed() => self.liveness_changed().await,
                // Placement, after this turn, stops offering it (marked seen, or
                // every later turn would wake at once).
                Ok(()) = withdrawn.changed() => {
                    self.beside.withdrawn.borrow_and_update();
                }
                Some(done) = self.tasks.join_next_with_id() => self.on_done(done).await,
                _ = file_tick.tick() => self.read_spec_file(None),
                _ = reconcile_tick.tick() => {
                    self.follow_mesh().await;
                    self.realise_again();
                    self.converge.soon(Duration::ZERO);
                }
                _ = renew_tick.tick() => self.renew(),
                () = sleep_until(deadline) => {}
            }
            self.place(Instant::now());
            if std::mem::take(&mut self.advertise) {
                self.follow_mesh().await;
            }
            self.roll(Instant::now());
            self.maybe_converge();
            self.metrics.converged.set(i64::from(self.is_converged()));
        }
    }

    /// Takes up the generation in force (finishing one a crash interrupted), and looks
    /// at the spec file.
    async fn start(&mut self) {
        let lease = crate::lease::relay_path().map(|relay| crate::lease::unit_file(&relay));
        match lease {
            Ok(text) => match self.units.install(crate::lease::UNIT, &text).await {
                Ok(_) => {}
                Err(e) => error!("cannot install the lease unit; mesh workloads cannot start: {e}"),
            },
            Err(e) => error!("cannot find the lease relay beside xnoded: {e}"),
        }
        let state = self.state.borrow().clone();
        if let Some(n) = state.current {
            match self.apply.stored_spec(n).await {
                Ok(v) => {
                    let interrupted = state
                        .generations
                        .iter()
                        .any(|g| g.number == n && g.outcome == Outcome::Applying);
                    self.take_in_force(v.clone());
                    if interrupted {
                        info!(
                            generation = n,
                            "finishing generation {n}, whose apply was interrupted"
                        );
                        self.run_job(
                            apply::Job::Resume {
                                generation: n,
                                spec: v,
                            },
                            None,
                        );
                    }
                }
                Err(e) => error!(generation = n, "cannot take up generation {n}: {e}"),
            }
        }
        self.follow_mesh().await;
        self.check_realisable();
        self.read_spec_file(None);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let placement = self.mesh.as_ref().and_then(|m| m.next_decision());
        // A pass that cannot start yet (no spec, store paths not yet known) is asked
        // for again when what it needs arrives.
        let ready = self.target().is_some() && self.not_realised.is_some();
        let converge = self.converge.due().filter(|_| ready);
        [converge, placement, self.fleet.recheck]
            .into_iter()
            .flatten()
            .min()
    }

    /// Subscribes to systemd's unit changes beside the loop after `delay`, trying again
    /// every second while systemd cannot be reached.
    fn watch_units(&mut self, delay: Duration) {
        let units = self.units.clone();
        let handle = self.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            loop {
                match units.watch().await {
                    Ok(watch) => return Done::Watching(watch),
                    Err(e) => {
                        warn!("cannot watch systemd's units, trying again: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        self.background.watching = Some(handle.id());
    }

    async fn on_done(
        &mut self,
        done: Result<(tokio::task::Id, Done<U, N>), tokio::task::JoinError>,
    ) {
        let (id, done) = match done {
            Ok(done) => done,
            Err(e) => {
                error!("a task of the agent failed: {e}");
                let id = e.id();
                if self.apply.lost(id) {
                    self.fleet_move_lost();
                    self.recover_store().await;
                }
                self.converge.task_lost(id);
                self.spec_file_lost(id);
                if self.background.realising == Some(id) {
                    // Nothing known to be missing: what cannot be had fails its start.
                    self.not_realised = Some(BTreeMap::new());
                }
                if self.background.watching == Some(id) {
                    self.background.watching = None;
                }
                self.fetch_lost(id);
                return;
            }
        };
        match done {
            Done::Applied(finished) => self.applied(*finished).await,
            Done::Converged(c) => self.converged(c),
            Done::Fenced => {}
            Done::Watching(watch) => {
                self.background.watching = None;
                self.watch = Some(watch);
                self.watched_since = Instant::now();
                // Changes while there was no watch went unseen.
                self.converge.soon(Duration::ZERO);
            }
            Done::SpecFile(read) => self.spec_file_read(read),
            Done::Push(checked) => self.push_checked(*checked),
            Done::FleetSpec(taken) => self.fleet_taken(*taken),
            Done::Fetched(peer, generation, fetched) => self.fetched(peer, generation, fetched),
            Done::Held(name, roots, result) => self.held(id, &name, roots, result),
            // An older check, overtaken by one for the spec now in force.
            Done::Realised(..) if self.background.realising != Some(id) => {}
            Done::Realised(hash, missing) => self.realised(hash, missing),
        }
    }

    /// An apply task died without handing the state directory back: open it again, so
    /// the next apply finds the generations on disk.
    async fn recover_store(&mut self) {
        match Store::open(&self.apply.state_dir()).await {
            Ok(store) => {
                self.state = store.watch();
                self.apply.recover(store, self.units.clone());
            }
            Err(e) => error!("cannot open the state directory again; applies are off: {e}"),
        }
    }

    /// The spec that converge plans with: the one an apply brings while it runs.
    fn target(&self) -> Option<Arc<Validated>> {
        self.apply.target().or_else(|| self.current.clone())
    }

    fn count(&self, outcome: &Result<crate::deploy::Deployed, crate::deploy::Failed>) {
        let ended = match outcome {
            Ok(d) if d.rolled_back_to.is_some() => {
                self.metrics.failed_applies.inc();
                self.metrics.rollbacks.inc();
                "rolled_back"
            }
            Ok(d) if d.outcome != Outcome::Healthy => {
                self.metrics.failed_applies.inc();
                "unhealthy"
            }
            Ok(_) => "healthy",
            Err(_) => {
                self.metrics.failed_applies.inc();
                "failed"
            }
        };
        self.metrics
            .applies
            .get_or_create(&crate::metrics::ApplyLabel { outcome: ended })
            .inc();
        let current = self.state.borrow().current.unwrap_or(0);
        self.metrics
            .generation
            .set(i64::try_from(current).unwrap_or(i64::MAX));
    }

    fn log_outcome(outcome: &Result<crate::deploy::Deployed, crate::deploy::Failed>) {
        match outcome {
            Ok(d) => match &d.outcome {
                Outcome::Healthy => info!(
                    generation = d.generation,
                    "generation {} is healthy", d.generation
                ),
                Outcome::RolledBack { reason } => warn!(
                    generation = d.generation,
                    "generation {} was unhealthy and rolled back: {reason}", d.generation
                ),
                Outcome::Unhealthy { reason } => warn!(
                    generation = d.generation,
                    "generation {} is unhealthy: {reason}", d.generation
                ),
                Outcome::Applying => {}
            },
            Err(e) => error!("the apply failed: {e}"),
        }
    }
}

fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<U, N> Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// Takes `spec` as the spec in force, and publishes its owner: sshd asks
    /// `xnodectl ssh-keys` (as nobody, which cannot read the state directory) whom to
    /// let in as root, and it must be the owner of this spec, not of the spec file,
    /// which pushes and API applies leave as it was.
    pub(super) fn take_in_force(&mut self, spec: Validated) {
        if let Some(path) = &self.settings.owner_file
            && let Err(e) = owner_file::publish(path, spec.spec.node.owner.as_ref())
        {
            error!(
                "cannot publish the owner in {}, so it names none: root cannot log in over SSH until it is published: {e}",
                path.display()
            );
        }
        self.current = Some(Arc::new(spec));
        self.beside.spec.send_replace(self.current.clone());
    }
}
