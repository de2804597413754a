//! The plan: what to do to systemd so that it runs what the spec says.
//!
//! A pure function of the desired spec and the observed units, so every rule is a
//! table test and the dry run prints exactly what an apply would do. Changed units
//! follow NixOS `switch-to-configuration`: reload when only reload triggers changed or
//! the workload asks to be reloaded, skip when it asks not to be restarted, restart in
//! one job when it asks not to be stopped, and otherwise stop before the new file is
//! written and start after. A unit that is not the agent's is never acted on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Serialize, Serializer};

use crate::model::{Placement, Spec, Workload};
use crate::unit::{self, Difference, UnitFile};

mod observed;

pub use observed::{ActiveState, Observed, ObservedError, ObservedUnit};

/// What to do to one unit. The order of the variants is the order of execution:
/// stops first (so old units run their own stop commands), then files, then one daemon
/// reload, then reloads, restarts and starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Op {
    Stop,
    Remove,
    Create,
    Update,
    Reload,
    Restart,
    Start,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Stop => "stop",
            Op::Remove => "remove",
            Op::Create => "create",
            Op::Update => "update",
            Op::Reload => "reload",
            Op::Restart => "restart",
            Op::Start => "start",
        })
    }
}

/// Why an action is in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The workload has no unit yet.
    New,
    /// The unit is as wanted but not running.
    NotRunning(ActiveState),
    /// These keys changed and the process must see them.
    Changed(Vec<String>),
    /// These keys changed; the workload asked for a reload instead of a restart.
    ReloadInstead(Vec<String>),
    /// These keys changed; the workload asked not to be restarted.
    RestartSkipped(Vec<String>),
    /// Only the reload triggers changed.
    TriggersChanged,
    /// Only comments or metadata differ.
    Cosmetic,
    /// The workload is no longer in the spec.
    Removed,
    /// A mesh workload that placement puts on other nodes.
    NotPlacedHere,
    /// The workload no longer has a unit of this kind (its `kind` changed).
    NotNeeded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => f.write_str("new workload"),
            Reason::NotRunning(state) => write!(f, "is {state}; it should be running"),
            Reason::Changed(keys) => write!(f, "changed: {}", keys.join(", ")),
            Reason::ReloadInstead(keys) => {
                write!(
                    f,
                    "changed: {}; reloaded instead of restarted (reload_if_changed)",
                    keys.join(", ")
                )
            }
            Reason::RestartSkipped(keys) => {
                write!(
                    f,
                    "changed: {}; not restarted (restart_if_changed is false)",
                    keys.join(", ")
                )
            }
            Reason::TriggersChanged => f.write_str("reload triggers changed"),
            Reason::Cosmetic => f.write_str("unit file differs only in comments or metadata"),
            Reason::Removed => f.write_str("no longer in the spec"),
            Reason::NotPlacedHere => f.write_str("mesh placement runs it on other nodes"),
            Reason::NotNeeded => f.write_str("the workload's kind no longer uses this unit"),
        }
    }
}

fn display<S: Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// What to do.
    pub op: Op,
    /// To which unit.
    pub unit: String,
    /// For which workload.
    pub workload: String,
    /// Why, for people.
    #[serde(serialize_with = "display")]
    pub reason: Reason,
    /// The unit file to write, for `create` and `update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A unit the spec wants but the agent may not touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The unit in the way.
    pub unit: String,
    /// The workload that wants its name.
    pub workload: String,
    /// Why it is left alone.
    pub reason: String,
}

/// Everything to do, in execution order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Steps, sorted by [`Op`] then unit.
    pub actions: Vec<Action>,
    /// Units the spec wants that belong to someone else.
    pub refused: Vec<Refusal>,
}

impl Plan {
    /// Whether unit files change, so systemd must reload its configuration before jobs run.
    pub fn needs_daemon_reload(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a.op, Op::Create | Op::Update | Op::Remove))
    }

    /// Whether there is nothing to do and nothing in the way.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.refused.is_empty()
    }

    fn push(&mut self, op: Op, unit: &Unit<'_>, reason: Reason) {
        self.actions.push(Action {
            op,
            unit: unit.name.to_owned(),
            workload: unit.workload.to_owned(),
            reason,
            content: None,
        });
    }

    fn write(&mut self, op: Op, unit: &Unit<'_>, reason: Reason) {
        self.push(op, unit, reason);
        if let Some(last) = self.actions.last_mut() {
            last.content = Some(unit.content.to_owned());
        }
    }
}

/// One unit file a workload needs.
struct Unit<'a> {
    workload: &'a str,
    name: &'a str,
    content: &'a str,
}

