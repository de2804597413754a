//! Drift repair: a task that plans the spec in force against what systemd runs and
//! carries the plan out, one at a time, level-triggered (each pass re-reads
//! everything). A unit the agent starts again waits longer each time it goes down
//! again soon, whatever made it stop; one its restart policy leaves down after it
//! ended by itself is not started (the planner's rule, docs/spec.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::Id;
use tokio::time::Instant;
use tracing::{info, warn};
use xnode_spec::plan::{Action, ObservedUnit, Op, Plan, Reason, plan};
use xnode_spec::{Placement, Spec, Validated};

use super::Done;
use crate::deploy::{Phase, Progress, hold_back};
use crate::gate::Gated;
use crate::metrics::StateLabel;
use crate::nix::Realise;
use crate::units::Units;

const BACKOFF_MIN: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Units the agent starts again wait longer and longer before the next start, while
/// they keep going down within their last wait.
#[derive(Debug, Clone, Default)]
pub(super) struct Backoff {
    units: BTreeMap<String, (u32, Instant)>,
}

impl Backoff {
    /// Drops the starts of not-running units still waiting; records the ones let
    /// through. The first start of a unit goes at once, the next after 10 s, 20 s, …
    /// up to 5 minutes. Returns when the first one held back may go.
    fn filter(&mut self, plan: &mut Plan, now: Instant) -> Option<Instant> {
        let mut retry: Option<Instant> = None;
        plan.actions.retain(|a| {
            if !matches!(a.reason, Reason::NotRunning(_)) {
                return true;
            }
            let (n, next) = self.units.entry(a.unit.clone()).or_insert((0, now));
            if now < *next {
                let wait = next.saturating_duration_since(now);
                info!(
                    unit = a.unit,
                    "{} keeps going down; starting it again in {} s",
                    a.unit,
                    wait.as_secs()
                );
                retry = Some(retry.map_or(*next, |r| r.min(*next)));
                return false;
            }
            *n += 1;
            let wait = BACKOFF_MIN
                .saturating_mul(1 << ((*n).min(6) - 1))
                .min(BACKOFF_MAX);
            *next = now + wait;
            true
        });
        retry
    }

    /// Forgets the units that are up past their last wait: they recovered.
    fn forget_recovered(&mut self, observed: &[ObservedUnit], now: Instant) {
        self.units.retain(|unit, (_, next)| {
            let up = observed
                .iter()
                .any(|u| &u.name == unit && u.active_state.is_running());
            !(up && now >= *next)
        });
    }
}

/// The converge task's side of the loop.
#[derive(Debug, Default)]
pub(super) struct Converging {
    running: Option<Id>,
    due: Option<Instant>,
    backoff: Backoff,
    /// Units whose backoff ends while a pass runs with its own copy.
    forgotten: BTreeSet<String>,
}

impl Converging {
    /// Asks for a pass after `delay` (sooner if one is already asked for).
    pub(super) fn soon(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// When the next pass is due, unless one runs (it is started when that ends).
    pub(super) fn due(&self) -> Option<Instant> {
        self.due.filter(|_| self.running.is_none())
    }

    /// Units the agent itself stopped or starts for placement: what they do next is
    /// no sign that they keep failing.
    pub(super) fn forget<'a>(&mut self, workloads: impl IntoIterator<Item = &'a String>) {
        for w in workloads {
            let unit = xnode_spec::unit::unit_name(w);
            self.backoff.units.remove(&unit);
            if self.running.is_some() {
                self.forgotten.insert(unit);
            }
        }
    }

    /// The pass with this id died.
    pub(super) fn task_lost(&mut self, id: Id) {
        if self.running == Some(id) {
            self.running = None;
            self.soon(Duration::from_secs(1));
        }
    }
}

/// What a pass found and did.
pub(super) struct Converged {
    observed: Result<Vec<ObservedUnit>, String>,
    /// Whether the units, as last observed, are as the spec wants them.
    in_sync: bool,
    backoff: Backoff,
    /// When a start held back by its backoff may go.
    retry: Option<Instant>,
    took: Duration,
}

