//! `xnodectl events`: the node's changes as they happen.

use anyhow::Result;
use xnode_api::events::{self, Event};

use super::progress::line;
use super::status::outcome_word;
use crate::Outcome;
use crate::cli::AgentArgs;
use crate::cmd;

pub fn run(args: &AgentArgs) -> Result<Outcome> {
    cmd::print_stream(args, events::PATH, text)
}

/// An event as a line for people.
fn text(event: &Event) -> String {
    match event {
        Event::Snapshot { status } => format!(
            "node {}: {}, {}",
            status.node.as_deref().unwrap_or("-"),
            status
                .generation
                .as_ref()
                .map_or("no generation yet".to_owned(), |g| {
                    format!("generation {} {}", g.number, outcome_word(&g.outcome))
                }),
            if status.converged {
                "converged"
            } else {
                "not converged"
            }
        ),
        Event::Generation { generation: g } => {
            format!("generation {}: {}", g.number, outcome_word(&g.outcome))
        }
        Event::Progress { applying } => line(applying),
        Event::Workload {
            name,
            state,
            health,
        } => match health {
            Some(h) if h.healthy => format!("workload {name}: {state}, healthy"),
            Some(h) => format!(
                "workload {name}: {state}, unhealthy: {}",
                h.why.as_deref().unwrap_or("-")
            ),
            None => format!("workload {name}: {state}"),
        },
        Event::WorkloadRemoved { name } => format!("workload {name}: removed"),
        Event::Member {
            node,
            peer_id,
            state,
        } => format!("member {node} ({peer_id}): {state}"),
        Event::Placement { workload: w } => format!(
            "mesh workload {}: runs on {} (here: {})",
            w.name,
            if w.running_on.is_empty() {
                "-".to_owned()
            } else {
                w.running_on.join(",")
            },
            w.here
        ),
        Event::Rollout { rollout } => format!("rollout: {}", rollout.step),
        Event::Converged { converged: true } => "converged".into(),
        Event::Converged { converged: false } => "not converged".into(),
        Event::Unknown => "a change this xnodectl does not know (update it)".into(),
    }
}
