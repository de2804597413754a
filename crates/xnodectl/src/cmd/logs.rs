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
    let mut failed = None;
    let stopped = xnode_api::follow(&args.agent.socket, &path, |line: LogLine| {
        let shown = match args.agent.output {
            Output::Json => serde_json::to_string(&line).map(|l| l + "\n"),
            Output::Text => Ok(format!("{}\n", line.message)),
        };
        // Stop at a closed pipe (`| head`), or anything else that cannot be printed.
        match shown
            .map_err(anyhow::Error::from)
            .and_then(|s| cmd::print(&s))
        {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match (failed, stopped) {
        (Some(e), _) => Err(e),
        (None, true) => Ok(Outcome::Success),
        // xnoded never ends a followed log by itself: it went away.
        (None, false) => Err(anyhow::anyhow!(
            "xnoded ended the log's stream (did it restart?)"
        )),
    }
}
