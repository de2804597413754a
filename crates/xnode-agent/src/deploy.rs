//! Putting a spec in force: record it as a generation, realise its store paths, plan,
//! apply, gate on health, and roll back to the last good generation when it is not
//! healthy (as Talos' try mode and deploy-rs do).

use std::collections::{BTreeMap, BTreeSet};

use xnode_spec::plan::{Op, Plan, Reason, plan};
use xnode_spec::{Placement, Spec, Validated};
use xnode_systemd::{ApplyOptions, ApplyReport};

use crate::gate;
use crate::nix::Realise;
use crate::store::{Outcome, Source, Store, StoreError};
use crate::units::Units;

/// What an apply came to.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The generation that was applied.
    pub generation: u64,
    /// Its plan.
    pub plan: Plan,
    /// What systemd did, when the apply got that far.
    pub report: Option<ApplyReport>,
    /// Its outcome, as recorded.
    pub outcome: Outcome,
    /// The generation that replaced it, when it was rolled back.
    pub rolled_back_to: Option<u64>,
    /// Workloads left as they were because their store paths could not be realised.
    pub not_realised: BTreeMap<String, String>,
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

/// The agent's hands and memory: systemd, Nix and the state directory.
pub struct Agent<U, N> {
    /// systemd.
    pub units: U,
    /// Nix.
    pub nix: N,
    /// The state directory.
    pub store: Store,
    /// The mesh workloads placement puts on this node now; an apply leaves them
    /// running and the rest of the mesh workloads stopped.
    pub mesh_placed: BTreeSet<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The workloads a plan starts, restarts, reloads or rewrites: the ones to gate on.
pub fn changed(plan: &Plan) -> Vec<String> {
    let set: BTreeSet<&String> = plan
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a.op,
                Op::Create | Op::Update | Op::Start | Op::Restart | Op::Reload
            )
        })
        .map(|a| &a.workload)
        .collect();
    set.into_iter().cloned().collect()
}

/// The workloads whose store paths cannot be realised, and why.
async fn unrealisable<N: Realise>(nix: &N, spec: &Spec) -> BTreeMap<String, String> {
    let mut missing = BTreeMap::new();
    for (name, w) in &spec.workloads {
        if !w.store_paths.is_empty()
            && let Err(why) = nix.realise(&w.store_paths).await
        {
            missing.insert(name.clone(), why);
        }
    }
    missing
}

impl<U: Units, N: Realise> Agent<U, N> {
    /// The workloads of `spec` whose store paths cannot be realised now, and why.
    pub async fn unrealisable(&self, spec: &Spec) -> BTreeMap<String, String> {
        unrealisable(&self.nix, spec).await
    }

    /// Applies a validated spec as a new generation. With `rollback`, an unhealthy
    /// result is replaced by the last good generation, itself recorded as a new
    /// generation so history only grows.
    pub async fn deploy(
        &mut self,
        new: &Validated,
        raw: &[u8],
        source: Source,
        rollback: bool,
    ) -> Result<Deployed, DeployError> {
        let last_good = self.store.state().last_good;
        let generation = self
            .store
            .accept(raw, &new.hash.to_string(), source, now())
            .await?;
        let not_realised = unrealisable(&self.nix, &new.spec).await;
        let (plan, report, unhealthy) = apply_and_gate(
            &self.units,
            &self.mesh_placed,
            &new.spec,
            &not_realised,
            Gate::Changed,
        )
        .await;
        let mut deployed = Deployed {
            generation,
            plan,
            report,
            outcome: Outcome::Healthy,
            rolled_back_to: None,
            not_realised,
        };
        let Some(reason) = unhealthy else {
            self.store.settle(generation, Outcome::Healthy).await?;
            return Ok(deployed);
        };
        match last_good.filter(|_| rollback) {
            Some(good) => {
                deployed.rolled_back_to = Some(self.restore(good).await?);
                deployed.outcome = Outcome::RolledBack { reason };
            }
            None => deployed.outcome = Outcome::Unhealthy { reason },
        }
        self.store
            .settle(generation, deployed.outcome.clone())
            .await?;
        Ok(deployed)
    }

