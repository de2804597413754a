//! `xnodectl logs WORKLOAD`

use anyhow::Result;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{LogsArgs, Output};
use crate::cmd;

pub fn run(args: &LogsArgs) -> Result<Outcome> {
    let request = Request::Logs {
        workload: args.workload.clone(),
        lines: args.lines,
    };
    let lines = cmd::call(&args.agent.socket, request)?;
    match args.agent.output {
        Output::Json => cmd::print_json(&lines)?,
        Output::Text => {
            let text: String = lines
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|l| format!("{}\n", l["message"].as_str().unwrap_or("")))
                .collect();
            cmd::print(&text)?;
        }
    }
    Ok(Outcome::Success)
}
