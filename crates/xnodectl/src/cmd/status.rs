//! `xnodectl status`

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{AgentArgs, Output};
use crate::cmd;

pub fn run(args: &AgentArgs) -> Result<Outcome> {
    let status = cmd::call(&args.socket, Request::Status)?;
    match args.output {
        Output::Json => cmd::print_json(&status)?,
        Output::Text => cmd::print(&text(&status))?,
    }
    Ok(Outcome::Success)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn text(s: &Value) -> String {
    let mut out = String::new();
    let g = &s["generation"];
    let _ = writeln!(out, "node        {}", str_of(s, "node"));
    if g.is_null() {
        let _ = writeln!(out, "generation  none yet");
    } else {
        let outcome = g["outcome"]["state"].as_str().unwrap_or("-");
        let _ = writeln!(
            out,
            "generation  {} ({outcome}, {})",
            g["number"],
            str_of(g, "hash")
        );
    }
    let _ = writeln!(
        out,
        "converged   {}",
        if s["converged"] == true { "yes" } else { "no" }
    );
    if let Some(reason) = g["outcome"]["reason"].as_str() {
        let _ = writeln!(out, "reason      {reason}");
    }
    if let Some(e) = s["spec_file"]["error"].as_str() {
        let _ = writeln!(
            out,
            "spec file   {} rejected: {e}",
            str_of(&s["spec_file"], "path")
        );
    }
    if let Some(e) = s["last_error"].as_str() {
        let _ = writeln!(out, "last error  {e}");
    }
    let mesh = &s["mesh"];
    if let Some(peer) = mesh["peer_id"].as_str() {
        let _ = writeln!(
            out,
            "mesh        {peer}: {} alive, {} suspect, {} dead",
            mesh["alive"], mesh["suspect"], mesh["dead"]
        );
    } else if let Some(e) = mesh["error"].as_str() {
        let _ = writeln!(out, "mesh        not joined: {e}");
    }
    let workloads = s["workloads"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !workloads.is_empty() {
        let width = workloads
            .iter()
            .map(|w| str_of(w, "name").len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(out, "\n{:<width$}  {:<12}  ERROR", "WORKLOAD", "STATE");
        for w in workloads {
            let _ = writeln!(
                out,
                "{:<width$}  {:<12}  {}",
                str_of(w, "name"),
                str_of(w, "active_state"),
                w["error"].as_str().unwrap_or("")
            );
        }
    }
    out
}
