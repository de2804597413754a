//! The loop's side of the mesh: where placement puts mesh workloads (decided anew on
//! every view the mesh publishes, and when a claim or a lost member's lease runs out),
//! the stops that fencing needs at once, the lease renewed while the node is quorate,
//! and what this node tells the mesh it offers and runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};
use xnode_mesh::fencing::Majority;
use xnode_mesh::node::{Event, Handle, View};
use xnode_systemd::ApplyOptions;

use super::Done;
use crate::lease::Renewer;
use crate::nix::Realise;
use crate::placement::{self, Placement};
use crate::units::Units;
use xnode_mesh::placement::Wanted;

/// Something from the mesh for the loop.
pub(super) enum Input {
    /// An event: a push for this node, or a member's change.
    Event(Option<Event>),
    /// A new view (or the node stopped).
    View,
}

/// The mesh node and what the loop keeps of it.
pub(super) struct MeshPart {
    mesh: crate::mesh::Mesh,
    events: mpsc::UnboundedReceiver<Event>,
    views: Option<watch::Receiver<View>>,
    majority: Option<watch::Receiver<Majority>>,
    placement: Placement,
    renewer: Option<Renewer>,
    /// What this node last told the mesh it offers and runs.
    told: (BTreeMap<String, String>, BTreeSet<String>),
    /// The closures this node last told the mesh it holds.
    told_closures: Option<BTreeSet<String>>,
    /// The mesh workloads' closures held here, and fetching them ahead.
    pub(super) holding: super::holding::Holding,
    marks: Marks,
}

/// The marks without which systemd starts no mesh unit ([`xnode_spec::unit::PLACED_DIR`]):
/// set before placement's start, removed before its fencing stop.
struct Marks(PathBuf);

impl Marks {
    /// The marks of an agent that starts afresh: none, whatever a previous one left.
    fn reset(dir: &str) -> Self {
        let dir = PathBuf::from(dir);
        let made = match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::create_dir_all(&dir),
        };
        if let Err(e) = made {
            error!(
                "cannot make {}; no mesh workload can start here: {e}",
                dir.display()
            );
        }
        Marks(dir)
    }

    fn set(&self, workload: &str) {
        let path = self.0.join(workload);
        if path.exists() {
            return;
        }
        let made = std::fs::create_dir_all(&self.0).and_then(|()| std::fs::write(&path, b""));
        if let Err(e) = made {
            error!("cannot mark {workload} as placed here, so systemd will not start it: {e}");
        }
    }

    fn remove(&self, workload: &str) {
        match std::fs::remove_file(self.0.join(workload)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                error!("cannot remove the placement mark of {workload}: {e}");
            }
            _ => {}
        }
    }
}

impl MeshPart {
    pub(super) fn new((mesh, events): (crate::mesh::Mesh, mpsc::UnboundedReceiver<Event>)) -> Self {
        let renewer = Renewer::new(crate::lease::SOCKET)
            .map_err(|e| warn!("cannot renew the lease: {e}"))
            .ok();
        MeshPart {
            mesh,
            events,
            views: None,
            majority: None,
            placement: Placement::default(),
            renewer,
            told: Default::default(),
            told_closures: None,
            holding: Default::default(),
            marks: Marks::reset(xnode_spec::unit::PLACED_DIR),
        }
    }

