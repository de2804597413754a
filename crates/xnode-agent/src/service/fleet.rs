//! The loop's side of the fleet spec: taking a signed one in (from the API, or fetched
//! from a member that announces a newer one), running it together with the node spec,
//! and moving this node through its rollout as `xnode_mesh::rollout` decides from the
//! members' heartbeats. Checks, fetches and writes run beside the loop.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libp2p::PeerId;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info, warn};
use xnode_mesh::report::Report;
use xnode_mesh::rollout::{Policy, Step};
use xnode_spec::Validated;
use xnode_spec::fleet_spec::signed::{self, Accepted};
use xnode_spec::fleet_spec::{FleetSpec, merge, node_part};

use super::apply::Job;
use super::{Done, Reply};
use crate::fleet_store::{self, FleetStore, Kept};
use crate::nix::Realise;
use crate::store::{Lineage, Origin, Source};
use crate::units::Units;

/// How long a member whose fleet spec could not be had (it did not answer, or sent
/// one that was refused) is not asked again: a member that announces a generation it
/// cannot give must not keep the node from fetching it from the others.
pub(super) const FETCH_RETRY: Duration = Duration::from_secs(300);

/// What the loop keeps of the fleet spec.
pub(super) struct FleetPart {
    pub(super) store: FleetStore,
    /// The generation being fetched.
    pub(super) fetching: Option<u64>,
    /// Members not asked again before then (their last fetch failed).
    pub(super) shunned: std::collections::HashMap<PeerId, Instant>,
    /// Why this node cannot run the newest fleet generation with its node spec, and
    /// for which (fleet generation, node spec hash).
    pub(super) conflict: Option<(u64, String, String)>,
    /// The fleet generation the apply under way moves to, and the node spec's hash.
    pub(super) moving: Option<(u64, String)>,
    /// The last move that failed here (fleet generation, node spec hash): not tried
    /// again until one of them changes.
    pub(super) failed_here: Option<(u64, String)>,
    /// The fleet generation this node runs healthy, and since when.
    pub(super) healthy: Option<(u64, Instant)>,
    /// The last step decided, for `status`.
    pub(super) step: Option<Step<PeerId>>,
    /// When to decide again though nothing new is heard.
    pub(super) recheck: Option<Instant>,
    /// What the mesh was last told.
    pub(super) told: Option<(Report, bool)>,
    /// The task that writes the progress.
    writer: Option<tokio::sync::watch::Sender<fleet_store::Progress>>,
}

impl FleetPart {
    pub(super) fn load(state_dir: &std::path::Path) -> Self {
        FleetPart {
            store: FleetStore::load(state_dir),
            fetching: None,
            shunned: Default::default(),
            conflict: None,
            moving: None,
            failed_here: None,
            healthy: None,
            step: None,
            recheck: None,
            told: None,
            writer: None,
        }
    }
}

