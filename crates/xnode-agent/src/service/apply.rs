//! The apply job: one at a time, beside the loop. A request for a second one while it
//! runs is refused at once, with a sentence naming the generation being applied
//! (docs/api.md): the caller knows at once, and retries when `status` shows it done.
//! A spec file that changes meanwhile is not refused but taken in when the job ends.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::{Id, JoinSet};
use xnode_api::node::RolledBack;
use xnode_spec::Validated;

use super::{Done, Reply};
use crate::deploy::{Agent, Context, Deployed, Failed, Progress};
use crate::nix::Realise;
use crate::secrets::Secrets;
use crate::store::{Origin, Outcome, Source, Store};
use crate::units::Units;

/// What to apply.
pub(super) enum Job {
    /// A new spec.
    Deploy {
        spec: Validated,
        raw: Vec<u8>,
        origin: Origin,
        rollback: bool,
    },
    /// Finish the generation a crash interrupted.
    Resume { generation: u64, spec: Validated },
    /// Back to an earlier generation, by hand.
    Restore { to: u64 },
}

/// Who waits for a job's end, and how to tell them.
pub(super) enum Waiter {
    /// `xnodectl apply`: the outcome, rolled back or not.
    Apply(oneshot::Sender<Reply>),
    /// `xnodectl reload` (and `nixos-rebuild`): an error unless healthy.
    Reload(oneshot::Sender<Reply>),
    /// `xnodectl rollback`.
    Rollback(oneshot::Sender<Reply>, u64),
}

impl Waiter {
    /// Tells them the job could not start.
    pub(super) fn refuse(self, why: String) {
        match self {
            Waiter::Apply(r) | Waiter::Reload(r) | Waiter::Rollback(r, _) => {
                let _ = r.send(Reply::error(why));
            }
        }
    }

    /// Tells them how the job ended.
    pub(super) fn answer(self, outcome: &Result<Deployed, Failed>) {
        match (self, outcome) {
            (Waiter::Apply(r), Ok(d)) => {
                let _ = r.send(Reply::ok(super::api::applied(d)));
            }
            (Waiter::Reload(r), Ok(d)) => {
                let _ = r.send(match &d.outcome {
                    Outcome::Healthy => Reply::ok(super::api::applied(d)),
                    other => Reply::error(format!(
                        "generation {}: {}",
                        d.generation,
                        outcome_text(other)
                    )),
                });
            }
            (Waiter::Rollback(r, to), Ok(d)) => {
                let _ = r.send(Reply::ok(RolledBack {
                    generation: d.generation,
                    restored: to,
                }));
            }
            (w, Err(e)) => w.refuse(format!("the apply failed: {e}")),
        }
    }
}

/// An outcome in words.
pub(super) fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applying => "applying".into(),
        Outcome::Healthy => "healthy".into(),
        Outcome::RolledBack { reason } => format!("rolled back ({reason})"),
        Outcome::Unhealthy { reason } => format!("unhealthy ({reason})"),
    }
}

/// A job that ended, with the agent's parts handed back.
pub(super) struct Finished<U, N> {
    agent: Agent<U, N>,
    outcome: Result<Deployed, Failed>,
}

/// A job that runs.
struct Running {
    id: Id,
    /// The spec it brings, when known from the start.
    target: Option<Arc<Validated>>,
    /// The content hash of the spec file it applies, when it came from there.
    from_file: Option<String>,
    /// Where mesh workloads were placed when it began.
    placed: BTreeSet<String>,
    progress: watch::Receiver<Progress>,
    waiters: Vec<Waiter>,
}

/// The agent's parts, idle or lent to the job that runs.
pub(super) struct Applies<U, N> {
    idle: Option<Agent<U, N>>,
    running: Option<Running>,
    nix: N,
    secrets: Secrets,
    state_dir: PathBuf,
}

