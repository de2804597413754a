//! Putting a spec in force: record it as a generation, realise its store paths, plan,
//! apply, gate on health, and roll back to the last good generation when it is not
//! healthy (as Talos' try mode and deploy-rs do). An apply runs beside the agent's
//! loop: what it needs comes in as arguments, what it did goes out as its result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use xnode_mesh::placement::definition_hash;
use xnode_spec::plan::{ObservedUnit, Op, Plan, Reason, plan};
use xnode_spec::{Placement, Spec, Validated};

use crate::gate::{self, Gated};
use crate::nix::Realise;
use crate::secrets::Secrets;
use crate::store::{Origin, Outcome, Source, Store, StoreError};
use crate::units::Units;
pub use progress::{Context, Phase, Progress};

/// What an apply came to.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The generation that was applied.
    pub generation: u64,
    /// Its plan.
    pub plan: Plan,
    /// Its outcome, as recorded.
    pub outcome: Outcome,
    /// The generation that replaced it, when it was rolled back.
    pub rolled_back_to: Option<u64>,
    /// The spec in force now: the one applied, or the one rolled back to.
    pub in_force: Validated,
    /// The workloads of the spec in force whose store paths could not be had; they
    /// were left as they were.
    pub not_realised: BTreeMap<String, String>,
    /// The units as the apply left them.
    pub observed: Option<Vec<ObservedUnit>>,
}

/// Errors that stop an apply: the state directory failed it.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The generation could not be recorded or read back.
    #[error("state directory: {0}")]
    Store(#[from] StoreError),
    /// A stored generation no longer validates (a newer agent wrote it, or it was
    /// edited by hand).
    #[error("generation {generation} in the state directory is not a valid spec: {invalid}")]
    Corrupt {
        /// The generation.
        generation: u64,
        /// Why.
        invalid: xnode_spec::Invalid,
    },
}

/// An apply that stopped short: why, and the spec in force since, when the apply got
/// as far as changing it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    /// Why it stopped.
    #[source]
    pub error: DeployError,
    /// The spec the node runs now, if no longer the one before the apply.
    pub in_force: Option<Validated>,
}

impl Failed {
    fn before_any_change(error: impl Into<DeployError>) -> Failed {
        Failed {
            error: error.into(),
            in_force: None,
        }
    }
}

/// The agent's hands and memory: systemd, Nix and the state directory.
pub struct Agent<U, N> {
    /// systemd, shared with the loop.
    pub units: Arc<U>,
    /// Nix.
    pub nix: N,
    /// The node's key for age credentials, and where they are decrypted to.
    pub secrets: Secrets,
    /// The state directory.
    pub store: Store,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The workloads a plan starts, restarts, reloads or rewrites: the ones to gate on
/// (not the unit files of mesh workloads kept ready for when placement brings them).
pub fn changed(plan: &Plan) -> Vec<String> {
    let set: BTreeSet<&String> = plan
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a.op,
                Op::Create | Op::Update | Op::Start | Op::Restart | Op::Reload
            ) && a.reason != Reason::NotPlacedHere
        })
        .map(|a| &a.workload)
        .collect();
    set.into_iter().cloned().collect()
}

