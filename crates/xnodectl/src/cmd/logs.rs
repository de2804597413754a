//! `xnodectl logs WORKLOAD`

use anyhow::Result;
use xnode_api::Request;
use xnode_api::node::LogLine;

use crate::Outcome;
use crate::cli::{LogsArgs, Output};
use crate::cmd;

pub fn run(args: &LogsArgs) -> Result<Outcome> {
    if args.follow {
        return follow(args);
    }
    let request = Request::Logs {
        workload: args.workload.clone(),
        lines: args.lines,
    };
    let lines: Vec<LogLine> = cmd::call(&args.agent.socket, request)?;
    match args.agent.output {
        Output::Json => cmd::print_json(&lines)?,
        Output::Text => {
            let text: String = lines.iter().map(|l| format!("{}\n", l.message)).collect();
            cmd::print(&text)?;
        }
    }
    Ok(Outcome::Success)
}

/// `logs -f`: the last lines, then each new one, as the agent streams them.
fn follow(args: &LogsArgs) -> Result<Outcome> {
    let request = Request::Logs {
        workload: args.workload.clone(),
        lines: args.lines,
    };
    let path = format!("{}&follow=true", request.to_http()?.target);
    cmd::print_stream(&args.agent, &path, |line: &LogLine| line.message.clone())
}
