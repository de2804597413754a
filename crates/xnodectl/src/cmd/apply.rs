//! `xnodectl apply FILE`

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;
use xnode_api::node::{Applied, Plan};
use xnode_api::{Outcome as Ended, Request};

use crate::Outcome;
use crate::cli::{ApplyArgs, Output, ReloadArgs};
use crate::cmd::progress::{Progress, Show};
use crate::{cmd, input};

pub fn run(args: &ApplyArgs) -> Result<Outcome> {
    let Some((validated, bytes)) = cmd::load_valid(&args.file)? else {
        return Ok(Outcome::Failure);
    };
    let spec: Value = serde_json::from_slice(&bytes)?;
    let socket = &args.agent.socket;
    let text = matches!(args.agent.output, Output::Text);
    if text {
        let plan: Plan = cmd::call(socket, Request::Plan { spec: spec.clone() })?;
        let actions = &plan.actions;
        cmd::print(&format!(
            "Applying {} ({}): {} actions\n",
            input::name(&args.file),
            validated.hash,
            actions.len()
        ))?;
        for a in actions {
            cmd::print(&format!("  {:<8} {}  {}\n", a.op, a.unit, a.reason))?;
        }
        cmd::print("Waiting for the changed workloads to become healthy…\n")?;
    }
    let request = Request::Apply {
        spec,
        no_rollback: args.no_rollback,
    };
    let show = match (text, std::io::stdout().is_terminal()) {
        (false, _) => Show::Nothing,
        (true, true) => Show::Terminal,
        (true, false) => Show::Lines,
    };
    if show == Show::Nothing && !args.detach {
        let result: Applied = cmd::call(socket, request)?;
        cmd::print_json(&result)?;
        return outcome(&result, false);
    }
    let progress = Progress::start(socket, show, &validated.hash.to_string());
    let (done, answer) = std::sync::mpsc::channel();
    let caller = socket.clone();
    std::thread::spawn(move || {
        let _ = done.send(cmd::call::<Applied>(&caller, request));
    });
    // The apply's answer, or with --detach its generation once recorded.
    let result = loop {
        if let Ok(result) = answer.try_recv() {
            break result;
        }
        if args.detach
            && let Some(n) = progress.recorded(Duration::from_millis(100))
        {
            progress.stop();
            return detached(n, text);
        }
        match answer.recv_timeout(Duration::from_millis(100)) {
            Ok(result) => break result,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Err(anyhow::anyhow!("the call to xnoded ended with no answer"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    progress.stop();
    let result = result?;
    if !text {
        cmd::print_json(&result)?;
    }
    outcome(&result, text)
}

/// `apply --detach`: the apply goes on without this client.
fn detached(generation: u64, text: bool) -> Result<Outcome> {
    if text {
        cmd::print(&format!(
            "Generation {generation} is being applied; `xnodectl wait --generation {generation}` waits for it.\n"
        ))?;
    } else {
        cmd::print_json(&serde_json::json!({"generation": generation, "detached": true}))?;
    }
    Ok(Outcome::Success)
}

/// `xnodectl reload`: the spec file taken in, and what became of it.
pub fn reload(args: &ReloadArgs) -> Result<Outcome> {
    let text = matches!(args.agent.output, Output::Text);
    let result: Applied = xnode_api::call(
        &args.agent.socket,
        Request::Reload,
        Duration::from_secs(args.timeout),
    )?;
    if !text {
        cmd::print_json(&result)?;
        return Ok(Outcome::Success);
    }
    if result.unchanged {
        cmd::print(&format!(
            "The spec file holds the spec in force (generation {}).\n",
            result.generation
        ))?;
        return Ok(Outcome::Success);
    }
    outcome(&result, text)
}

/// Says what became of an apply; success only when it is healthy.
fn outcome(result: &Applied, text: bool) -> Result<Outcome> {
    let generation = result.generation;
    match &result.outcome {
        Ended::Healthy => {
            if text {
                cmd::print(&format!(
                    "Generation {generation} is healthy: the node converged.\n"
                ))?;
            }
            Ok(Outcome::Success)
        }
        Ended::RolledBack { reason } => {
            if text {
                cmd::print(&format!(
                    "Generation {generation} was unhealthy and was rolled back (now generation {}): {reason}\n",
                    result
                        .rolled_back_to
                        .map_or_else(|| "-".to_owned(), |n| n.to_string())
                ))?;
            }
            Ok(Outcome::Failure)
        }
        Ended::Unhealthy { reason } => {
            if text {
                cmd::print(&format!(
                    "Generation {generation} is in force but unhealthy: {reason}\n"
                ))?;
            }
            Ok(Outcome::Failure)
        }
        Ended::Applying => bail!("xnoded answered before the apply ended"),
    }
}