/// What a pass may touch while an apply runs: the mesh workloads whose placement
/// moved since the apply began; of those the apply itself brings or changes, only the
/// stops (starting them is the apply's, stopping them is never wrong), until its gate
/// has let them go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scope {
    pub(super) moved: BTreeSet<String>,
    pub(super) the_applys: BTreeSet<String>,
    /// The apply's own that its gate no longer waits on (passed, moved away, or
    /// placed here after it stopped looking): placement may bring them back, and
    /// then only a pass starts them.
    pub(super) let_go: BTreeSet<String>,
}

impl Scope {
    fn allows(&self, a: &Action) -> bool {
        let w = &a.workload;
        if self.the_applys.contains(w) {
            self.let_go.contains(w) || (self.moved.contains(w) && a.op == Op::Stop)
        } else {
            self.moved.contains(w)
        }
    }
}

/// Of `the_applys`, those its gate no longer waits on: it has let go of any that is
/// not waiting or failed (an absent one placed here late may be started by both, which
/// systemd makes one start). Before the gate, none: the apply writes their files.
fn gate_let_go(progress: &Progress, the_applys: &BTreeSet<String>) -> BTreeSet<String> {
    if progress.phase != Phase::Gating || progress.putting_back.is_some() {
        return BTreeSet::new();
    }
    the_applys
        .iter()
        .filter(|w| {
            !matches!(
                progress.workloads.get(*w),
                Some(Gated::Waiting { .. } | Gated::Unhealthy { .. })
            )
        })
        .cloned()
        .collect()
}

/// Drops what would start a mesh workload placement no longer puts here: the plan was
/// made with what it said when the pass began.
fn still_placed(plan: &mut Plan, spec: &Spec, placed: &BTreeSet<String>) {
    plan.actions.retain(|a| {
        let mesh = spec
            .workloads
            .get(&a.workload)
            .is_some_and(|w| w.placement != Placement::Local);
        let starts = matches!(a.op, Op::Start | Op::Restart | Op::Reload);
        !(mesh && starts && !placed.contains(&a.workload))
    });
}

/// An apply running beside a pass: the pass does what its scope allows, and nothing
/// once a rollback has made the apply head for another spec than the pass's.
pub(super) struct Beside {
    scope: Scope,
    apply: watch::Receiver<Progress>,
}

impl Beside {
    fn heads_elsewhere(&self, spec: &Validated) -> bool {
        let back = &self.apply.borrow().putting_back;
        back.as_ref().is_some_and(|b| b.hash != spec.hash)
    }
}

