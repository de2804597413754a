//! `xnodectl fleet apply|spec|status`: the owner signs one fleet spec for the whole
//! fleet, and sees it roll out.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use xnode_api::Request;
use xnode_api::fleet::{FleetSpec, FleetStatus};
use xnode_api::node::Done;
use xnode_spec::fleet_spec;
use xnode_spec::fleet_spec::signed::{self, SignedFleetSpec};
use xnode_spec::push;

use crate::Outcome;
use crate::cli::{AgentArgs, Output};
use crate::{cmd, input};

/// Signs the fleet spec in `file` and hands it to the local agent.
pub fn apply(
    key: &Path,
    generation: Option<u64>,
    file: &Path,
    agent: &AgentArgs,
) -> Result<Outcome> {
    let key = cmd::key::read(key)?;
    let bytes = input::read(file)?;
    if bytes.len() > push::MAX_BYTES {
        bail!(
            "{} is {} bytes; a fleet spec is at most {}",
            file.display(),
            bytes.len(),
            push::MAX_BYTES
        );
    }
    if let Err(invalid) = fleet_spec::parse(&bytes) {
        cmd::report(file, &invalid);
        return Ok(Outcome::Failure);
    }
    let spec: Value = serde_json::from_slice(&bytes)?;
    let (generation, now) = cmd::signing_time(generation, "fleet spec")?;
    let signed = signed::sign(&key, generation, now, spec);
    let answer: Done = cmd::call(
        &agent.socket,
        Request::FleetApply {
            spec: serde_json::to_value(signed)?,
        },
    )?;
    match agent.output {
        Output::Json => cmd::print_json(&answer)?,
        Output::Text => cmd::print(&format!("{}\n", answer.0))?,
    }
    Ok(Outcome::Success)
}

/// The newest fleet spec the node accepted.
pub fn show(agent: &AgentArgs) -> Result<Outcome> {
    let spec: FleetSpec = cmd::call(&agent.socket, Request::FleetSpec)?;
    match agent.output {
        Output::Json => cmd::print_json(&spec)?,
        Output::Text => {
            let signed: SignedFleetSpec = serde_json::from_value(spec.signed)
                .context("xnoded answered a fleet spec that is not a signed envelope")?;
            let mut out = String::new();
            let _ = writeln!(out, "generation  {}", spec.generation);
            let _ = writeln!(out, "hash        {}", spec.hash);
            let _ = writeln!(out, "running     {}", spec.running);
            let _ = writeln!(out, "signed at   {}", signed.timestamp);
            let _ = writeln!(out, "\n{}", serde_json::to_string_pretty(&signed.spec)?);
            cmd::print(&out)?;
        }
    }
    Ok(Outcome::Success)
}

/// The fleet's members, the rollout and the mesh workloads; again every second with
/// `watch`.
pub fn status(agent: &AgentArgs, watch: bool) -> Result<Outcome> {
    loop {
        let fleet: FleetStatus = cmd::call(&agent.socket, Request::FleetStatus)?;
        match agent.output {
            Output::Json => cmd::print_json(&fleet)?,
            Output::Text if watch => {
                // Clear the screen and go home, as watch(1) does.
                cmd::print(&format!("\x1b[2J\x1b[H{}", table(&fleet)))?;
            }
            Output::Text => cmd::print(&table(&fleet))?,
        }
        if !watch {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn table(fleet: &FleetStatus) -> String {
    let mut out = String::new();
    let r = &fleet.rollout;
    let _ = writeln!(
        out,
        "rollout     {} (fleet generation {}; {} of {} members on it, healthy)",
        r.state, r.newest, r.done, r.members
    );
    let _ = writeln!(
        out,
        "            last healthy everywhere: {}; last failed: {}",
        r.stable, r.failed
    );
    let _ = writeln!(out, "this node   {}", r.this_node);
    if let Some(c) = &fleet.conflict {
        let _ = writeln!(out, "conflict    {c}");
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<6} {:<14} {:<9} {:<10} {:<6} {:<9} {:<12} VERSION",
        "MEMBER", "STATE", "FLEET", "HEALTHY", "GENERATION", "FAILED", "CONVERGED", "LAST APPLY"
    );
    for m in &fleet.members {
        let name = format!("{}{}", m.node, if m.this_node { "*" } else { "" });
        let state = if m.live { "live" } else { "lost" };
        let Some(rep) = &m.report else {
            let _ = writeln!(
                out,
                "{name:<16} {state:<6} (reports nothing: an older release)"
            );
            continue;
        };
        let (f, n) = (&rep.fleet, &rep.node);
        let healthy = match f.healthy_ms {
            // What a lost member said last is no news of now.
            _ if !m.live => "-".into(),
            Some(ms) => format!("{} s", ms / 1000),
            None if f.conflict => "conflict".into(),
            None => "no".into(),
        };
        let _ = writeln!(
            out,
            "{name:<16} {state:<6} {:<14} {healthy:<9} {:<10} {:<6} {:<9} {:<12} {}",
            f.running,
            n.generation,
            n.failed,
            if n.converged { "yes" } else { "no" },
            n.last_apply,
            n.version,
        );
    }
    let _ = writeln!(out, "\n{:<24} {:<8} RUNNING ON", "MESH WORKLOAD", "HEALTHY");
    for w in &fleet.workloads {
        let _ = writeln!(
            out,
            "{:<24} {:<8} {}",
            w.name,
            if w.healthy { "yes" } else { "no" },
            if w.running_on.is_empty() {
                "-".into()
            } else {
                w.running_on.join(", ")
            }
        );
    }
    out
}
