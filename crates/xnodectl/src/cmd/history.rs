//! `xnodectl history` and `xnodectl rollback`

use std::fmt::Write as _;

use anyhow::Result;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{AgentArgs, Output};
use crate::cmd;

pub fn run(args: &AgentArgs) -> Result<Outcome> {
    let state = cmd::call(&args.socket, Request::History)?;
    if matches!(args.output, Output::Json) {
        cmd::print_json(&state)?;
        return Ok(Outcome::Success);
    }
    let mut out = format!(
        "{:<4} {:<12} {:<13} {:<24} {}\n",
        "GEN", "", "OUTCOME", "SOURCE", "HASH"
    );
    for g in state["generations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let n = &g["number"];
        let mark = match (state["current"] == *n, state["last_good"] == *n) {
            (true, true) => "current,good",
            (true, false) => "current",
            (false, true) => "last good",
            _ => "",
        };
        let source = match g["source"]["kind"].as_str() {
            Some("file") => format!("file {}", g["source"]["path"].as_str().unwrap_or("")),
            Some("rollback") => format!("rollback to {}", g["source"]["to"]),
            Some("mesh") => format!("push {}", g["source"]["push_generation"]),
            Some("fleet") => format!("fleet {}", g["source"]["generation"]),
            Some(other) => other.to_owned(),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<12} {:<13} {:<24} {}",
            n.to_string(),
            mark,
            g["outcome"]["state"].as_str().unwrap_or("-"),
            source,
            g["hash"].as_str().unwrap_or("-")
        );
    }
    cmd::print(&out)?;
    Ok(Outcome::Success)
}

pub fn rollback(args: &AgentArgs) -> Result<Outcome> {
    let r = cmd::call(&args.socket, Request::Rollback)?;
    match args.output {
        Output::Json => cmd::print_json(&r)?,
        Output::Text => cmd::print(&format!(
            "Rolled back to generation {} (now generation {}).\n",
            r["restored"], r["generation"]
        ))?,
    }
    Ok(Outcome::Success)
}
