//! The agent's one event loop: it owns the state and the connection to systemd, and
//! reacts to the spec file, to API requests and to a periodic timer. Each pass re-reads
//! its inputs and converges (level-triggered, as Talos' controllers do), so a missed
//! event only delays convergence until the next pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use xnode_api::{Reply, Request};
use xnode_spec::Validated;
use xnode_spec::plan::{ActiveState, Plan, Reason, plan};
use xnode_spec::unit::unit_name;
use xnode_systemd::ApplyOptions;

use std::sync::Arc;

use crate::deploy::{Agent, Deployed};
use crate::mesh::Mesh;
use crate::metrics::{Metrics, OutcomeLabel, StateLabel};
use crate::nix::Realise;
use crate::placement::{self, Placement, PlacementStatus};
use crate::store::{Outcome, Source};
use crate::units::{Units, Watch};
use xnode_mesh::node::Event as MeshEvent;
use xnode_spec::push;

/// A request from the API, with where to send the reply.
pub type Command = (Request, oneshot::Sender<Reply>);

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
}

/// Units that keep failing wait longer and longer before the next start.
#[derive(Debug, Default)]
struct Backoff {
    units: BTreeMap<String, (u32, tokio::time::Instant)>,
}

/// How long a burst of unit changes may take before the pass it triggers.
const SETTLE: Duration = Duration::from_millis(300);

const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Backoff {
    /// Drops the starts of failed units still waiting; records the ones let through.
    fn filter(&mut self, plan: &mut Plan, now: tokio::time::Instant) {
        let failed = Reason::NotRunning(ActiveState::Failed);
        plan.actions.retain(|a| {
            if a.reason != failed {
                return true;
            }
            let (n, next) = self.units.entry(a.unit.clone()).or_insert((0, now));
            if now < *next {
                return false;
            }
            *n += 1;
            let wait = BACKOFF_MIN
                .saturating_mul(1 << (*n).min(6))
                .min(BACKOFF_MAX);
            *next = now + wait;
            true
        });
    }

    fn forget_running(&mut self, running: impl Fn(&str) -> bool) {
        self.units.retain(|unit, _| !running(unit));
    }
}

/// The loop's state.
pub struct Service<U, N> {
    agent: Agent<U, N>,
    settings: Settings,
    current: Option<Validated>,
    seen_file: Option<(SystemTime, u64)>,
    file_error: Option<String>,
    not_realised: BTreeMap<String, String>,
    last_error: Option<String>,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    mesh: Option<Mesh>,
    mesh_events: Option<mpsc::Receiver<MeshEvent>>,
    placement: Placement,
}

/// What `status` answers.
#[derive(Debug, Serialize)]
struct Status {
    node: Option<String>,
    generation: Option<xnode_api::Generation>,
    last_good: Option<u64>,
    converged: bool,
    spec_file: SpecFile,
    last_error: Option<String>,
    metrics_address: Option<String>,
    mesh: Option<MeshStatus>,
    workloads: Vec<WorkloadStatus>,
}

