//! `xnodectl plan --spec FILE [--observed FILE]`

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use xnode_spec::plan::{Observed, Op, Plan, plan};
use xnode_spec::{Placement, Spec, SpecHash};

use crate::Outcome;
use crate::cli::{Output, PlanArgs};
use crate::{cmd, input};

#[derive(Serialize)]
struct Report<'a> {
    node: &'a str,
    spec_hash: SpecHash,
    daemon_reload: bool,
    #[serde(flatten)]
    plan: &'a Plan,
    /// Mesh workloads left to placement: not run here, unless `--placed` says so.
    mesh_elsewhere: Vec<&'a str>,
}

pub fn run(args: &PlanArgs) -> Result<Outcome> {
    let Some((validated, _)) = cmd::load_valid(&args.spec)? else {
        return Ok(Outcome::Failure);
    };
    let spec = &validated.spec;
    let observed = match &args.observed {
        Some(path) => Observed::from_json(&input::read(path)?)
            .with_context(|| format!("cannot use {}", input::name(path)))?,
        None => Observed::default(),
    };
    let placed: BTreeSet<String> = args.placed.iter().cloned().collect();
    for name in &placed {
        match spec.workloads.get(name).map(|w| &w.placement) {
            Some(Placement::Mesh(_)) => {}
            Some(Placement::Local) => {
                bail!("--placed {name}: that workload is local, not mesh-placed")
            }
            None => bail!("--placed {name}: the spec has no workload of that name"),
        }
    }
    let plan = plan(spec, &observed.units, &placed);
    let report = Report {
        node: &spec.node.name,
        spec_hash: validated.hash,
        daemon_reload: plan.needs_daemon_reload(),
        plan: &plan,
        mesh_elsewhere: mesh_elsewhere(spec, &placed),
    };
    match args.output {
        Output::Json => cmd::print_json(&report)?,
        Output::Text => cmd::print(&text(&report))?,
    }
    Ok(Outcome::Success)
}

fn mesh_elsewhere<'a>(spec: &'a Spec, placed: &BTreeSet<String>) -> Vec<&'a str> {
    spec.workloads
        .iter()
        .filter(|(name, w)| matches!(w.placement, Placement::Mesh(_)) && !placed.contains(*name))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The plan as a table, with the daemon reload shown where it happens: after the
/// files are written, before any job runs.
fn text(r: &Report<'_>) -> String {
    let mut s = String::new();
    let actions = &r.plan.actions;
    let _ = writeln!(s, "Plan for node {} (spec {})", r.node, r.spec_hash);
    if actions.is_empty() {
        let _ = writeln!(s, "Nothing to do: the units match the spec.");
    }
    let width = actions.iter().map(|a| a.unit.len()).max().unwrap_or(0);
    let mut rows: Vec<(String, &str, String)> = Vec::new();
    for a in actions {
        if r.daemon_reload
            && a.op > Op::Update
            && !rows.iter().any(|(op, ..)| op == "daemon-reload")
        {
            rows.push(("daemon-reload".into(), "", "unit files changed".into()));
        }
        rows.push((a.op.to_string(), &a.unit, a.reason.to_string()));
    }
    if r.daemon_reload && !rows.iter().any(|(op, ..)| op == "daemon-reload") {
        rows.push(("daemon-reload".into(), "", "unit files changed".into()));
    }
    for (op, unit, reason) in rows {
        let _ = writeln!(s, "  {op:<13} {unit:<width$}  {reason}");
    }
    if !r.plan.refused.is_empty() {
        let _ = writeln!(s, "Refused (not managed by xnoded, left untouched):");
        for refusal in &r.plan.refused {
            let _ = writeln!(s, "  {}", refusal.reason);
        }
    }
    if !r.mesh_elsewhere.is_empty() {
        let _ = writeln!(
            s,
            "Mesh workloads, placed by the mesh: {}",
            r.mesh_elsewhere.join(", ")
        );
    }
    s
}
