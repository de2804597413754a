//! Drift repair: a task that plans the spec in force against what systemd runs and
//! carries the plan out, one at a time, level-triggered (each pass re-reads
//! everything). A unit the agent starts again waits longer each time it goes down
//! again soon, whatever made it stop; one its restart policy leaves down after it
//! ended by itself is not started (the planner's rule, docs/spec.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::Id;
use tokio::time::Instant;
use tracing::{info, warn};
use xnode_spec::Validated;
use xnode_spec::plan::{ObservedUnit, Plan, Reason, plan};
use xnode_systemd::ApplyOptions;

use super::Done;
use crate::deploy::hold_back;
use crate::metrics::StateLabel;
use crate::nix::Realise;
use crate::units::Units;

const BACKOFF_MIN: Duration = Duration::from_secs(5);
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
    /// up to 5 minutes.
    fn filter(&mut self, plan: &mut Plan, now: Instant) {
        plan.actions.retain(|a| {
            if !matches!(a.reason, Reason::NotRunning(_)) {
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
    took: Duration,
}

/// One pass: observe, plan (only `only`'s workloads when given), hold back what
/// cannot be realised and what waits out its backoff, apply, observe again.
async fn pass<U: Units>(
    units: Arc<U>,
    spec: Arc<Validated>,
    placed: BTreeSet<String>,
    hold: BTreeMap<String, String>,
    only: Option<BTreeSet<String>>,
    mut backoff: Backoff,
) -> Converged {
    let started = std::time::Instant::now();
    let done = |observed, in_sync, backoff| Converged {
        observed,
        in_sync,
        backoff,
        took: started.elapsed(),
    };
    let observed = match units.observe().await {
        Ok(o) => o,
        Err(e) => {
            return done(
                Err(format!("cannot read systemd's units: {e}")),
                false,
                backoff,
            );
        }
    };
    let now = Instant::now();
    backoff.forget_recovered(&observed, now);
    let mut plan = plan(&spec.spec, &observed, &placed);
    let in_sync = plan.is_empty();
    hold_back(&mut plan, &hold);
    if let Some(only) = &only {
        plan.actions.retain(|a| only.contains(&a.workload));
    }
    backoff.filter(&mut plan, now);
    if plan.actions.is_empty() {
        return done(Ok(observed), in_sync, backoff);
    }
    info!(
        actions = plan.actions.len(),
        "the node drifted from its spec; converging"
    );
    if let Err(e) = units.apply(&plan, &ApplyOptions::default()).await {
        warn!("converging failed: {e}");
        return done(Err(format!("converging failed: {e}")), false, backoff);
    }
    let after = units
        .observe()
        .await
        .map_err(|e| format!("cannot read systemd's units: {e}"));
    let in_sync = after
        .as_ref()
        .is_ok_and(|o| xnode_spec::plan::plan(&spec.spec, o, &placed).is_empty());
    done(after, in_sync, backoff)
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
        let (Some(due), Some(spec), Some(hold)) = (
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
        let only = self.apply.placed_at_start().map(|before| {
            let moved: BTreeSet<String> = before.symmetric_difference(&placed).cloned().collect();
            let changed_by_apply: BTreeSet<String> = self
                .current
                .as_ref()
                .map(|c| {
                    crate::deploy::late_mesh(&spec.spec, Some(&c.spec), &BTreeSet::new(), &hold)
                })
                .unwrap_or_default()
                .into_iter()
                .collect();
            moved.difference(&changed_by_apply).cloned().collect()
        });
        self.converge.due = None;
        let units = self.units.clone();
        let backoff = self.converge.backoff.clone();
        let handle = self.tasks.spawn(async move {
            Done::Converged(pass(units, spec, placed, hold, only, backoff).await)
        });
        self.converge.running = Some(handle.id());
    }

    /// A pass ended: what it saw is what status shows and what the mesh hears.
    pub(super) fn converged(&mut self, c: Converged) {
        self.converge.running = None;
        self.converge.backoff = c.backoff;
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
        }
        self.observed = c.observed;
        // Judged against the spec the pass planned with: while an apply runs, that is
        // the apply's, and status does not say converged then anyway.
        self.in_sync = c.in_sync;
        self.report_workloads();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use xnode_spec::plan::ActiveState;
    use xnode_spec::unit::{render, unit_name};

    fn stopped() -> (xnode_spec::Spec, Vec<ObservedUnit>) {
        let spec = xnode_spec::parse(
            &serde_json::to_vec(
                &json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {"command": ["/bin/w"]}}}),
            )
            .unwrap(),
        )
        .unwrap()
        .spec;
        let file = render("w", &spec.workloads["w"]);
        let observed = vec![ObservedUnit::new(
            unit_name("w"),
            ActiveState::Inactive,
            Some(file),
        )];
        (spec, observed)
    }

    #[test]
    fn every_start_of_a_unit_that_went_down_backs_off_until_it_stays_up() {
        let (spec, down) = stopped();
        let mut up = down.clone();
        up[0].active_state = ActiveState::Active;
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut p = plan(&spec, &down, &BTreeSet::new());
        b.filter(&mut p, t0);
        assert_eq!(p.actions.len(), 1, "the first start goes through");
        // Up for a moment, then down again within its wait: not forgotten.
        b.forget_recovered(&up, t0 + Duration::from_secs(1));
        let mut p = plan(&spec, &down, &BTreeSet::new());
        b.filter(&mut p, t0 + Duration::from_secs(1));
        assert!(p.actions.is_empty(), "the next waits");
        let mut p = plan(&spec, &down, &BTreeSet::new());
        b.filter(&mut p, t0 + BACKOFF_MAX);
        assert_eq!(p.actions.len(), 1, "after the wait it goes through again");
        // Up past its wait: it recovered, and the next stop is restored at once.
        b.forget_recovered(&up, t0 + BACKOFF_MAX * 3);
        assert!(b.units.is_empty());
    }
}
