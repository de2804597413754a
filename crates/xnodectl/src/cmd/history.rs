//! `xnodectl history` and `xnodectl rollback`

use std::fmt::Write as _;

use anyhow::Result;
use xnode_api::node::{History, RolledBack};
use xnode_api::{Request, Source};

use crate::Outcome;
use crate::cli::{AgentArgs, Output};
use crate::cmd;

pub fn run(args: &AgentArgs) -> Result<Outcome> {
    let state: History = cmd::call(&args.socket, Request::History)?;
    if matches!(args.output, Output::Json) {
        cmd::print_json(&state)?;
        return Ok(Outcome::Success);
    }
    let mut out = format!(
        "{:<4} {:<12} {:<13} {:<24} {}\n",
        "GEN", "", "OUTCOME", "SOURCE", "HASH"
    );
    for g in &state.generations {
        let n = Some(g.number);
        let mark = match (state.current == n, state.last_good == n) {
            (true, true) => "current,good",
            (true, false) => "current",
            (false, true) => "last good",
            _ => "",
        };
        let source = match &g.source {
            Source::File { path } => format!("file {path}"),
            Source::Api => "api".into(),
            Source::Rollback { to } => format!("rollback to {to}"),
            Source::Mesh {
                push_generation, ..
            } => format!("push {push_generation}"),
            Source::Fleet { generation } => format!("fleet {generation}"),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<12} {:<13} {:<24} {}",
            g.number,
            mark,
            super::status::outcome_word(&g.outcome),
            source,
            g.hash
        );
    }
    cmd::print(&out)?;
    Ok(Outcome::Success)
}

pub fn rollback(args: &AgentArgs) -> Result<Outcome> {
    let r: RolledBack = cmd::call(&args.socket, Request::Rollback)?;
    match args.output {
        Output::Json => cmd::print_json(&r)?,
        Output::Text => cmd::print(&format!(
            "Rolled back to generation {} (now generation {}).\n",
            r.restored, r.generation
        ))?,
    }
    Ok(Outcome::Success)
}
