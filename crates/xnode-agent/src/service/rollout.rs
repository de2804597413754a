//! This node in the fleet spec's rollout: at every turn of the loop, what the members'
//! heartbeats say is weighed by `xnode_mesh::rollout`, a newer fleet spec a member
//! announces is fetched, and a move it decides is applied as a generation with its
//! health gate. What this node does is told to the mesh for the next heartbeat.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use xnode_api::fleet::RolloutStatus;
use xnode_mesh::report::{NodeHealth, Progress, Report};
use xnode_mesh::rollout::{self, Known, Member, Phase, Step};
use xnode_spec::plan::ActiveState;
use xnode_spec::unit::unit_name;

use super::Done;
use super::fleet::policy;
use crate::deploy::{Deployed, Failed};
use crate::metrics::PhaseLabel;
use crate::nix::Realise;
use crate::store::Outcome;
use crate::units::Units;

fn step_text(step: Option<&Step<libp2p::PeerId>>) -> String {
    match step {
        None => "no rollout".into(),
        Some(Step::Stay) => "runs what it should".into(),
        Some(Step::Move(g)) => format!("moving to fleet generation {g}"),
        Some(Step::Wait { for_, left }) => {
            let who: Vec<String> = for_.iter().map(ToString::to_string).collect();
            match left {
                Some(l) => format!(
                    "waits {:.0} s more for {} to stay healthy",
                    l.as_secs_f64(),
                    who.join(", ")
                ),
                None => format!("waits for {} to be healthy on it", who.join(", ")),
            }
        }
    }
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// This node's own progress, as its heartbeats say it.
    fn my_progress(&self, now: Instant) -> Progress {
        let f = &self.fleet;
        let newest = f.store.progress.newest;
        Progress {
            newest,
            running: self.fleet_running().min(newest),
            healthy_ms: f.healthy.map(|(_, since)| {
                u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX)
            }),
            failed: f.store.progress.failed,
            stable: f.store.progress.stable,
            conflict: f.conflict.as_ref().is_some_and(|(g, _, _)| *g == newest),
        }
    }

    /// One turn of the rollout: learn from the members, fetch what is newer, and move
    /// when it is this node's turn.
    pub(super) fn roll(&mut self, now: Instant) {
        self.track_health(now);
        let Some(view) = self
            .mesh
            .as_ref()
            .and_then(|m| m.view())
            .map(|v| v.aged(now.into_std()))
        else {
            return;
        };
        let members = self.rollout_members(&view, now);
        self.fetch_newer(&members);
        // A conflict holds only for the node spec and the fleet generation it was
        // found with.
        let here = (self.fleet.store.progress.newest, self.node_hash());
        if self
            .fleet
            .conflict
            .as_ref()
            .is_some_and(|(g, h, _)| (*g, h) != (here.0, &here.1))
        {
            self.fleet.conflict = None;
        }
        let before: Known = self.fleet.store.progress.into();
        let complete = view.quorate && members.len() >= view.voters;
        let known = rollout::known(before, &members, complete);
        if known != before {
            if known.failed > before.failed {
                warn!(
                    "fleet generation {} failed its health gate on a member: the rollout halts",
                    known.failed
                );
            }
            if known.stable > before.stable {
                info!(
                    "fleet generation {} runs healthy on every member",
                    known.stable
                );
            }
            self.fleet.store.progress = known.into();
            self.save_fleet_progress();
        }
        let newest = self.fleet.store.specs.get(&known.newest);
        let policy = policy(newest.map(|k| &k.spec.spec));
        let step = rollout::step(&view.me, &members, known, &policy);
        self.fleet.recheck = match &step {
            Step::Wait { left: Some(l), .. } => Some(now + *l + Duration::from_millis(50)),
            _ => None,
        };
        if let Step::Move(g) = step
            && view.quorate
            && self.fleet.moving.is_none()
            && self.apply.busy().is_none()
        {
            self.move_fleet(g);
        }
        self.fleet.step = Some(step);
        self.tell_report(now);
        self.count_rollout(known, &members);
    }

    /// The live members that report their progress (this node as it is now).
    pub(super) fn rollout_members(
        &self,
        view: &xnode_mesh::node::View,
        now: Instant,
    ) -> Vec<Member<libp2p::PeerId>> {
        let mine = self.my_progress(now);
        view.members
            .iter()
            .filter(|p| p.candidate.live)
            .filter_map(|p| {
                let progress = if p.candidate.peer == view.me {
                    mine.clone()
                } else {
                    p.report.as_ref()?.fleet.clone()
                };
                Some(Member {
                    peer: p.candidate.peer,
                    progress,
                })
            })
            .collect()
    }

    fn count_rollout(&self, known: Known, members: &[Member<libp2p::PeerId>]) {
        let m = &self.metrics;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        m.fleet_generation.set(gauge(self.fleet_running()));
        m.fleet_newest.set(gauge(known.newest));
        let (phase, done, taking_part) = rollout::summary(known, members);
        for p in [Phase::None, Phase::Done, Phase::RollingOut, Phase::Halted] {
            m.rollout_phase
                .get_or_create(&PhaseLabel { phase: p.name() })
                .set(i64::from(p == phase));
        }
        m.rollout_done.set(gauge(done as u64));
        m.rollout_members.set(gauge(taking_part as u64));
    }

    /// Starts the move to fleet generation `g`, unless it cannot run with the node
    /// spec (then nothing changes and the conflict is shown).
    fn move_fleet(&mut self, g: u64) {
        let node_hash = self.node_hash();
        let same = |x: Option<(u64, &String)>| x == Some((g, &node_hash));
        let failed_here = self.fleet.failed_here.as_ref().map(|(g, h)| (*g, h));
        let conflict = self.fleet.conflict.as_ref().map(|(g, h, _)| (*g, h));
        if same(failed_here) || same(conflict) {
            // Not again with the same node spec: each try is an apply, its gate and
            // a rollback.
            return;
        }
        if g != 0 && !self.fleet.store.specs.contains_key(&g) {
            // Not here (a node that joined after it): it stays where it is.
            return;
        }
        match self.fleet_job(g) {
            Ok(job) => {
                info!("moving to fleet generation {g}");
                self.fleet.conflict = None;
                self.fleet.moving = Some((g, node_hash));
                self.run_job(job, None);
                if self.apply.busy().is_none() {
                    // Applies are off: it did not start.
                    self.fleet.moving = None;
                }
            }
            Err(why) => {
                warn!("cannot run fleet generation {g} here, nothing changed: {why}");
                self.fleet.conflict = Some((g, node_hash, why));
            }
        }
    }

    fn node_hash(&self) -> String {
        let state = self.state.borrow();
        state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n))
            .map(|g| g.node_hash().to_owned())
            .unwrap_or_default()
    }

    /// Asks a member that announces a newer fleet spec for it (one at a time).
    fn fetch_newer(&mut self, members: &[Member<libp2p::PeerId>]) {
        let now = Instant::now();
        if self.fleet.fetching.is_some() {
            return;
        }
        self.fleet.shunned.retain(|_, until| *until > now);
        let newest = self.fleet.store.progress.newest;
        let shunned = &self.fleet.shunned;
        let Some(best) = members
            .iter()
            .filter(|m| m.progress.newest > newest && !shunned.contains_key(&m.peer))
            .max_by_key(|m| m.progress.newest)
        else {
            return;
        };
        let Ok(handle) = self.mesh_handle() else {
            return;
        };
        if best.peer == handle.peer_id() {
            return;
        }
        let (peer, generation) = (best.peer, best.progress.newest);
        self.fleet.fetching = Some(generation);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(handle.fetch_fleet_spec(peer, generation).await);
        });
        self.tasks.spawn(async move {
            let fetched = match rx.await {
                Ok(Ok(Ok(envelope))) => Ok(envelope),
                Ok(Ok(Err(why))) => Err(why),
                _ => Err("the mesh stopped".to_owned()),
            };
            Done::Fetched(peer, generation, fetched)
        });
    }

    /// A fetch ended: check what came (as one caught up on, outside the timestamp
    /// window), or try again later.
    pub(super) fn fetched(
        &mut self,
        peer: libp2p::PeerId,
        generation: u64,
        fetched: Result<serde_json::Value, String>,
    ) {
        match fetched {
            Ok(envelope) => {
                let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
                self.take_fleet_spec_from(peer, generation, bytes);
            }
            Err(why) => {
                warn!(%peer, "cannot fetch fleet spec generation {generation}: {why}");
                self.fleet.fetching = None;
                self.fleet
                    .shunned
                    .insert(peer, Instant::now() + super::fleet::FETCH_RETRY);
            }
        }
    }

    /// Whether this node runs its fleet generation healthy, and since when.
    fn track_health(&mut self, now: Instant) {
        let running = self.fleet_running();
        let gated = self.apply.busy().is_none() && {
            let state = self.state.borrow();
            state
                .current
                .and_then(|n| state.generations.iter().find(|g| g.number == n))
                .is_some_and(|g| g.outcome == Outcome::Healthy)
        };
        // Passed its gate, and none of the fleet's workloads has failed since.
        let healthy = gated && {
            let units: Vec<String> = self
                .fleet
                .store
                .specs
                .get(&running)
                .map(|k| k.spec.spec.workloads.keys().map(|w| unit_name(w)).collect())
                .unwrap_or_default();
            self.observed.as_ref().is_ok_and(|observed| {
                !observed
                    .iter()
                    .any(|u| u.active_state == ActiveState::Failed && units.contains(&u.name))
            })
        };
        self.fleet.healthy = match (healthy, self.fleet.healthy) {
            (false, _) => None,
            (true, Some((g, since))) if g == running => Some((g, since)),
            (true, _) => Some((running, now)),
        };
    }

    /// Tells the mesh how this node is doing, when that changed.
    fn tell_report(&mut self, now: Instant) {
        let mut fleet = self.my_progress(now);
        fleet.healthy_ms = None;
        let failed = match &self.observed {
            Ok(units) => units
                .iter()
                .filter(|u| u.active_state == ActiveState::Failed)
                .count(),
            Err(_) => 0,
        };
        // Read in place, not copied: this runs at every turn of the loop.
        let state = self.state.borrow();
        let current = state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n));
        let last_apply = state
            .generations
            .iter()
            .rev()
            .find(|g| !matches!(g.source, crate::store::Source::Rollback { .. }));
        let node = NodeHealth {
            generation: state.current.unwrap_or(0),
            spec: current
                .map(|g| {
                    let h = g.node_hash();
                    h.strip_prefix("sha256:")
                        .unwrap_or(h)
                        .chars()
                        .take(16)
                        .collect()
                })
                .unwrap_or_default(),
            converged: self.in_sync && self.apply.busy().is_none(),
            failed: u32::try_from(failed).unwrap_or(u32::MAX),
            applied: last_apply.map_or(0, |g| g.number),
            last_apply: last_apply
                .map(|g| outcome_word(&g.outcome).to_owned())
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        drop(state);
        let report = Report { fleet, node };
        let since = self.fleet.healthy.map(|(_, t)| t.into_std());
        let told = (report, since.is_some());
        if self.fleet.told.as_ref() == Some(&told) {
            return;
        }
        let Ok(handle) = self.mesh_handle() else {
            return;
        };
        if handle.try_set_report(told.0.clone(), since) {
            self.fleet.told = Some(told);
        }
    }

    /// An apply ended: if it was a move in the rollout that did not stay, the
    /// generation failed, and every member hears so.
    pub(super) fn fleet_applied(&mut self, outcome: &Result<Deployed, Failed>) {
        // A node spec refused for a name the fleet generation it left defined may go
        // in now.
        self.spec_file.retry_if_refused();
        let Some((g, node_hash)) = self.fleet.moving.take() else {
            return;
        };
        let passed =
            matches!(outcome, Ok(d) if d.outcome == Outcome::Healthy && d.rolled_back_to.is_none());
        if passed {
            info!("fleet generation {g} is healthy here");
            self.fleet.failed_here = None;
            return;
        }
        let why = match outcome {
            Ok(d) => super::apply::outcome_text(&d.outcome),
            Err(e) => e.to_string(),
        };
        self.fleet.failed_here = Some((g, node_hash));
        let p = &mut self.fleet.store.progress;
        if g == p.newest && g > p.failed {
            warn!("fleet generation {g} failed here ({why}): the rollout halts");
            p.failed = g;
            self.save_fleet_progress();
        } else {
            warn!(
                "the move to fleet generation {g} failed here ({why}); not tried again with this node spec"
            );
        }
    }

    /// The apply died: a move it made is tried again when the rollout says so.
    pub(super) fn fleet_move_lost(&mut self) {
        self.fleet.moving = None;
    }

    /// This node's part of `status`.
    pub(super) fn fleet_status(&self) -> RolloutStatus {
        let p = self.fleet.store.progress;
        RolloutStatus {
            newest: p.newest,
            running: self.fleet_running(),
            stable: p.stable,
            failed: p.failed,
            conflict: self.fleet.conflict.as_ref().map(|(_, _, why)| why.clone()),
            step: step_text(self.fleet.step.as_ref()),
        }
    }
}

fn outcome_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Applying => "applying",
        Outcome::Healthy => "healthy",
        Outcome::RolledBack { .. } => "rolled-back",
        Outcome::Unhealthy { .. } => "unhealthy",
    }
}