/// Whether a workload should run on this node: local ones always, mesh ones when
/// placement (decided elsewhere) put them here.
fn runs_here(name: &str, w: &Workload, mesh_placed: &BTreeSet<String>) -> bool {
    match w.placement {
        Placement::Local => true,
        Placement::Mesh(_) => mesh_placed.contains(name),
    }
}

/// Plans the actions that take `observed` to `spec`. `mesh_placed` names the mesh
/// workloads that placement assigned to this node.
pub fn plan(spec: &Spec, observed: &[ObservedUnit], mesh_placed: &BTreeSet<String>) -> Plan {
    let observed: BTreeMap<&str, (&str, &ObservedUnit)> = observed
        .iter()
        .filter_map(|u| unit::workload_of(&u.name).map(|w| (u.name.as_str(), (w, u))))
        .collect();
    let mut plan = Plan::default();
    let mut wanted_units = BTreeSet::new();
    for (name, w) in &spec.workloads {
        let files = unit::units(name, w);
        let Some(((main, main_content), companions)) = files.split_last() else {
            continue;
        };
        let refused = plan.refused.len();
        for (unit_name, content) in companions {
            let u = Unit {
                workload: name,
                name: unit_name,
                content,
            };
            let o = observed.get(unit_name.as_str()).map(|(_, o)| *o);
            plan_companion(&mut plan, &u, o);
        }
        if plan.refused.len() > refused {
            // A timer must not start a unit that is not the workload's.
            wanted_units.extend(files.into_iter().map(|(n, _)| n));
            continue;
        }
        let u = Unit {
            workload: name,
            name: main,
            content: main_content,
        };
        let o = observed.get(main.as_str()).map(|(_, o)| *o);
        if runs_here(name, w, mesh_placed) {
            plan_wanted(&mut plan, &u, w, o);
        } else {
            plan_standby(&mut plan, &u, o);
        }
        wanted_units.extend(files.into_iter().map(|(n, _)| n));
    }
    for (unit_name, (name, u)) in &observed {
        if wanted_units.contains(*unit_name) {
            continue;
        }
        let reason = if spec.workloads.contains_key(*name) {
            Reason::NotNeeded
        } else {
            Reason::Removed
        };
        plan_unwanted(&mut plan, name, u, reason);
    }
    plan.actions
        .sort_by(|a, b| (a.op, &a.unit).cmp(&(b.op, &b.unit)));
    plan
}

/// A unit file a workload needs that only its main unit starts (a timer's service):
/// written when missing or changed, never started here. A run under way when its
/// definition changes is stopped; one whose file changed only cosmetically finishes.
fn plan_companion(plan: &mut Plan, u: &Unit<'_>, observed: Option<&ObservedUnit>) {
    let Some(o) = observed else {
        return plan.write(Op::Create, u, Reason::New);
    };
    let Some(installed) = &o.file else {
        if o.active_state.is_running() {
            return refuse(
                plan,
                u.workload,
                o,
                "is running without a unit file (a transient unit, or its file was deleted); stop it to let xnoded take the name",
            );
        }
        return plan.write(Op::Create, u, Reason::New);
    };
    if let Err(why) = owned_by(installed, u.workload) {
        return refuse(plan, u.workload, o, &why);
    }
    match unit::compare(installed, u.content) {
        Difference::None => {}
        Difference::Cosmetic | Difference::Reload => plan.write(Op::Update, u, Reason::Cosmetic),
        Difference::Restart(keys) => {
            if o.active_state.is_running() {
                plan.push(Op::Stop, u, Reason::Changed(keys.clone()));
            }
            plan.write(Op::Update, u, Reason::Changed(keys));
        }
    }
}

/// Whether a unit file is the workload's, or why not.
fn owned_by(installed: &str, name: &str) -> Result<(), String> {
    match UnitFile::parse(installed).owner() {
        Some(owner) if owner == name => Ok(()),
        Some(other) => Err(format!(
            "its file says it belongs to workload {other:?}; remove or rename it"
        )),
        None => Err(format!(
            "was not written by xnoded (no {}= line); remove or rename it",
            unit::MARKER
        )),
    }
}