/// A fleet spec checked beside the loop.
pub(super) struct Taken {
    /// Who it came from: none for the local API.
    from: Option<PeerId>,
    verdict: Result<Accepted, String>,
    reply: Option<oneshot::Sender<Reply>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn policy(spec: Option<&FleetSpec>) -> Policy {
    let r = spec.map(FleetSpec::rollout).unwrap_or_default();
    Policy {
        max_parallel: r.max_parallel,
        canary: r.canary,
        min_healthy_time: Duration::from_millis(r.min_healthy_time.as_millis()),
        auto_revert: r.auto_revert,
    }
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// The fleet generation the generation in force holds (0: none).
    pub(super) fn fleet_running(&self) -> u64 {
        let state = self.state.borrow();
        state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n))
            .and_then(|g| g.fleet)
            .unwrap_or(0)
    }

    fn running_fleet_spec(&self) -> Result<Option<Arc<Kept>>, String> {
        match self.fleet_running() {
            0 => Ok(None),
            g => self
                .fleet
                .store
                .specs
                .get(&g)
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "the fleet spec of generation {g}, which this node runs, is no longer kept"
                    )
                }),
        }
    }

    /// The job that applies a node spec (from the file, the API or a push) with the
    /// workloads of the fleet generation this node runs; or why they cannot run
    /// together (then nothing changes: the copy already running stays).
    pub(super) fn node_job(
        &self,
        spec: Validated,
        raw: Vec<u8>,
        source: Source,
        rollback: bool,
    ) -> Result<Job, String> {
        let Some(kept) = self.running_fleet_spec()? else {
            let origin = source.into();
            return Ok(Job::Deploy {
                spec,
                raw,
                origin,
                rollback,
            });
        };
        let node: Value = serde_json::to_value(&spec.spec).unwrap_or_default();
        let (value, merged) = merge(&node, &kept.spec.spec).map_err(|c| {
            format!(
                "{c} (the fleet spec's generation {} runs here); nothing changed",
                self.fleet_running()
            )
        })?;
        Ok(Job::Deploy {
            spec: merged,
            raw: serde_json::to_vec_pretty(&value).unwrap_or_default(),
            origin: Origin {
                source,
                lineage: Lineage {
                    fleet: Some(self.fleet_running()),
                    node_hash: Some(spec.hash.to_string()),
                },
            },
            rollback,
        })
    }

    /// A node spec as it would run here: with the fleet spec's workloads.
    pub(super) fn with_fleet(&self, spec: &Validated) -> Result<Validated, String> {
        let Some(kept) = self.running_fleet_spec()? else {
            return Ok(spec.clone());
        };
        let node = serde_json::to_value(&spec.spec).unwrap_or_default();
        merge(&node, &kept.spec.spec)
            .map(|(_, v)| v)
            .map_err(|c| c.to_string())
    }

    /// The job that moves this node to fleet generation `g` (0: none), keeping its
    /// node spec.
    pub(super) fn fleet_job(&self, g: u64) -> Result<Job, String> {
        let current = self.current.as_ref().ok_or("this node has no spec yet")?;
        let running = self.running_fleet_spec()?;
        let effective = serde_json::to_value(&current.spec).unwrap_or_default();
        let node = node_part(&effective, running.as_ref().map(|k| &k.spec.spec));
        let node_hash = {
            let state = self.state.borrow();
            state
                .current
                .and_then(|n| state.generations.iter().find(|x| x.number == n))
                .map_or_else(|| current.hash.to_string(), |x| x.node_hash().to_owned())
        };
        let (value, spec) = match g {
            0 => {
                let v = xnode_spec::parse_value(&node).map_err(|e| e.to_string())?;
                (node, v)
            }
            g => {
                let kept =
                    self.fleet.store.specs.get(&g).ok_or_else(|| {
                        format!("the fleet spec of generation {g} is not here yet")
                    })?;
                merge(&node, &kept.spec.spec).map_err(|c| c.to_string())?
            }
        };
        Ok(Job::Deploy {
            spec,
            raw: serde_json::to_vec_pretty(&value).unwrap_or_default(),
            origin: Origin {
                source: Source::Fleet { generation: g },
                lineage: Lineage {
                    fleet: Some(g),
                    node_hash: Some(node_hash),
                },
            },
            rollback: true,
        })
    }

    /// `xnodectl fleet apply`: an owner-signed fleet spec, checked beside the loop as
    /// one just published (within the timestamp window).
    pub(super) fn fleet_apply(&mut self, envelope: Value, reply: oneshot::Sender<Reply>) {
        let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
        self.take_fleet_spec(None, bytes, Some(reply));
    }

    /// Checks a fleet spec beside the loop: one from a member (`from`, asked for
    /// generation `asked`) as one caught up on, one from the API as one just published.
    fn take_fleet_spec(
        &mut self,
        from: Option<(PeerId, u64)>,
        bytes: Vec<u8>,
        reply: Option<oneshot::Sender<Reply>>,
    ) {
        let fresh = from.is_none();
        let owner = self.current.as_ref().and_then(|c| c.spec.node.owner);
        let last = self.fleet.store.progress.newest;
        let dir = self.fleet.store.dir().to_owned();
        self.tasks.spawn(async move {
            let checked = tokio::task::spawn_blocking(move || {
                let receiver = signed::Receiver {
                    owner: owner.as_ref(),
                    last_generation: last,
                    now: now_secs(),
                    fresh,
                };
                let a = signed::accept(&bytes, &receiver).map_err(|e| e.to_string())?;
                match from {
                    Some((_, asked)) if a.envelope.generation != asked => Err(format!(
                        "it sent generation {}, not the {asked} it announced",
                        a.envelope.generation
                    )),
                    _ => Ok(a),
                }
            })
            .await
            .unwrap_or_else(|e| Err(format!("checking the fleet spec failed: {e}")));
            let verdict = match checked {
                Ok(a) => {
                    let envelope = serde_json::to_value(&a.envelope).unwrap_or_default();
                    fleet_store::write_spec(&dir, a.envelope.generation, &envelope)
                        .await
                        .map(|()| a)
                        .map_err(|e| format!("cannot keep the fleet spec: {e}"))
                }
                Err(why) => Err(why),
            };
            Done::FleetSpec(Box::new(Taken {
                from: from.map(|(peer, _)| peer),
                verdict,
                reply,
            }))
        });
    }

    /// A fleet spec checked and written: the newest from now on.
    pub(super) fn fleet_taken(&mut self, taken: Taken) {
        let from = taken
            .from
            .map_or("this node's API".to_owned(), |p| p.to_string());
        if taken.from.is_some() {
            self.fleet.fetching = None;
        }
        let newest = self.fleet.store.progress.newest;
        let verdict = taken.verdict.and_then(|a| {
            if a.envelope.generation <= newest {
                Err(format!(
                    "generation {} is not newer than {newest}, the fleet spec in force",
                    a.envelope.generation
                ))
            } else {
                Ok(a)
            }
        });
        let a = match verdict {
            Ok(a) => a,
            Err(why) => {
                warn!(from, "fleet spec refused: {why}");
                self.count_fleet_spec("refused");
                if let Some(peer) = taken.from {
                    self.fleet
                        .shunned
                        .insert(peer, Instant::now() + FETCH_RETRY);
                }
                if let Some(r) = taken.reply {
                    let _ = r.send(Reply::error(why));
                }
                return;
            }
        };
        let g = a.envelope.generation;
        let hash = a.spec.hash.to_string();
        info!(from, generation = g, %hash, "fleet spec generation {g} accepted");
        self.count_fleet_spec("accepted");
        self.fleet.store.progress.newest = g;
        let needed: Vec<u64> = self
            .state
            .borrow()
            .generations
            .iter()
            .filter_map(|x| x.fleet)
            .collect();
        let dropped = self.fleet.store.insert(
            g,
            Kept {
                envelope: Arc::new(serde_json::to_value(&a.envelope).unwrap_or_default()),
                spec: a.spec,
            },
            &needed,
        );
        self.save_fleet_progress();
        let dir = self.fleet.store.dir().to_owned();
        tokio::spawn(async move { fleet_store::delete(&dir, dropped).await });
        self.serve_fleet_specs();
        if let Some(r) = taken.reply {
            let _ = r.send(Reply::ok(format!(
                "accepted, fleet generation {g} ({hash}); it rolls out now: `xnodectl fleet status` shows how far"
            )));
        }
    }

    fn count_fleet_spec(&self, outcome: &'static str) {
        self.metrics
            .fleet_specs
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc();
    }

    /// A fleet spec a member sent, checked as one caught up on.
    pub(super) fn take_fleet_spec_from(&mut self, peer: PeerId, asked: u64, bytes: Vec<u8>) {
        self.take_fleet_spec(Some((peer, asked)), bytes, None);
    }

    /// Hands the progress to the one task that writes it, which writes the latest
    /// (so an older value never lands after a newer one).
    pub(super) fn save_fleet_progress(&mut self) {
        let progress = self.fleet.store.progress;
        if let Some(tx) = &self.fleet.writer {
            tx.send_replace(progress);
            return;
        }
        let (tx, mut rx) = tokio::sync::watch::channel(progress);
        let dir = self.fleet.store.dir().to_owned();
        tokio::spawn(async move {
            loop {
                let progress = *rx.borrow_and_update();
                if let Err(e) = fleet_store::write_progress(&dir, progress).await {
                    error!("cannot keep the fleet rollout's progress: {e}");
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        self.fleet.writer = Some(tx);
    }

    /// The mesh node is new (or new again): it is told everything afresh.
    pub(super) fn fleet_rejoined(&mut self) {
        self.fleet.told = None;
        self.serve_fleet_specs();
    }

    /// Hands the mesh the envelopes to serve to members.
    pub(super) fn serve_fleet_specs(&self) {
        let (Ok(handle), served) = (self.mesh_handle(), self.fleet.store.served()) else {
            return;
        };
        tokio::spawn(async move {
            let _ = handle.serve_fleet_specs(served).await;
        });
    }
}
