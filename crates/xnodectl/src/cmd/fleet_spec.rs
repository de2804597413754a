//! `xnodectl fleet apply|spec|status`: the owner signs one fleet spec for the whole
//! fleet, and sees it roll out.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;
use xnode_api::Request;
use xnode_spec::fleet_spec::{self, signed};
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
    let answer = cmd::call(
        &agent.socket,
        Request::FleetApply {
            spec: serde_json::to_value(signed)?,
        },
    )?;
    match agent.output {
        Output::Json => cmd::print_json(&answer)?,
        Output::Text => cmd::print(&format!("{}\n", answer.as_str().unwrap_or_default()))?,
    }
    Ok(Outcome::Success)
}

/// The newest fleet spec the node accepted.
pub fn show(agent: &AgentArgs) -> Result<Outcome> {
    let spec = cmd::call(&agent.socket, Request::FleetSpec)?;
    match agent.output {
        Output::Json => cmd::print_json(&spec)?,
        Output::Text => {
            let mut out = String::new();
            let _ = writeln!(out, "generation  {}", spec["generation"]);
            let _ = writeln!(out, "hash        {}", text(&spec["hash"]));
            let _ = writeln!(out, "running     {}", spec["running"]);
            let _ = writeln!(out, "signed at   {}", spec["signed"]["timestamp"]);
            let _ = writeln!(
                out,
                "\n{}",
                serde_json::to_string_pretty(&spec["signed"]["spec"])?
            );
            cmd::print(&out)?;
        }
    }
    Ok(Outcome::Success)
}

/// The fleet's members, the rollout and the mesh workloads; again every second with
/// `watch`.
pub fn status(agent: &AgentArgs, watch: bool) -> Result<Outcome> {
    loop {
        let fleet = cmd::call(&agent.socket, Request::FleetStatus)?;
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

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn table(fleet: &Value) -> String {
    let mut out = String::new();
    let r = &fleet["rollout"];
    let _ = writeln!(
        out,
        "rollout     {} (fleet generation {}; {} of {} members on it, healthy)",
        text(&r["state"]),
        r["newest"],
        r["done"],
        r["members"]
    );
    let _ = writeln!(
        out,
        "            last healthy everywhere: {}; last failed: {}",
        r["stable"], r["failed"]
    );
    let _ = writeln!(out, "this node   {}", text(&r["this_node"]));
    if let Some(c) = fleet["conflict"].as_str() {
        let _ = writeln!(out, "conflict    {c}");
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<6} {:<14} {:<9} {:<10} {:<6} {:<9} {:<12} VERSION",
        "MEMBER", "STATE", "FLEET", "HEALTHY", "GENERATION", "FAILED", "CONVERGED", "LAST APPLY"
    );
    for m in fleet["members"].as_array().into_iter().flatten() {
        let name = format!(
            "{}{}",
            text(&m["node"]),
            if m["this_node"] == true { "*" } else { "" }
        );
        let state = if m["live"] == true { "live" } else { "lost" };
        let rep = &m["report"];
        if rep.is_null() {
            let _ = writeln!(
                out,
                "{name:<16} {state:<6} (reports nothing: an older release)"
            );
            continue;
        }
        let f = &rep["fleet"];
        let n = &rep["node"];
        let healthy = match f["healthy_ms"].as_u64() {
            // What a lost member said last is no news of now.
            _ if m["live"] != true => "-".into(),
            Some(ms) => format!("{} s", ms / 1000),
            None if f["conflict"] == true => "conflict".into(),
            None => "no".into(),
        };
        let number = |v: &Value| v.as_u64().map_or("-".into(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{name:<16} {state:<6} {:<14} {healthy:<9} {:<10} {:<6} {:<9} {:<12} {}",
            number(&f["running"]),
            number(&n["generation"]),
            number(&n["failed"]),
            if n["converged"] == true { "yes" } else { "no" },
            text(&n["last_apply"]),
            text(&n["version"]),
        );
    }
    let _ = writeln!(out, "\n{:<24} {:<8} RUNNING ON", "MESH WORKLOAD", "HEALTHY");
    for w in fleet["workloads"].as_array().into_iter().flatten() {
        let on: Vec<&str> = w["running_on"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(
            out,
            "{:<24} {:<8} {}",
            text(&w["name"]),
            if w["healthy"] == true { "yes" } else { "no" },
            if on.is_empty() {
                "-".into()
            } else {
                on.join(", ")
            }
        );
    }
    out
}