/// One pass: observe, plan (what the apply beside it allows, if one runs), hold back
/// what cannot be realised and what waits out its backoff, apply, observe again.
async fn pass<U: Units>(
    units: Arc<U>,
    spec: Arc<Validated>,
    placed: watch::Receiver<BTreeSet<String>>,
    hold: BTreeMap<String, String>,
    beside: Option<Beside>,
    mut backoff: Backoff,
) -> Converged {
    let started = std::time::Instant::now();
    let done = |observed, in_sync, backoff, retry| Converged {
        observed,
        in_sync,
        backoff,
        retry,
        took: started.elapsed(),
    };
    let observed = match units.observe().await {
        Ok(o) => o,
        Err(e) => {
            let why = format!("cannot read systemd's units: {e}");
            return done(Err(why), false, backoff, None);
        }
    };
    let now = Instant::now();
    backoff.forget_recovered(&observed, now);
    let snapshot = placed.borrow().clone();
    let mut plan = plan(&spec.spec, &observed, &snapshot);
    let in_sync = plan.is_empty();
    hold_back(&mut plan, &hold);
    if let Some(b) = &beside {
        plan.actions.retain(|a| b.scope.allows(a));
    }
    let held = backoff.filter(&mut plan, now);
    still_placed(&mut plan, &spec.spec, &placed.borrow());
    if beside.as_ref().is_some_and(|b| b.heads_elsewhere(&spec)) {
        // Placement's stops are right whatever spec the node heads for.
        plan.actions.retain(|a| a.reason == Reason::NotPlacedHere);
    }
    if plan.actions.is_empty() {
        return done(Ok(observed), in_sync, backoff, held);
    }
    info!(
        actions = plan.actions.len(),
        "the node drifted from its spec; converging"
    );
    if let Err(e) = units
        .apply(&plan, &crate::units::apply_options(&spec.spec))
        .await
    {
        warn!("converging failed: {e}");
        return done(Err(format!("converging failed: {e}")), false, backoff, held);
    }
    let after = units
        .observe()
        .await
        .map_err(|e| format!("cannot read systemd's units: {e}"));
    let in_sync = after
        .as_ref()
        .is_ok_and(|o| xnode_spec::plan::plan(&spec.spec, o, &snapshot).is_empty());
    done(after, in_sync, backoff, held)
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// Starts the pass that is due, unless one runs or the spec's store paths are not
    /// known yet. While an apply runs, a pass touches only the mesh workloads whose
    /// placement moved since the apply began and that the apply does not change; the
    /// rest is the apply's.
    pub(super) fn maybe_converge(&mut self) {
        let (Some(due), Some(spec), Some(mut hold)) = (
            self.converge.due(),
            self.target(),
            self.not_realised.clone(),
        ) else {
            return;
        };
        if due > Instant::now() {
            return;
        }
        let placed = self.placed.borrow().clone();
        let progress = self.apply.progress();
        if let Some(p) = &progress {
            hold.extend(p.held_back.clone());
        }
        let scope = self.apply.placed_at_start().map(|before| {
            let the_applys: BTreeSet<String> = self
                .current
                .as_ref()
                .map(|c| {
                    crate::deploy::late_mesh(&spec.spec, Some(&c.spec), &BTreeSet::new(), &hold)
                })
                .unwrap_or_default()
                .into_iter()
                .collect();
            let let_go = progress
                .as_ref()
                .map(|p| gate_let_go(p, &the_applys))
                .unwrap_or_default();
            Scope {
                moved: before.symmetric_difference(&placed).cloned().collect(),
                the_applys,
                let_go,
            }
        });
        self.converge.due = None;
        let units = self.units.clone();
        let backoff = self.converge.backoff.clone();
        let placed = self.placed.subscribe();
        let beside = scope
            .zip(self.apply.follow())
            .map(|(scope, apply)| Beside { scope, apply });
        let handle = self.tasks.spawn(async move {
            Done::Converged(pass(units, spec, placed, hold, beside, backoff).await)
        });
        self.converge.running = Some(handle.id());
    }

    /// A pass ended: what it saw is what status shows and what the mesh hears.
    pub(super) fn converged(&mut self, c: Converged) {
        self.converge.running = None;
        self.converge.backoff = c.backoff;
        for unit in std::mem::take(&mut self.converge.forgotten) {
            self.converge.backoff.units.remove(&unit);
        }
        if let Some(at) = c.retry {
            self.converge
                .soon(at.saturating_duration_since(Instant::now()));
        }
        self.metrics.reconciles.inc();
        self.metrics.reconcile_seconds.observe(c.took.as_secs_f64());
        if let Ok(observed) = &c.observed {
            self.metrics.units.clear();
            for u in observed {
                let label = StateLabel {
                    state: u.active_state.to_string(),
                };
                self.metrics.units.get_or_create(&label).inc();
            }
            // Of the workloads that run here (not mesh ones placed elsewhere): up is
            // active, or on its way up, but not waiting out a restart's delay.
            self.metrics.up.clear();
            let placed = self.placed.borrow().clone();
            let here = self
                .current
                .iter()
                .flat_map(|c| &c.spec.workloads)
                .filter(|(name, w)| {
                    matches!(w.placement, xnode_spec::Placement::Local) || placed.contains(*name)
                });
            for (name, w) in here {
                let unit = xnode_spec::unit::main_unit(name, w);
                let up = observed.iter().any(|u| {
                    u.name == unit
                        && u.active_state.is_running()
                        && !u
                            .sub_state
                            .as_deref()
                            .is_some_and(|s| s.starts_with("auto-restart"))
                });
                let label = crate::metrics::WorkloadLabel {
                    workload: name.clone(),
                };
                self.metrics.up.get_or_create(&label).set(i64::from(up));
            }
        }
        self.observed = c.observed;
        // Judged against the spec the pass planned with: while an apply runs, that is
        // the apply's, and status does not say converged then anyway.
        self.in_sync = c.in_sync;
        self.report_workloads();
    }
}

#[cfg(test)]
mod tests;