impl<U, N> Applies<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    pub(super) fn new(agent: Agent<U, N>) -> Self {
        Applies {
            nix: agent.nix.clone(),
            secrets: agent.secrets.clone(),
            state_dir: agent.store.dir().to_owned(),
            idle: Some(agent),
            running: None,
        }
    }

    /// A stored generation's spec (at start, before any job).
    pub(super) async fn stored_spec(&self, n: u64) -> Result<Validated, String> {
        let agent = self.idle.as_ref().ok_or("an apply runs")?;
        let raw = agent.store.spec(n).await.map_err(|e| e.to_string())?;
        xnode_spec::parse(&raw).map_err(|e| format!("not a valid spec: {e}"))
    }

    /// Why a new job cannot start now, in a sentence that names the one running.
    pub(super) fn busy(&self) -> Option<String> {
        let running = self.running.as_ref()?;
        let generation = running
            .progress
            .borrow()
            .generation
            .map_or("a new generation".to_owned(), |n| format!("generation {n}"));
        Some(format!(
            "{generation} is being applied; try again once it is done (`xnodectl status` shows its progress)"
        ))
    }

    /// Starts `job` unless one runs; then the waiter is told why not.
    pub(super) fn start(
        &mut self,
        job: Job,
        waiter: Option<Waiter>,
        previous: Option<Arc<Validated>>,
        placed: watch::Receiver<BTreeSet<String>>,
        tasks: &mut JoinSet<Done<U, N>>,
    ) {
        let (Some(mut agent), None) = (self.idle.take(), self.running.as_ref()) else {
            let why = self.busy().unwrap_or_else(|| {
                "applies are off: the state directory could not be opened again".into()
            });
            if let Some(w) = waiter {
                w.refuse(why);
            }
            return;
        };
        let (target, from_file) = match &job {
            Job::Deploy { spec, origin, .. } => (
                Some(Arc::new(spec.clone())),
                matches!(origin.source, Source::File { .. }).then(|| {
                    origin
                        .lineage
                        .node_hash
                        .clone()
                        .unwrap_or_else(|| spec.hash.to_string())
                }),
            ),
            Job::Resume { spec, .. } => (Some(Arc::new(spec.clone())), None),
            Job::Restore { .. } => (None, None),
        };
        let (progress, progress_rx) = watch::channel(Progress::default());
        let snapshot = placed.borrow().clone();
        let ctx = Context { placed, progress };
        let handle = tasks.spawn(async move {
            let previous = previous.as_deref().map(|v| &v.spec);
            let outcome = match job {
                Job::Deploy {
                    spec,
                    raw,
                    origin,
                    rollback,
                } => {
                    agent
                        .deploy(spec, &raw, origin, rollback, previous, &ctx)
                        .await
                }
                Job::Resume { generation, spec } => agent.resume(generation, spec, &ctx).await,
                Job::Restore { to } => agent.restore(to, previous, &ctx).await,
            };
            Done::Applied(Box::new(Finished { agent, outcome }))
        });
        self.running = Some(Running {
            id: handle.id(),
            target,
            from_file,
            placed: snapshot,
            progress: progress_rx,
            waiters: waiter.into_iter().collect(),
        });
    }

    /// Hands the agent back; the outcome and who waits for it.
    pub(super) fn finish(
        &mut self,
        finished: Finished<U, N>,
    ) -> (Result<Deployed, Failed>, Vec<Waiter>) {
        self.idle = Some(finished.agent);
        let waiters = self.running.take().map(|r| r.waiters).unwrap_or_default();
        (finished.outcome, waiters)
    }

    /// Whether the job with this id was the apply (it died: the agent is lost).
    pub(super) fn lost(&mut self, id: Id) -> bool {
        let lost = self.running.as_ref().is_some_and(|r| r.id == id);
        if lost && let Some(running) = self.running.take() {
            for w in running.waiters {
                w.refuse("the apply stopped with an internal error; see xnoded's log".into());
            }
        }
        lost
    }

    /// The state directory, opened again after the job that held it died.
    pub(super) fn recover(&mut self, store: Store, units: Arc<U>) {
        self.idle = Some(Agent {
            units,
            nix: self.nix.clone(),
            secrets: self.secrets.clone(),
            store,
        });
    }

    /// Adds a waiter to the job that applies the spec file with this hash, if one runs.
    pub(super) fn wait_for_file(&mut self, hash: &str, waiter: Waiter) -> Result<(), Waiter> {
        match &mut self.running {
            Some(r) if r.from_file.as_deref() == Some(hash) => {
                r.waiters.push(waiter);
                Ok(())
            }
            _ => Err(waiter),
        }
    }

    /// The spec the running job brings: the one a rollback puts back, once it does.
    pub(super) fn target(&self) -> Option<Arc<Validated>> {
        let running = self.running.as_ref()?;
        let back = running.progress.borrow().putting_back.clone();
        back.or_else(|| running.target.clone())
    }

    /// Where mesh workloads were placed when the running job began.
    pub(super) fn placed_at_start(&self) -> Option<&BTreeSet<String>> {
        self.running.as_ref().map(|r| &r.placed)
    }

    /// Whether an apply runs.
    pub(super) fn running(&self) -> bool {
        self.running.is_some()
    }

    pub(super) fn progress(&self) -> Option<Progress> {
        self.running.as_ref().map(|r| r.progress.borrow().clone())
    }

    /// The running job's progress as it goes on.
    pub(super) fn follow(&self) -> Option<watch::Receiver<Progress>> {
        self.running.as_ref().map(|r| r.progress.clone())
    }

    /// What readies a workload before it starts: Nix, and the node's secrets.
    pub(super) fn readiers(&self) -> (N, Secrets) {
        (self.nix.clone(), self.secrets.clone())
    }

    pub(super) fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// Starts a job over the spec in force, with the placement as it stands; a waiter
    /// is told at once if another job runs.
    pub(super) fn run_job(&mut self, job: Job, waiter: Option<Waiter>) {
        if let Some(why) = self.apply.busy() {
            if let Some(w) = waiter {
                w.refuse(why);
            }
            return;
        }
        let previous = self.current.clone();
        let placed = self.placed.subscribe();
        self.apply
            .start(job, waiter, previous, placed, &mut self.tasks);
    }

    /// A job ended: the spec it left in force is taken up, its waiters answered, and
    /// the spec file looked at again if it changed meanwhile.
    pub(super) async fn applied(&mut self, finished: Finished<U, N>) {
        let (outcome, waiters) = self.apply.finish(finished);
        Self::log_outcome(&outcome);
        self.fleet_applied(&outcome);
        self.count(&outcome);
        self.apply_error = outcome.as_ref().err().map(ToString::to_string);
        match &outcome {
            Ok(d) => {
                self.take_in_force(d.in_force.clone());
                self.not_realised = Some(d.not_realised.clone());
                if let Some(observed) = &d.observed {
                    let placed = self.placed.borrow().clone();
                    self.in_sync =
                        xnode_spec::plan::plan(&d.in_force.spec, observed, &placed).is_empty();
                    self.observed = Ok(observed.clone());
                }
            }
            Err(f) => {
                if let Some(v) = &f.in_force {
                    self.take_in_force(v.clone());
                    // What of it can be realised is found out again before anything
                    // converges to it or is offered.
                    self.not_realised = None;
                    self.check_realisable();
                }
            }
        }
        for w in waiters {
            w.answer(&outcome);
        }
        self.follow_mesh().await;
        self.converge.soon(std::time::Duration::ZERO);
        if self.spec_file.deferred() {
            self.read_spec_file(None);
        }
    }
}