/// The mesh workloads of `spec` that this apply brings or changes and that placement
/// did not put here when it began: the gate takes them in if placement does so while
/// it waits.
pub fn late_mesh(
    spec: &Spec,
    previous: Option<&Spec>,
    placed: &BTreeSet<String>,
    skip: &BTreeMap<String, String>,
) -> Vec<String> {
    spec.workloads
        .iter()
        .filter(|(name, w)| {
            let changed = previous
                .and_then(|p| p.workloads.get(*name))
                .is_none_or(|old| definition_hash(old) != definition_hash(w));
            matches!(w.placement, Placement::Mesh(_))
                && changed
                && !placed.contains(*name)
                && !skip.contains_key(*name)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Makes ready what each workload needs before its unit starts (its store paths, its
/// decrypted secrets), and returns the workloads that cannot have it, and why: those
/// are left as they are, and so are the ones that require them. A mesh workload's
/// store paths are realised here only while it is `placed` here (a new definition of
/// one running here, say): the members that own it or stand by for it fetch them
/// ahead, not every member (`service::holding`), and placement puts it here only once
/// they are here.
pub(crate) async fn unrealisable<N: Realise>(
    nix: &N,
    secrets: &Secrets,
    spec: &Spec,
    placed: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut missing = BTreeMap::new();
    for (name, w) in &spec.workloads {
        if !w.store_paths.is_empty()
            && (w.placement == Placement::Local || placed.contains(name))
            && let Err(why) = nix.realise(&w.store_paths).await
        {
            missing.insert(name.clone(), why);
        } else if let Err(why) = secrets.stage(name, w).await {
            missing.insert(name.clone(), why);
        }
    }
    // systemd would fail a start that requires a unit held back: hold it back too.
    loop {
        let more: Vec<(String, String)> = spec
            .workloads
            .iter()
            .filter(|(name, _)| !missing.contains_key(*name))
            .filter_map(|(name, w)| {
                let needed = w.requires.iter().find(|r| missing.contains_key(*r))?;
                Some((
                    name.clone(),
                    format!("requires {needed}, which is held back"),
                ))
            })
            .collect();
        if more.is_empty() {
            return missing;
        }
        missing.extend(more);
    }
}

impl<U: Units, N: Realise> Agent<U, N> {
    /// Applies a validated spec as a new generation, over `previous` (the spec in
    /// force). With `rollback`, an unhealthy result is replaced by the last good
    /// generation, itself recorded as a new generation so history only grows.
    pub async fn deploy(
        &mut self,
        new: Validated,
        raw: &[u8],
        origin: impl Into<Origin>,
        rollback: bool,
        previous: Option<&Spec>,
        ctx: &Context,
    ) -> Result<Deployed, Failed> {
        let last_good = self.store.state().last_good;
        let generation = self
            .store
            .accept(raw, &new.hash.to_string(), origin, now())
            .await
            .map_err(Failed::before_any_change)?;
        ctx.progress
            .send_modify(|p| p.generation = Some(generation));
        let placed = ctx.placed.borrow().clone();
        let not_realised = unrealisable(&self.nix, &self.secrets, &new.spec, &placed).await;
        let (plan, unhealthy) = apply_and_gate(
            &*self.units,
            &new.spec,
            previous,
            &not_realised,
            Gate::Changed,
            ctx,
        )
        .await;
        let in_force = |e: DeployError, v: &Validated| Failed {
            error: e,
            in_force: Some(v.clone()),
        };
        let Some(reason) = unhealthy else {
            self.store
                .settle(generation, Outcome::Healthy)
                .await
                .map_err(|e| in_force(e.into(), &new))?;
            return Ok(self
                .deployed(generation, plan, Outcome::Healthy, None, new, not_realised)
                .await);
        };
        let Some(good) = last_good.filter(|_| rollback) else {
            let outcome = Outcome::Unhealthy { reason };
            self.store
                .settle(generation, outcome.clone())
                .await
                .map_err(|e| in_force(e.into(), &new))?;
            return Ok(self
                .deployed(generation, plan, outcome, None, new, not_realised)
                .await);
        };
        ctx.phase(Phase::RollingBack);
        let (restored, back, back_missing) = self
            .put_back(good, Some(&new.spec), ctx)
            .await
            .map_err(|(e, back)| in_force(e, back.as_ref().unwrap_or(&new)))?;
        let outcome = Outcome::RolledBack { reason };
        self.store
            .settle(generation, outcome.clone())
            .await
            .map_err(|e| in_force(e.into(), &back))?;
        Ok(self
            .deployed(
                generation,
                plan,
                outcome,
                Some(restored),
                back,
                back_missing,
            )
            .await)
    }

    /// Finishes a generation left `applying` (the agent died during its apply):
    /// converge to it, gate every workload, and settle or roll back as `deploy` would.
    pub async fn resume(
        &mut self,
        generation: u64,
        spec: Validated,
        ctx: &Context,
    ) -> Result<Deployed, Failed> {
        ctx.progress
            .send_modify(|p| p.generation = Some(generation));
        let last_good = self.store.state().last_good.filter(|g| *g != generation);
        let placed = ctx.placed.borrow().clone();
        let not_realised = unrealisable(&self.nix, &self.secrets, &spec.spec, &placed).await;
        // The apply may have finished before the crash, so the plan can be empty: gate
        // every workload, not only the changed ones.
        let (plan, unhealthy) = apply_and_gate(
            &*self.units,
            &spec.spec,
            None,
            &not_realised,
            Gate::All,
            ctx,
        )
        .await;
        let failed = |e: DeployError, v: &Validated| Failed {
            error: e,
            in_force: Some(v.clone()),
        };
        let (outcome, restored, in_force, missing) = match (unhealthy, last_good) {
            (None, _) => (Outcome::Healthy, None, spec, not_realised),
            (Some(reason), Some(good)) => {
                ctx.phase(Phase::RollingBack);
                let (n, back, missing) = self
                    .put_back(good, Some(&spec.spec), ctx)
                    .await
                    .map_err(|(e, back)| failed(e, back.as_ref().unwrap_or(&spec)))?;
                (Outcome::RolledBack { reason }, Some(n), back, missing)
            }
            (Some(reason), None) => (Outcome::Unhealthy { reason }, None, spec, not_realised),
        };
        self.store
            .settle(generation, outcome.clone())
            .await
            .map_err(|e| failed(e.into(), &in_force))?;
        Ok(self
            .deployed(generation, plan, outcome, restored, in_force, missing)
            .await)
    }

    /// Goes back to generation `good` by hand (`xnodectl rollback`), over `previous`.
    pub async fn restore(
        &mut self,
        good: u64,
        previous: Option<&Spec>,
        ctx: &Context,
    ) -> Result<Deployed, Failed> {
        ctx.phase(Phase::RollingBack);
        let (n, back, missing) = self
            .put_back(good, previous, ctx)
            .await
            .map_err(|(error, in_force)| Failed { error, in_force })?;
        let outcome = self
            .store
            .state()
            .generations
            .iter()
            .find(|g| g.number == n)
            .map_or(Outcome::Healthy, |g| g.outcome.clone());
        Ok(self
            .deployed(n, Plan::default(), outcome, None, back, missing)
            .await)
    }

    /// Puts generation `good`'s spec back in force as a new generation; no further
    /// rollback if that is unhealthy too. Returns the new generation, its spec and what
    /// of it could not be realised; or why not, with the spec put back if systemd
    /// already runs it.
    async fn put_back(
        &mut self,
        good: u64,
        previous: Option<&Spec>,
        ctx: &Context,
    ) -> Result<(u64, Validated, BTreeMap<String, String>), (DeployError, Option<Validated>)> {
        let untouched = |e: DeployError| (e, None);
        let raw = self
            .store
            .spec(good)
            .await
            .map_err(|e| untouched(e.into()))?;
        let back = xnode_spec::parse(&raw).map_err(|invalid| {
            untouched(DeployError::Corrupt {
                generation: good,
                invalid,
            })
        })?;
        let origin = Origin {
            source: Source::Rollback { to: good },
            lineage: self.store.lineage(good),
        };
        let restored = self
            .store
            .accept(&raw, &back.hash.to_string(), origin, now())
            .await
            .map_err(|e| untouched(e.into()))?;
        ctx.progress.send_modify(|p| {
            p.generation = Some(restored);
            p.workloads.clear();
            p.putting_back = Some(Arc::new(back.clone()));
        });
        let placed = ctx.placed.borrow().clone();
        let not_realised = unrealisable(&self.nix, &self.secrets, &back.spec, &placed).await;
        let (_, still) = apply_and_gate(
            &*self.units,
            &back.spec,
            previous,
            &not_realised,
            Gate::Changed,
            ctx,
        )
        .await;
        let outcome = match still {
            None => Outcome::Healthy,
            Some(reason) => Outcome::Unhealthy { reason },
        };
        match self.store.settle(restored, outcome).await {
            Ok(()) => Ok((restored, back, not_realised)),
            Err(e) => Err((e.into(), Some(back))),
        }
    }

    async fn deployed(
        &self,
        generation: u64,
        plan: Plan,
        outcome: Outcome,
        rolled_back_to: Option<u64>,
        in_force: Validated,
        not_realised: BTreeMap<String, String>,
    ) -> Deployed {
        self.secrets.tidy(&in_force.spec, &not_realised).await;
        Deployed {
            generation,
            plan,
            outcome,
            rolled_back_to,
            in_force,
            not_realised,
            observed: self.units.observe().await.ok(),
        }
    }
}

/// Drops the actions on workloads in `not_realised` (their store paths are missing),
/// so an older version keeps running; but a mesh workload placed elsewhere still
/// stops, or it would run here and there.
pub fn hold_back(plan: &mut Plan, not_realised: &BTreeMap<String, String>) {
    plan.actions
        .retain(|a| !not_realised.contains_key(&a.workload) || a.reason == Reason::NotPlacedHere);
}

/// Which workloads an apply waits on.
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// The ones the plan started, restarted, reloaded or rewrote.
    Changed,
    /// All of the spec's (finishing an apply whose plan was carried out before a crash).
    All,
}

/// Plans against what systemd runs, applies, and gates. Workloads in `skip` (their
/// store paths are missing) are left as they are, so an older version keeps running,
/// and are not waited on. Returns the plan and why the result is unhealthy, if it is.
async fn apply_and_gate<U: Units>(
    units: &U,
    spec: &Spec,
    previous: Option<&Spec>,
    skip: &BTreeMap<String, String>,
    gate: Gate,
    ctx: &Context,
) -> (Plan, Option<String>) {
    ctx.progress.send_modify(|p| {
        p.phase = Phase::Applying;
        p.held_back = skip.clone();
    });
    let placed = ctx.placed.borrow().clone();
    let observed = match units.observe().await {
        Ok(o) => o,
        Err(e) => {
            let why = format!("cannot read systemd's units: {e}");
            return (Plan::default(), Some(why));
        }
    };
    let mut plan = plan(spec, &observed, &placed);
    hold_back(&mut plan, skip);
    if let Err(e) = units.apply(&plan, &crate::units::apply_options(spec)).await {
        return (plan, Some(e.to_string()));
    }
    let (waited, late): (Vec<String>, Vec<String>) = match gate {
        Gate::Changed => (changed(&plan), late_mesh(spec, previous, &placed, skip)),
        Gate::All => {
            let here = spec
                .workloads
                .iter()
                .filter(|(name, w)| {
                    let here = w.placement == Placement::Local || placed.contains(*name);
                    here && !skip.contains_key(*name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            (here, Vec::new())
        }
    };
    ctx.progress.send_modify(|p| {
        p.phase = Phase::Gating;
        p.workloads = waited
            .iter()
            .map(|w| {
                let why = "not looked at yet".to_owned();
                (w.clone(), Gated::Waiting { why })
            })
            .collect();
    });
    let report = |name: &str, g: Gated| {
        ctx.progress.send_if_modified(|p| {
            let slot = p.workloads.entry(name.to_owned()).or_insert(Gated::Moved);
            let changed = *slot != g;
            *slot = g;
            changed
        });
    };
    let watch = gate::Watch {
        placed: &ctx.placed,
        report: &report,
    };
    let mut problems: Vec<String> = plan.refused.iter().map(|r| r.reason.clone()).collect();
    let unhealthy = gate::wait_healthy(units, spec, &waited, &late, &watch).await;
    problems.extend(unhealthy.into_iter().map(|(w, why)| format!("{w}: {why}")));
    let verdict = (!problems.is_empty()).then(|| problems.join("; "));
    (plan, verdict)
}

mod progress;
#[cfg(test)]
mod tests;