    /// Finishes a generation left `applying` (the agent died during its apply):
    /// converge to it, gate every workload, and settle or roll back as `deploy` would.
    pub async fn resume(
        &mut self,
        generation: u64,
        spec: &Validated,
    ) -> Result<Outcome, DeployError> {
        let last_good = self.store.state().last_good.filter(|g| *g != generation);
        let not_realised = unrealisable(&self.nix, &spec.spec).await;
        // The apply may have finished before the crash, so the plan can be empty: gate
        // every workload, not only the changed ones.
        let (_, _, unhealthy) = apply_and_gate(
            &self.units,
            &self.mesh_placed,
            &spec.spec,
            &not_realised,
            Gate::All,
        )
        .await;
        let outcome = match (unhealthy, last_good) {
            (None, _) => Outcome::Healthy,
            (Some(reason), Some(good)) => {
                self.restore(good).await?;
                Outcome::RolledBack { reason }
            }
            (Some(reason), None) => Outcome::Unhealthy { reason },
        };
        self.store.settle(generation, outcome.clone()).await?;
        Ok(outcome)
    }

    /// Puts generation `good`'s spec back in force as a new generation; no further
    /// rollback if that is unhealthy too.
    pub async fn restore(&mut self, good: u64) -> Result<u64, DeployError> {
        let raw = self.store.spec(good).await?;
        let back = xnode_spec::parse(&raw).map_err(|invalid| DeployError::Corrupt {
            generation: good,
            invalid,
        })?;
        let restored = self
            .store
            .accept(
                &raw,
                &back.hash.to_string(),
                Source::Rollback { to: good },
                now(),
            )
            .await?;
        let not_realised = unrealisable(&self.nix, &back.spec).await;
        let (_, _, still) = apply_and_gate(
            &self.units,
            &self.mesh_placed,
            &back.spec,
            &not_realised,
            Gate::Changed,
        )
        .await;
        let outcome = match still {
            None => Outcome::Healthy,
            Some(reason) => Outcome::Unhealthy { reason },
        };
        self.store.settle(restored, outcome).await?;
        Ok(restored)
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
/// and are not waited on. Returns why the result is unhealthy, if it is.
async fn apply_and_gate<U: Units>(
    units: &U,
    placed: &BTreeSet<String>,
    spec: &Spec,
    skip: &BTreeMap<String, String>,
    gate: Gate,
) -> (Plan, Option<ApplyReport>, Option<String>) {
    let observed = match units.observe().await {
        Ok(o) => o,
        Err(e) => {
            let why = format!("cannot read systemd's units: {e}");
            return (Plan::default(), None, Some(why));
        }
    };
    let mut plan = plan(spec, &observed, placed);
    hold_back(&mut plan, skip);
    let report = match units.apply(&plan, &ApplyOptions::default()).await {
        Ok(r) => r,
        Err(e) => return (plan, None, Some(e.to_string())),
    };
    let waited: Vec<String> = match gate {
        Gate::Changed => changed(&plan),
        Gate::All => spec
            .workloads
            .iter()
            .filter(|(name, w)| {
                let here = w.placement == Placement::Local || placed.contains(*name);
                here && !skip.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect(),
    };
    let mut problems: Vec<String> = plan.refused.iter().map(|r| r.reason.clone()).collect();
    let unhealthy = gate::wait_healthy(units, spec, &waited).await;
    problems.extend(unhealthy.into_iter().map(|(w, why)| format!("{w}: {why}")));
    let verdict = (!problems.is_empty()).then(|| problems.join("; "));
    (plan, Some(report), verdict)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;
    use xnode_spec::plan::{ActiveState, ObservedUnit};
    use xnode_spec::unit::UnitFile;
    use xnode_systemd::{Error, UnitStatus};

    use super::*;

    /// systemd in memory: a unit whose ExecStart mentions "broken" fails when started.
    #[derive(Default)]
    struct FakeUnits {
        units: Mutex<BTreeMap<String, ObservedUnit>>,
    }

    impl Units for FakeUnits {
        async fn observe(&self) -> Result<Vec<ObservedUnit>, Error> {
            Ok(self.units.lock().unwrap().values().cloned().collect())
        }

        async fn apply(&self, plan: &Plan, _: &ApplyOptions) -> Result<ApplyReport, Error> {
            let mut units = self.units.lock().unwrap();
            for a in &plan.actions {
                let entry = units.entry(a.unit.clone()).or_insert_with(|| ObservedUnit {
                    name: a.unit.clone(),
                    active_state: ActiveState::Inactive,
                    file: None,
                });
                match a.op {
                    Op::Create | Op::Update => entry.file = a.content.clone(),
                    Op::Stop => entry.active_state = ActiveState::Inactive,
                    Op::Start | Op::Restart | Op::Reload => {
                        let broken = entry.file.as_ref().is_some_and(|f| {
                            UnitFile::parse(f)
                                .get("Service", "ExecStart")
                                .iter()
                                .any(|c| c.contains("broken"))
                        });
                        entry.active_state = if broken {
                            ActiveState::Failed
                        } else {
                            ActiveState::Active
                        };
                    }
                    Op::Remove => {
                        units.remove(&a.unit);
                    }
                }
            }
            Ok(ApplyReport::default())
        }

        async fn watch(&self) -> Result<crate::units::Watch, Error> {
            Ok((Default::default(), tokio::spawn(std::future::pending())))
        }

        async fn status(&self, unit: &str) -> Result<UnitStatus, Error> {
            let state = self
                .units
                .lock()
                .unwrap()
                .get(unit)
                .map_or(ActiveState::Inactive, |u| u.active_state);
            let (active, sub, status) = match state {
                ActiveState::Active => ("active", "running", 0),
                ActiveState::Failed => ("failed", "failed", 1),
                _ => ("inactive", "dead", 0),
            };
            Ok(UnitStatus {
                name: unit.into(),
                active_state: active.into(),
                sub_state: sub.into(),
                result: if status == 0 {
                    "success".into()
                } else {
                    "exit-code".into()
                },
                exit_code: (status != 0).then_some("exited"),
                exit_status: status,
            })
        }
    }

    /// Nix that has every path except those naming "missing".
    struct FakeNix;

    impl Realise for FakeNix {
        async fn realise(&self, paths: &[String]) -> Result<(), String> {
            match paths.iter().find(|p| p.contains("missing")) {
                Some(p) => Err(format!("{p} is not in any substituter")),
                None => Ok(()),
            }
        }
    }

    fn spec(workloads: serde_json::Value) -> (Validated, Vec<u8>) {
        let raw = serde_json::to_vec(
            &json!({"version": 1, "node": {"name": "n"}, "workloads": workloads}),
        )
        .unwrap();
        (xnode_spec::parse(&raw).unwrap(), raw)
    }

    async fn agent(name: &str) -> Agent<FakeUnits, FakeNix> {
        let dir = std::env::temp_dir().join(format!("xnode-deploy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Agent {
            units: FakeUnits::default(),
            nix: FakeNix,
            mesh_placed: BTreeSet::new(),
            store: Store::open(&dir).await.unwrap(),
        }
    }

    fn running(a: &Agent<FakeUnits, FakeNix>) -> Vec<(String, ActiveState)> {
        a.units
            .units
            .lock()
            .unwrap()
            .values()
            .map(|u| (u.name.clone(), u.active_state))
            .collect()
    }

    #[tokio::test]
    async fn a_healthy_apply_becomes_the_last_good_generation() {
        let mut a = agent("healthy").await;
        let (v, raw) = spec(json!({"web": {"command": ["/bin/web"]}}));
        let d = a.deploy(&v, &raw, Source::Api, true).await.unwrap();
        assert_eq!(
            (d.generation, d.outcome, d.rolled_back_to),
            (1, Outcome::Healthy, None)
        );
        assert_eq!(a.store.state().last_good, Some(1));
        assert_eq!(
            running(&a),
            [("xnode-web.service".into(), ActiveState::Active)]
        );
    }

    #[tokio::test]
    async fn an_unhealthy_apply_is_rolled_back_to_the_last_good_one() {
        let mut a = agent("rollback").await;
        let (good, raw) =
            spec(json!({"web": {"command": ["/bin/web"]}, "db": {"command": ["/bin/db"]}}));
        a.deploy(&good, &raw, Source::Api, true).await.unwrap();
        let before = a.units.units.lock().unwrap().clone();
        let (bad, raw) = spec(
            json!({"web": {"command": ["/bin/web", "--broken"]}, "db": {"command": ["/bin/db"]}, "new": {"command": ["/bin/new"]}}),
        );
        let d = a.deploy(&bad, &raw, Source::Api, true).await.unwrap();
        let Outcome::RolledBack { reason } = &d.outcome else {
            panic!("{:?}", d.outcome)
        };
        assert!(reason.contains("web: failed (exit status 1)"), "{reason}");
        assert_eq!(d.rolled_back_to, Some(3));
        let state = a.store.state();
        assert_eq!((state.current, state.last_good), (Some(3), Some(3)));
        assert_eq!(state.generations[2].source, Source::Rollback { to: 1 });
        assert_eq!(
            *a.units.units.lock().unwrap(),
            before,
            "every unit as before the bad apply"
        );
    }

    #[tokio::test]
    async fn without_rollback_or_a_good_generation_the_result_stays() {
        let mut a = agent("norollback").await;
        let (bad, raw) = spec(json!({"web": {"command": ["/bin/broken"]}}));
        let d = a.deploy(&bad, &raw, Source::Api, true).await.unwrap();
        assert!(
            matches!(d.outcome, Outcome::Unhealthy { .. }),
            "no good generation to go back to"
        );
        let (good, raw) = spec(json!({"web": {"command": ["/bin/web"]}}));
        a.deploy(&good, &raw, Source::Api, true).await.unwrap();
        let d = a.deploy(&bad, &raw, Source::Api, false).await.unwrap();
        assert!(matches!(d.outcome, Outcome::Unhealthy { .. }));
        assert_eq!(a.store.state().current, Some(3));
        assert_eq!(
            running(&a),
            [("xnode-web.service".into(), ActiveState::Failed)]
        );
    }

    #[test]
    fn missing_store_paths_hold_back_starts_but_never_a_stop_for_elsewhere() {
        let (v, _) = spec(json!({
            "local": {"command": ["/bin/a"]},
            "moved": {"command": ["/bin/b"], "placement": {"mesh": {}}}
        }));
        let running = |name: &str| xnode_spec::plan::ObservedUnit {
            name: xnode_spec::unit::unit_name(name),
            active_state: xnode_spec::plan::ActiveState::Active,
            file: Some(xnode_spec::unit::render(name, &v.spec.workloads[name])),
        };
        let mut p = plan(&v.spec, &[running("moved")], &BTreeSet::new());
        p.actions
            .extend(plan(&v.spec, &[], &BTreeSet::new()).actions);
        let missing: BTreeMap<String, String> = ["local", "moved"]
            .map(|w| (w.to_owned(), "missing".to_owned()))
            .into();
        hold_back(&mut p, &missing);
        assert!(!p.actions.is_empty());
        assert!(
            p.actions
                .iter()
                .all(|a| a.workload == "moved" && a.reason == Reason::NotPlacedHere),
            "{:?}",
            p.actions
        );
    }

    #[tokio::test]
    async fn resuming_an_interrupted_generation_gates_every_workload_it_can_run() {
        let mut a = agent("resume").await;
        let (v, raw) = spec(json!({
            "web": {"command": ["/bin/web"]},
            "app": {"command": ["/bin/app"], "store_paths": ["/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-missing"]}
        }));
        // The crash came after the units were started: nothing left to apply.
        let n = a
            .store
            .accept(&raw, &v.hash.to_string(), Source::Api, 0)
            .await
            .unwrap();
        a.units
            .apply(
                &plan(&v.spec, &[], &BTreeSet::new()),
                &ApplyOptions::default(),
            )
            .await
            .unwrap();
        a.units.units.lock().unwrap().remove("xnode-app.service");
        assert_eq!(
            a.resume(n, &v).await.unwrap(),
            Outcome::Healthy,
            "the unrealisable app is not waited on"
        );
        // A workload that fails is caught even though the plan is empty.
        let (bad, raw) = spec(json!({"web": {"command": ["/bin/broken"]}}));
        let n = a
            .store
            .accept(&raw, &bad.hash.to_string(), Source::Api, 0)
            .await
            .unwrap();
        a.units
            .apply(
                &plan(
                    &bad.spec,
                    &a.units.observe().await.unwrap(),
                    &BTreeSet::new(),
                ),
                &ApplyOptions::default(),
            )
            .await
            .unwrap();
        let outcome = a.resume(n, &bad).await.unwrap();
        assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
        assert_eq!(
            a.store.state().last_good,
            Some(3),
            "generation 1, restored as 3"
        );
    }

    #[tokio::test]
    async fn a_workload_whose_store_paths_are_missing_is_left_out_and_the_rest_applied() {
        let mut a = agent("nix").await;
        let (v, raw) = spec(json!({
            "web": {"command": ["/bin/web"]},
            "app": {"command": ["/bin/app"], "store_paths": ["/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-missing"]}
        }));
        let d = a.deploy(&v, &raw, Source::Api, true).await.unwrap();
        assert_eq!(d.outcome, Outcome::Healthy);
        assert!(d.not_realised["app"].contains("not in any substituter"));
        assert_eq!(
            running(&a),
            [("xnode-web.service".into(), ActiveState::Active)]
        );
    }
}