    /// The next event or view.
    pub(super) async fn next(&mut self) -> Input {
        let views = self.views.as_mut();
        let changed = async {
            match views {
                Some(v) => v.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = self.events.recv() => Input::Event(event),
            ok = changed => {
                if !ok {
                    self.views = None;
                }
                Input::View
            }
        }
    }

    pub(super) fn handle(&self) -> Result<Handle, String> {
        self.mesh
            .handle()
            .cloned()
            .ok_or_else(|| match &self.mesh.error {
                Some(e) => format!("this node is not in the mesh: {e}"),
                None => "this node has not joined the mesh yet (it has no spec)".into(),
            })
    }

    pub(super) fn error(&self) -> Option<String> {
        self.mesh.error.clone()
    }

    /// The latest view, if the node has joined.
    pub(super) fn view(&self) -> Option<View> {
        self.views.as_ref().map(|v| v.borrow().clone())
    }

    pub(super) fn placement_status(
        &self,
        withdrawn: &BTreeSet<String>,
    ) -> Option<xnode_api::mesh::Placement> {
        self.placement.status(withdrawn)
    }

    /// When to decide again though nothing new is heard: a claim or a lease running
    /// out, or a fetch ahead whose wait is over.
    pub(super) fn next_decision(&self) -> Option<Instant> {
        let now = std::time::Instant::now();
        let claim = self.placement.next_decision(now);
        // One due already was started, or cannot be: only a later one wakes the loop.
        let fetch = self.holding.next_due().filter(|t| *t > now);
        claim.into_iter().chain(fetch).min().map(Instant::from_std)
    }

    /// Renews the lease when the node may hold it.
    fn renew(&self, now: std::time::Instant) {
        let may = self
            .majority
            .as_ref()
            .is_some_and(|m| m.borrow().renews(now));
        if let (true, Some(renewer)) = (may, &self.renewer) {
            renewer.renew();
        }
    }

    /// Tells the mesh what this node offers (all it can realise of `wanted`); whether
    /// the mesh has it.
    fn offer(
        &mut self,
        wanted: &[Wanted],
        not_realised: &BTreeMap<String, String>,
        withdrawn: &BTreeSet<String>,
    ) -> bool {
        let offers = placement::offers(wanted, not_realised, withdrawn);
        let running = self.told.1.clone();
        self.tell(offers, running)
    }

    /// Tells the mesh the closures this node holds, when they changed.
    fn tell_closures(&mut self, closures: BTreeSet<String>) {
        if self.told_closures.as_ref() == Some(&closures) {
            return;
        }
        if self
            .mesh
            .handle()
            .is_some_and(|h| h.try_set_closures(closures.clone()))
        {
            self.told_closures = Some(closures);
        }
    }

    /// Whether the mesh has (or was just handed) these offers and runs.
    fn tell(&mut self, offers: BTreeMap<String, String>, running: BTreeSet<String>) -> bool {
        if self.told == (offers.clone(), running.clone()) {
            return true;
        }
        let sent = self
            .mesh
            .handle()
            .is_some_and(|h| h.try_set_workloads(offers.clone(), running.clone()));
        if sent {
            self.told = (offers, running);
        }
        sent
    }
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// A mesh event: a push is checked beside the loop; anything else is news for
    /// placement, which is decided after every turn of the loop.
    pub(super) async fn on_mesh(&mut self, input: Input) {
        match input {
            Input::Event(Some(Event::Push { from, push, reply })) => {
                self.check_push(from.to_string(), push, reply);
            }
            Input::Event(Some(Event::Member { .. })) | Input::View => {}
            Input::Event(None) => warn!("the mesh's events stopped"),
        }
    }

    /// The mesh node in line with the spec in force (its services and labels at once
    /// after an apply, not at the next pass).
    pub(super) async fn follow_mesh(&mut self) {
        let (Some(mesh), Some(current)) = (&mut self.mesh, &self.current) else {
            return;
        };
        let withdrawn: std::collections::BTreeSet<String> = self
            .beside
            .live
            .borrow()
            .iter()
            .filter(|(_, l)| !l.healthy)
            .map(|(name, _)| name.clone())
            .collect();
        let placed = self.placed.borrow().clone();
        mesh.mesh.follow(&current.spec, &placed, &withdrawn).await;
        if let Some(h) = mesh.mesh.handle()
            && mesh.views.as_ref().is_none_or(|v| v.has_changed().is_err())
        {
            mesh.views = Some(h.views());
            mesh.majority = Some(h.majority());
            mesh.told = Default::default();
            mesh.told_closures = None;
            self.fleet_rejoined();
        }
    }

    /// A workload's probe started or stopped passing: its services join or leave the
    /// mesh's answers, and the metrics follow.
    pub(super) async fn liveness_changed(&mut self) {
        let health = self.beside.live.borrow_and_update().clone();
        self.metrics.healthy.clear();
        for (name, l) in &health {
            let label = crate::metrics::WorkloadLabel {
                workload: name.clone(),
            };
            self.metrics
                .healthy
                .get_or_create(&label)
                .set(i64::from(l.healthy));
        }
        self.follow_mesh().await;
    }

    /// Pings systemd's watchdog and renews the lease: both prove this loop turns.
    pub(super) fn renew(&mut self) {
        let now = Instant::now();
        if let Some(w) = &mut self.watchdog {
            w.ping_if_due(now);
        }
        if let Some(mesh) = &self.mesh {
            mesh.renew(now.into_std());
        }
    }

    /// Decides the mesh workloads from the latest view. What placement takes away is
    /// stopped at once, beside anything else under way; what it adds is started by
    /// the next converge.
    pub(super) fn place(&mut self, now: Instant) {
        let wanted = self
            .target()
            .map(|spec| placement::wanted(&spec.spec))
            .unwrap_or_default();
        let withdrawn = self.beside.withdrawn.borrow().clone();
        let closures = self
            .target()
            .zip(self.not_realised.as_ref())
            .map(|(spec, missing)| placement::closures(&spec.spec, missing));
        let running_here = match &self.observed {
            Ok(units) => placement::running(&wanted, units),
            Err(_) => BTreeSet::new(),
        };
        let standbys = self.settings.standbys;
        let Some(mesh) = &mut self.mesh else { return };
        mesh.holding.retain(&wanted);
        // Not offered while its closure cannot be had, so placement looks elsewhere.
        let failing = mesh.holding.failing(now.into_std());
        let missing = self.not_realised.as_ref().map(|m| {
            let mut missing = m.clone();
            missing.extend(failing);
            missing
        });
        // The mesh hears at once what the spec this node heads for offers (once it is
        // known what of it can be realised): a new one as its apply begins (so
        // placement can put its new mesh workloads here while the gate waits), the one
        // a rollback puts back as soon as it does. Until the mesh has taken that in
        // (its channel was full), placement decides with what this node still offers
        // of what the mesh has: it drops what it no longer offers, and claims nothing
        // the others cannot know it offers.
        let told = missing
            .as_ref()
            .is_none_or(|missing| mesh.offer(&wanted, missing, &withdrawn));
        if let Some(local) = closures {
            // Within the heartbeat's bound (or members would refuse it), what mesh
            // workloads need first.
            let closures = mesh
                .holding
                .roots()
                .into_iter()
                .chain(local)
                .take(xnode_mesh::message::MAX_CLOSURES)
                .collect();
            mesh.tell_closures(closures);
        }
        let mut offers = mesh.told.0.clone();
        if !told && let Some(missing) = &missing {
            let now = placement::offers(&wanted, missing, &withdrawn);
            offers.retain(|w, hash| now.get(w) == Some(hash));
        }
        match (&mesh.views, wanted.is_empty()) {
            (Some(views), false) => {
                let mut view = views.borrow().clone();
                // This node as it has told the mesh, not as the mesh has published it
                // yet: an apply that changes a mesh workload tells the new definition
                // as it begins, and deciding on the old one meanwhile would stop the
                // workload here as one this node cannot run.
                if let Some(me) = view
                    .members
                    .iter_mut()
                    .find(|m| m.candidate.peer == view.me)
                {
                    me.candidate.offers = offers;
                }
                mesh.placement.update(&view, &wanted, now.into_std());
                let to_hold = placement::to_hold(&view, &wanted, standbys);
                mesh.holding.should_hold(&to_hold, now.into_std());
                if let Some(w) = mesh.holding.next(&wanted, now.into_std()) {
                    let w = w.clone();
                    self.fetch_ahead(w);
                }
            }
            _ => {
                mesh.placement.clear();
                mesh.holding.should_hold(&BTreeSet::new(), now.into_std());
            }
        }
        let Some(mesh) = &mut self.mesh else { return };
        mesh.holding.remember_due(&wanted);
        // A workload comes here once its closure has: one running here has it.
        let mut placed = mesh.placement.placed();
        placed.retain(|name| {
            running_here.contains(name)
                || wanted
                    .iter()
                    .find(|w| &w.name == name)
                    .is_none_or(|w| mesh.holding.holds(w))
        });
        let before = self.placed.borrow().clone();
        if placed == before {
            return;
        }
        let gone: BTreeSet<String> = before.difference(&placed).cloned().collect();
        let added: Vec<&String> = placed.difference(&before).collect();
        // Marked before anything can start them, unmarked before they are stopped.
        for w in &added {
            mesh.marks.set(w);
        }
        for w in &gone {
            mesh.marks.remove(w);
        }
        if !added.is_empty() {
            let names: Vec<&str> = added.iter().map(|s| s.as_str()).collect();
            info!("placement puts {} on this node", names.join(", "));
        }
        // Placement starts and stops them, not their failures: no backoff.
        self.converge.forget(placed.symmetric_difference(&before));
        self.placed.send_replace(placed);
        self.advertise = true;
        self.in_sync = false;
        if !gone.is_empty() {
            self.fence(gone);
        }
        self.converge.soon(std::time::Duration::ZERO);
    }

    /// Stops the units of mesh workloads placement took away, without waiting for
    /// anything else the agent does (an apply, a converge).
    fn fence(&mut self, gone: BTreeSet<String>) {
        // Every one, not only those seen running: a start may be under way that no
        // observation has seen yet. Stopping a unit that is down changes nothing.
        let plan = placement::stops(&gone);
        let seen: Vec<&str> = plan
            .actions
            .iter()
            .filter(|a| match &self.observed {
                Ok(units) => units
                    .iter()
                    .any(|u| u.name == a.unit && u.active_state.is_running()),
                Err(_) => true,
            })
            .map(|a| a.workload.as_str())
            .collect();
        if !seen.is_empty() {
            info!(
                "placement moved {} off this node; stopping it now",
                seen.join(", ")
            );
        }
        let units = self.units.clone();
        self.tasks.spawn(async move {
            if let Err(e) = units.apply(&plan, &ApplyOptions::default()).await {
                warn!("a fencing stop failed; the next converge pass stops them again: {e}");
            }
            Done::Fenced
        });
    }

    /// Tells the mesh what this node offers and runs, and counts the failovers that
    /// completed.
    pub(super) fn report_workloads(&mut self) {
        let (Some(spec), Ok(observed), Some(mesh)) =
            (self.target(), &self.observed, &mut self.mesh)
        else {
            return;
        };
        let wanted = placement::wanted(&spec.spec);
        let running = placement::running(&wanted, observed);
        for f in mesh.placement.completed(&running) {
            info!(
                workload = f.workload,
                "failover: {} runs here, {:.2} s after its last runner was last heard",
                f.workload,
                f.took.as_secs_f64()
            );
            self.metrics.failovers.inc();
            self.metrics.failover_seconds.observe(f.took.as_secs_f64());
        }
        // Until it is known what can be realised, the offers stay as they were.
        let offers = match &self.not_realised {
            Some(missing) => placement::offers(&wanted, missing, &self.beside.withdrawn.borrow()),
            None => mesh.told.0.clone(),
        };
        mesh.tell(offers, running);
        // A mark that could not be made is tried again at every pass.
        for w in self.placed.borrow().iter() {
            mesh.marks.set(w);
        }
    }
}