#[derive(Debug, Serialize)]
struct MeshStatus {
    #[serde(flatten)]
    node: Option<xnode_mesh::node::Status>,
    members: Vec<xnode_mesh::node::MemberView>,
    services: Vec<xnode_mesh::node::Provider>,
    placement: Option<PlacementStatus>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct SpecFile {
    path: String,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct WorkloadStatus {
    name: String,
    unit: String,
    active_state: String,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Applied {
    generation: u64,
    outcome: Outcome,
    rolled_back_to: Option<u64>,
    actions: Vec<String>,
    refused: Vec<String>,
    not_realised: BTreeMap<String, String>,
}

impl From<&Deployed> for Applied {
    fn from(d: &Deployed) -> Applied {
        Applied {
            generation: d.generation,
            outcome: d.outcome.clone(),
            rolled_back_to: d.rolled_back_to,
            actions: d
                .plan
                .actions
                .iter()
                .map(|a| format!("{} {}: {}", a.op, a.unit, a.reason))
                .collect(),
            refused: d.plan.refused.iter().map(|r| r.reason.clone()).collect(),
            not_realised: d.not_realised.clone(),
        }
    }
}

impl<U: Units, N: Realise> Service<U, N> {
    /// A loop over an agent; call [`Service::start`] then [`Service::run`]. With a
    /// mesh, the node joins it as soon as it has a spec.
    pub fn new(
        agent: Agent<U, N>,
        settings: Settings,
        metrics: Arc<Metrics>,
        mesh: Option<(Mesh, mpsc::Receiver<MeshEvent>)>,
    ) -> Self {
        let (mesh, mesh_events) = match mesh {
            Some((m, events)) => (Some(m), Some(events)),
            None => (None, None),
        };
        Service {
            mesh,
            mesh_events,
            agent,
            settings,
            current: None,
            seen_file: None,
            file_error: None,
            not_realised: BTreeMap::new(),
            last_error: None,
            backoff: Backoff::default(),
            metrics,
            placement: Placement::default(),
        }
    }

    /// Brings the node to its current generation after a start (or a crash): loads the
    /// generation in force, takes in a spec file that changed meanwhile, converges.
    pub async fn start(&mut self) {
        if let Some(n) = self.agent.store.state().current {
            match self
                .agent
                .store
                .spec(n)
                .await
                .map(|raw| xnode_spec::parse(&raw))
            {
                Ok(Ok(v)) => {
                    let interrupted = self
                        .agent
                        .store
                        .state()
                        .generations
                        .iter()
                        .any(|g| g.number == n && g.outcome == Outcome::Applying);
                    if interrupted {
                        info!(
                            generation = n,
                            "finishing generation {n}, whose apply was interrupted"
                        );
                        match self.agent.resume(n, &v).await {
                            Ok(outcome) => info!(generation = n, "generation {n}: {outcome:?}"),
                            Err(e) => error!(generation = n, "cannot finish generation {n}: {e}"),
                        }
                        self.current = self.reload_current().await;
                    } else {
                        self.current = Some(v);
                    }
                }
                Ok(Err(e)) => error!(
                    generation = n,
                    "the current generation is not a valid spec: {e}"
                ),
                Err(e) => error!(generation = n, "cannot read the current generation: {e}"),
            }
        }
        if let Some(current) = &self.current {
            // A restarted agent must not start what it could not realise before.
            self.not_realised = self.agent.unrealisable(&current.spec).await;
        }
        self.check_spec_file().await;
        self.reconcile().await;
    }

    /// Runs until the command channel closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut file_tick = tokio::time::interval(self.settings.file_poll);
        let mut reconcile_tick = tokio::time::interval(self.settings.interval);
        file_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch: Option<Watch> = None;
        let mut mesh_events = self.mesh_events.take();
        let mut claim_tick = tokio::time::interval(placement::CLAIM / 4);
        claim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Watch the units again when the connection that fed the watch is gone.
            if watch.as_ref().is_none_or(|(_, task)| task.is_finished()) {
                watch = self.agent.units.watch().await.ok();
            }
            let notify = watch.as_ref().map(|(n, _)| n.clone());
            let changed = async move {
                match notify {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let mesh_event = async {
                match mesh_events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some((Request::MeshPush { push }, reply)) => self.push(push, reply).await,
                    Some((request, reply)) => {
                        let answer = self.handle(request).await;
                        let _ = reply.send(answer);
                    }
                    None => return,
                },
                Some(event) = mesh_event => match event {
                    MeshEvent::Push { from, push, reply } => {
                        let verdict = self.accept_push(&from.to_string(), &push).await;
                        let _ = reply.send(verdict);
                    }
                    // A member's death comes as `Member` at once; `Placement` follows at
                    // the next heartbeat with everything else that moved.
                    MeshEvent::Placement | MeshEvent::Member { .. } => {
                        if self.place().await {
                            self.converge().await;
                        }
                    }
                },
                () = changed => {
                    // Let a burst of changes (a restart is several) settle first.
                    tokio::time::sleep(SETTLE).await;
                    self.reconcile().await;
                }
                _ = claim_tick.tick(), if self.placement.claiming() => {
                    if self.place().await {
                        self.converge().await;
                    }
                }
                _ = file_tick.tick() => self.check_spec_file().await,
                _ = reconcile_tick.tick() => self.reconcile().await,
            }
        }
    }

    /// Takes in the spec file when it changed: a valid one is deployed, an invalid one
    /// is reported and changes nothing.
    async fn check_spec_file(&mut self) {
        let path = &self.settings.spec_file;
        let stamp = match tokio::fs::metadata(path).await {
            Ok(m) => (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.file_error = Some(format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        if self.seen_file == Some(stamp) {
            return;
        }
        self.seen_file = Some(stamp);
        let raw = match tokio::fs::read(path).await {
            Ok(raw) => raw,
            Err(e) => {
                self.file_error = Some(format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let v = match xnode_spec::parse(&raw) {
            Ok(v) => v,
            Err(invalid) => {
                error!(file = %path.display(), "the spec file is rejected, nothing changed: {invalid}");
                self.file_error = Some(invalid.to_string());
                return;
            }
        };
        self.file_error = None;
        // The file is taken in when its content changes: not when it still holds what
        // was last taken from it, even if an API apply has moved on since.
        let hash = v.hash.to_string();
        let last_from_file = self
            .agent
            .store
            .state()
            .generations
            .iter()
            .rev()
            .find(|g| matches!(g.source, Source::File { .. }))
            .map(|g| g.hash.as_str());
        if self.current.as_ref().is_some_and(|c| c.hash == v.hash)
            || last_from_file == Some(hash.as_str())
        {
            return;
        }
        info!(file = %path.display(), hash = %v.hash, "the spec file changed; applying it");
        let source = Source::File {
            path: path.display().to_string(),
        };
        self.deploy(v, &raw, source, true).await;
    }

    async fn deploy(
        &mut self,
        v: Validated,
        raw: &[u8],
        source: Source,
        rollback: bool,
    ) -> Option<Deployed> {
        let result = self.agent.deploy(&v, raw, source, rollback).await;
        self.count(&result);
        match result {
            Ok(d) => {
                match &d.outcome {
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
                }
                self.current = match d.rolled_back_to {
                    Some(_) => self.reload_current().await,
                    None => Some(v),
                };
                self.not_realised = d.not_realised.clone();
                self.last_error = None;
                self.follow_mesh().await;
                if self.place().await {
                    self.converge().await;
                }
                Some(d)
            }
            Err(e) => {
                error!("the apply failed, nothing changed: {e}");
                self.last_error = Some(e.to_string());
                None
            }
        }
    }

    fn count(&self, result: &Result<Deployed, crate::deploy::DeployError>) {
        match result {
            Ok(d) if d.rolled_back_to.is_some() => {
                self.metrics.failed_applies.inc();
                self.metrics.rollbacks.inc();
            }
            Ok(d) if d.outcome != Outcome::Healthy => {
                self.metrics.failed_applies.inc();
            }
            Ok(_) => {}
            Err(_) => {
                self.metrics.failed_applies.inc();
            }
        }
        let current = self.agent.store.state().current.unwrap_or(0);
        self.metrics
            .generation
            .set(i64::try_from(current).unwrap_or(i64::MAX));
    }

    /// The mesh node in line with the current spec (its services and labels at once
    /// after an apply, not at the next pass).
    async fn follow_mesh(&mut self) {
        if let (Some(mesh), Some(current)) = (&mut self.mesh, &self.current) {
            mesh.follow(&current.spec).await;
        }
    }

    /// Decides the mesh workloads from the mesh's view; true when what runs here
    /// changes.
    async fn place(&mut self) -> bool {
        let before = self.placement.placed();
        let handle = self.mesh.as_ref().and_then(|m| m.handle()).cloned();
        let wanted = self
            .current
            .as_ref()
            .map(|c| placement::wanted(&c.spec))
            .unwrap_or_default();
        match handle {
            Some(h) if !wanted.is_empty() => match h.view().await {
                Ok(view) => {
                    self.placement
                        .update(&view, &wanted, std::time::Instant::now());
                }
                Err(_) => self.placement.clear(),
            },
            _ => self.placement.clear(),
        }
        let placed = self.placement.placed();
        self.agent.mesh_placed = placed.clone();
        placed != before
    }

    /// Tells the mesh what this node offers and runs, and counts the failovers that
    /// completed.
    async fn report_workloads(&mut self, observed: &[xnode_spec::plan::ObservedUnit]) {
        let Some(current) = &self.current else { return };
        let wanted = placement::wanted(&current.spec);
        let running = placement::running(&wanted, observed);
        for f in self.placement.completed(&running) {
            info!(
                workload = f.workload,
                "failover: {} runs here, {:.2} s after its last runner was last heard",
                f.workload,
                f.took.as_secs_f64()
            );
            self.metrics.failovers.inc();
            self.metrics.failover_seconds.observe(f.took.as_secs_f64());
        }
        if let Some(h) = self.mesh.as_ref().and_then(|m| m.handle()) {
            let offers = placement::offers(&wanted, &self.not_realised);
            let _ = h.set_workloads(offers, running).await;
        }
    }

    async fn reload_current(&self) -> Option<Validated> {
        let n = self.agent.store.state().current?;
        let raw = self.agent.store.spec(n).await.ok()?;
        xnode_spec::parse(&raw).ok()
    }

    /// One pass: the units back to the current generation, failing units backed off.
    async fn reconcile(&mut self) {
        let started = std::time::Instant::now();
        // Level-triggered like the rest: a mesh node that failed to start, or stopped,
        // is started again here.
        self.follow_mesh().await;
        self.place().await;
        self.converge().await;
        self.metrics.reconciles.inc();
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    async fn converge(&mut self) {
        let Some(current) = &self.current else { return };
        let observed = match self.agent.units.observe().await {
            Ok(o) => o,
            Err(e) => {
                warn!("cannot read systemd's units: {e}");
                self.last_error = Some(e.to_string());
                return;
            }
        };
        self.metrics.units.clear();
        for u in &observed {
            let label = StateLabel {
                state: u.active_state.to_string(),
            };
            self.metrics.units.get_or_create(&label).inc();
        }
        self.backoff.forget_running(|unit| {
            observed
                .iter()
                .any(|u| u.name == unit && u.active_state.is_running())
        });
        let mut plan = plan(&current.spec, &observed, &self.agent.mesh_placed);
        crate::deploy::hold_back(&mut plan, &self.not_realised);
        self.backoff.filter(&mut plan, tokio::time::Instant::now());
        // What runs here before the plan changes it: a member waiting on a stop here
        // must not see it gone before it is.
        self.report_workloads(&observed).await;
        if plan.actions.is_empty() {
            return;
        }
        info!(
            actions = plan.actions.len(),
            "the node drifted from its spec; converging"
        );
        match self
            .agent
            .units
            .apply(&plan, &ApplyOptions::default())
            .await
        {
            Ok(_) => self.last_error = None,
            Err(e) => {
                warn!("converging failed: {e}");
                self.last_error = Some(e.to_string());
            }
        }
        // Said at once, not at the next pass: a member may be waiting for a stop here.
        if let Ok(observed) = self.agent.units.observe().await {
            self.report_workloads(&observed).await;
        }
    }

    async fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Status => self.status().await,
            Request::History => Reply::ok(self.agent.store.state()),
            Request::Plan { spec } => match self.parse_request_spec(&spec) {
                Ok((v, _)) => match self.agent.units.observe().await {
                    Ok(observed) => Reply::ok(plan(&v.spec, &observed, &self.agent.mesh_placed)),
                    Err(e) => Reply::error(e.to_string()),
                },
                Err(reply) => reply,
            },
            Request::Apply { spec, no_rollback } => match self.parse_request_spec(&spec) {
                Ok((v, raw)) => match self.deploy(v, &raw, Source::Api, !no_rollback).await {
                    Some(d) => Reply::ok(Applied::from(&d)),
                    None => Reply::error(self.last_error.clone().unwrap_or_default()),
                },
                Err(reply) => reply,
            },
            Request::Rollback => self.rollback().await,
            Request::Logs { workload, lines } => self.logs(workload, lines).await,
            Request::MeshPeers => match self.mesh_handle() {
                Ok(h) => h
                    .members()
                    .await
                    .map_or_else(|e| Reply::error(e.to_string()), Reply::ok),
                Err(reply) => reply,
            },
            Request::MeshServices { service } => match self.mesh_handle() {
                Ok(h) => h
                    .providers(service)
                    .await
                    .map_or_else(|e| Reply::error(e.to_string()), Reply::ok),
                Err(reply) => reply,
            },
            Request::MeshPush { .. } => Reply::error("a push is answered by the loop"),
        }
    }

    fn mesh_handle(&self) -> Result<xnode_mesh::node::Handle, Reply> {
        let Some(mesh) = &self.mesh else {
            return Err(Reply::error("this node runs without the mesh (--no-mesh)"));
        };
        mesh.handle().cloned().ok_or_else(|| {
            Reply::error(match &mesh.error {
                Some(e) => format!("this node is not in the mesh: {e}"),
                None => "this node has not joined the mesh yet (it has no spec)".into(),
            })
        })
    }

    /// Carries an owner's signed push to the node it names: this one, or a member, whose
    /// answer comes back without holding up this loop.
    async fn push(&mut self, push: serde_json::Value, reply: oneshot::Sender<Reply>) {
        let target = push.get("node").and_then(|n| n.as_str()).map(str::to_owned);
        let own = self.current.as_ref().map(|c| c.spec.node.name.clone());
        let Some(target) = target else {
            let _ = reply.send(Reply::error("the push names no node"));
            return;
        };
        if Some(&target) == own.as_ref() {
            let bytes = serde_json::to_vec(&push).unwrap_or_default();
            let answer = match self.accept_push("this node's API", &bytes).await {
                Ok(done) => Reply::ok(done),
                Err(why) => Reply::error(why),
            };
            let _ = reply.send(answer);
            return;
        }
        match self.mesh_handle() {
            Ok(handle) => {
                tokio::spawn(async move {
                    let answer = match handle.push(target, push).await {
                        Ok(Ok(done)) => Reply::ok(done),
                        Ok(Err(why)) => Reply::error(why),
                        Err(e) => Reply::error(e.to_string()),
                    };
                    let _ = reply.send(answer);
                });
            }
            Err(answer) => {
                let _ = reply.send(answer);
            }
        }
    }

    /// A push for this node: checked against its owner and its last push, then applied
    /// like any other spec. Every refusal is logged with its reason.
    async fn accept_push(&mut self, from: &str, bytes: &[u8]) -> Result<String, String> {
        let Some(current) = &self.current else {
            warn!(
                from,
                "push rejected: this node has no spec yet, so no owner"
            );
            return Err("this node has no spec yet, so no owner to accept a push from".into());
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let receiver = push::Receiver {
            current: &current.spec,
            last_generation: self.agent.store.state().last_push,
            now,
        };
        let push::Accepted {
            push: envelope,
            spec: v,
        } = match push::accept(bytes, &receiver) {
            Ok(accepted) => accepted,
            Err(why) => {
                warn!(from, "push rejected: {why}");
                self.metrics
                    .pushes
                    .get_or_create(&OutcomeLabel {
                        outcome: "rejected",
                    })
                    .inc();
                return Err(why.to_string());
            }
        };
        info!(from, generation = envelope.generation, hash = %v.hash, "push accepted; applying it");
        self.metrics
            .pushes
            .get_or_create(&OutcomeLabel {
                outcome: "accepted",
            })
            .inc();
        let raw = serde_json::to_vec_pretty(&envelope.spec).unwrap_or_default();
        let source = Source::Mesh {
            peer: from.to_owned(),
            push_generation: envelope.generation,
        };
        match self.deploy(v, &raw, source, true).await {
            Some(d) => Ok(format!(
                "generation {}: {}",
                d.generation,
                outcome_text(&d.outcome)
            )),
            None => Err(self.last_error.clone().unwrap_or_default()),
        }
    }

    fn parse_request_spec(&self, spec: &serde_json::Value) -> Result<(Validated, Vec<u8>), Reply> {
        let raw = serde_json::to_vec_pretty(spec).map_err(|e| Reply::error(e.to_string()))?;
        xnode_spec::parse(&raw)
            .map(|v| (v, raw))
            .map_err(|invalid| Reply::error(invalid.to_string()))
    }

    async fn logs(&self, workload: String, lines: usize) -> Reply {
        let known = self
            .current
            .as_ref()
            .is_some_and(|c| c.spec.workloads.contains_key(&workload));
        if !known {
            return Reply::error(format!("the current spec has no workload {workload:?}"));
        }
        let unit = unit_name(&workload);
        match tokio::task::spawn_blocking(move || crate::logs::tail(&unit, lines)).await {
            Ok(Ok(lines)) => Reply::ok(lines),
            Ok(Err(e)) => Reply::error(e),
            Err(e) => Reply::error(format!("reading the journal failed: {e}")),
        }
    }

    /// Back to the last good generation, or the good one before it when the current
    /// generation is the last good.
    async fn rollback(&mut self) -> Reply {
        let state = self.agent.store.state();
        let target = state
            .generations
            .iter()
            .rev()
            .filter(|g| Some(g.number) != state.current && g.outcome == Outcome::Healthy)
            .map(|g| g.number)
            .next();
        let Some(target) = target else {
            return Reply::error("there is no earlier healthy generation to roll back to");
        };
        match self.agent.restore(target).await {
            Ok(n) => {
                self.metrics.rollbacks.inc();
                self.current = self.reload_current().await;
                info!(generation = n, "rolled back to generation {target}");
                Reply::ok(serde_json::json!({"generation": n, "restored": target}))
            }
            Err(e) => Reply::error(e.to_string()),
        }
    }

    async fn status(&self) -> Reply {
        let state = self.agent.store.state();
        let generation = state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n))
            .cloned();
        let observed = self.agent.units.observe().await;
        let mut workloads = Vec::new();
        let mut converged = generation
            .as_ref()
            .is_some_and(|g| g.outcome == Outcome::Healthy);
        if let (Some(current), Ok(observed)) = (&self.current, &observed) {
            converged &= plan(&current.spec, observed, &self.agent.mesh_placed).is_empty();
            for (name, w) in &current.spec.workloads {
                let unit = unit_name(name);
                let state = observed
                    .iter()
                    .find(|u| u.name == unit)
                    .map(|u| u.active_state.to_string());
                let elsewhere = w.placement != xnode_spec::Placement::Local
                    && !self.agent.mesh_placed.contains(name);
                workloads.push(WorkloadStatus {
                    name: name.clone(),
                    unit,
                    active_state: state
                        .unwrap_or_else(|| if elsewhere { "elsewhere" } else { "absent" }.into()),
                    error: self.not_realised.get(name).cloned(),
                });
            }
        }
        Reply::ok(Status {
            node: self.current.as_ref().map(|c| c.spec.node.name.clone()),
            generation,
            last_good: state.last_good,
            converged: converged && observed.is_ok(),
            spec_file: SpecFile {
                path: self.settings.spec_file.display().to_string(),
                error: self.file_error.clone(),
            },
            last_error: self
                .last_error
                .clone()
                .or_else(|| observed.err().map(|e| e.to_string())),
            metrics_address: self.settings.metrics_address.map(|a| a.to_string()),
            mesh: match &self.mesh {
                None => None,
                Some(mesh) => Some(match mesh.handle() {
                    Some(h) => MeshStatus {
                        node: h.status().await.ok(),
                        members: h.members().await.unwrap_or_default(),
                        services: h.providers(None).await.unwrap_or_default(),
                        placement: self.placement.status(),
                        error: mesh.error.clone(),
                    },
                    None => MeshStatus {
                        node: None,
                        members: Vec::new(),
                        services: Vec::new(),
                        placement: None,
                        error: mesh.error.clone(),
                    },
                }),
            },
            workloads,
        })
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applying => "applying".into(),
        Outcome::Healthy => "healthy".into(),
        Outcome::RolledBack { reason } => format!("rolled back ({reason})"),
        Outcome::Unhealthy { reason } => format!("unhealthy ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_lets_a_failed_unit_start_then_makes_it_wait() {
        let spec = xnode_spec::parse(&serde_json::to_vec(&json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {"command": ["/bin/w"]}}})).unwrap()).unwrap().spec;
        let file = xnode_spec::unit::render("w", &spec.workloads["w"]);
        let failed = [xnode_spec::plan::ObservedUnit {
            name: unit_name("w"),
            active_state: ActiveState::Failed,
            file: Some(file),
        }];
        let mut b = Backoff::default();
        let t0 = tokio::time::Instant::now();
        let mut p = plan(&spec, &failed, &Default::default());
        b.filter(&mut p, t0);
        assert_eq!(p.actions.len(), 1, "first start goes through");
        let mut p = plan(&spec, &failed, &Default::default());
        b.filter(&mut p, t0 + Duration::from_secs(1));
        assert!(p.actions.is_empty(), "the next waits");
        let mut p = plan(&spec, &failed, &Default::default());
        b.filter(&mut p, t0 + BACKOFF_MAX);
        assert_eq!(p.actions.len(), 1, "after the wait it goes through again");
        b.forget_running(|_| true);
        assert!(b.units.is_empty());
    }
}
