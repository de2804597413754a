//! systemd and Nix in memory, for the unit tests of the agent's decisions. The lab
//! tests run the same code against the real ones.

use std::collections::BTreeMap;
use std::sync::Mutex;

use xnode_spec::plan::{ActiveState, ObservedUnit, Op, Plan};
use xnode_spec::unit::UnitFile;
use xnode_systemd::{ApplyOptions, ApplyReport, Error, UnitStatus};

use crate::nix::Realise;
use crate::units::{Units, Watch};

/// systemd in memory: a unit whose ExecStart mentions "broken" fails when started.
#[derive(Default)]
pub struct FakeUnits {
    pub units: Mutex<BTreeMap<String, ObservedUnit>>,
    pub installed: Mutex<BTreeMap<String, String>>,
}

impl FakeUnits {
    /// Every unit with its state.
    pub fn states(&self) -> Vec<(String, ActiveState)> {
        self.units
            .lock()
            .unwrap()
            .values()
            .map(|u| (u.name.clone(), u.active_state))
            .collect()
    }
}

impl Units for FakeUnits {
    async fn observe(&self) -> Result<Vec<ObservedUnit>, Error> {
        Ok(self.units.lock().unwrap().values().cloned().collect())
    }

    async fn apply(&self, plan: &Plan, _: &ApplyOptions) -> Result<ApplyReport, Error> {
        let mut units = self.units.lock().unwrap();
        for a in &plan.actions {
            let entry = units
                .entry(a.unit.clone())
                .or_insert_with(|| ObservedUnit::new(a.unit.clone(), ActiveState::Inactive, None));
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
                    entry.sub_state = Some(if broken { "failed" } else { "running" }.into());
                }
                Op::Remove => {
                    units.remove(&a.unit);
                }
            }
        }
        Ok(ApplyReport::default())
    }

    async fn watch(&self) -> Result<Watch, Error> {
        Ok((Default::default(), tokio::spawn(std::future::pending())))
    }

    async fn usage(&self, unit: &str) -> Result<xnode_systemd::Usage, Error> {
        let known = self.units.lock().unwrap().contains_key(unit);
        Ok(xnode_systemd::Usage {
            restarts: 0,
            memory_bytes: known.then_some(1 << 20),
            cpu_ns: known.then_some(1_000_000),
        })
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

    async fn states(&self) -> Result<Vec<(String, String, String)>, Error> {
        let names: Vec<String> = self.units.lock().unwrap().keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            let s = self.status(&name).await?;
            out.push((name, s.active_state, s.sub_state));
        }
        Ok(out)
    }

    async fn install(&self, name: &str, text: &str) -> Result<bool, Error> {
        let mut installed = self.installed.lock().unwrap();
        let changed = installed.get(name).map(String::as_str) != Some(text);
        installed.insert(name.to_owned(), text.to_owned());
        Ok(changed)
    }
}

/// Nix that has every path except those naming "missing".
#[derive(Clone, Default)]
pub struct FakeNix;

impl Realise for FakeNix {
    async fn realise(&self, paths: &[String]) -> Result<(), String> {
        match paths.iter().find(|p| p.contains("missing")) {
            Some(p) => Err(format!("{p} is not in any substituter")),
            None => Ok(()),
        }
    }
}