/// A wanted workload: create, fix, or start its unit.
fn plan_wanted(plan: &mut Plan, u: &Unit<'_>, w: &Workload, observed: Option<&ObservedUnit>) {
    let name = u.workload;
    let Some(o) = observed else {
        plan.write(Op::Create, u, Reason::New);
        plan.push(Op::Start, u, Reason::New);
        return;
    };
    let running = o.active_state.is_running();
    // A failed workload its restart policy leaves down is not started again unless
    // its definition changes. A timer has no process to finish: it is set again.
    let restore =
        !running && (w.kind == crate::model::Kind::Timer || !o.finished(w.restart.policy));
    let Some(installed) = &o.file else {
        if running {
            refuse(
                plan,
                name,
                o,
                "is running without a unit file (a transient unit, or its file was deleted); stop it to let xnoded take the name",
            );
        } else {
            plan.write(Op::Create, u, Reason::New);
            plan.push(Op::Start, u, Reason::New);
        }
        return;
    };
    if let Err(why) = owned_by(installed, name) {
        return refuse(plan, name, o, &why);
    }
    let not_running = Reason::NotRunning(o.active_state);
    match unit::compare(installed, u.content) {
        Difference::None => {
            if restore {
                plan.push(Op::Start, u, not_running);
            }
        }
        Difference::Cosmetic => {
            plan.write(Op::Update, u, Reason::Cosmetic);
            if restore {
                plan.push(Op::Start, u, not_running);
            }
        }
        Difference::Reload => {
            plan.write(Op::Update, u, Reason::TriggersChanged);
            if running {
                plan.push(Op::Reload, u, Reason::TriggersChanged);
            } else if restore {
                plan.push(Op::Start, u, not_running);
            }
        }
        Difference::Restart(keys) if !running => {
            plan.write(Op::Update, u, Reason::Changed(keys));
            plan.push(Op::Start, u, not_running);
        }
        Difference::Restart(keys) => {
            // systemd hands credentials over only at a start: a new secret always
            // restarts, whatever the workload asks.
            let new_secret = keys.iter().any(|k| k == "Service.LoadCredential");
            if new_secret && !w.stop_if_changed {
                plan.write(Op::Update, u, Reason::Changed(keys.clone()));
                plan.push(Op::Restart, u, Reason::Changed(keys));
            } else if new_secret {
                plan.push(Op::Stop, u, Reason::Changed(keys.clone()));
                plan.write(Op::Update, u, Reason::Changed(keys.clone()));
                plan.push(Op::Start, u, Reason::Changed(keys));
            } else if w.reload_if_changed {
                plan.write(Op::Update, u, Reason::Changed(keys.clone()));
                plan.push(Op::Reload, u, Reason::ReloadInstead(keys));
            } else if !w.restart_if_changed {
                plan.write(Op::Update, u, Reason::RestartSkipped(keys));
            } else if !w.stop_if_changed {
                plan.write(Op::Update, u, Reason::Changed(keys.clone()));
                plan.push(Op::Restart, u, Reason::Changed(keys));
            } else {
                plan.push(Op::Stop, u, Reason::Changed(keys.clone()));
                plan.write(Op::Update, u, Reason::Changed(keys.clone()));
                plan.push(Op::Start, u, Reason::Changed(keys));
            }
        }
    }
}

/// A mesh workload placement runs on other nodes: stopped here, its unit file kept
/// (written when missing or outdated), so that taking it over is a start, with no
/// daemon reload in the way. A unit under its name that is not ours is left alone.
fn plan_standby(plan: &mut Plan, u: &Unit<'_>, observed: Option<&ObservedUnit>) {
    let (name, wanted) = (u.workload, u.content);
    let reason = Reason::NotPlacedHere;
    let Some(o) = observed else {
        plan.write(Op::Create, u, reason);
        return;
    };
    let ours = match &o.file {
        Some(text) => UnitFile::parse(text).owner() == Some(name),
        None => !o.active_state.is_running(),
    };
    if !ours {
        return;
    }
    if o.active_state.is_running() {
        plan.push(Op::Stop, u, reason.clone());
    }
    match &o.file {
        None => plan.write(Op::Create, u, reason),
        Some(text) if text != wanted => plan.write(Op::Update, u, reason),
        Some(_) => {}
    }
}

/// A unit of ours whose workload should not run here: stop it and remove its file.
/// Units without our marker are someone else's and are left alone.
fn plan_unwanted(plan: &mut Plan, name: &str, o: &ObservedUnit, reason: Reason) {
    let u = Unit {
        workload: name,
        name: &o.name,
        content: "",
    };
    let owned = o
        .file
        .as_deref()
        .is_some_and(|text| UnitFile::parse(text).owner() == Some(name));
    if !owned {
        return;
    }
    if o.active_state.is_running() {
        plan.push(Op::Stop, &u, reason.clone());
    }
    plan.push(Op::Remove, &u, reason);
}

fn refuse(plan: &mut Plan, name: &str, o: &ObservedUnit, why: &str) {
    plan.refused.push(Refusal {
        unit: o.name.clone(),
        workload: name.to_owned(),
        reason: format!("{} {why}", o.name),
    });
}
