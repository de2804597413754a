//! `xnodectl mesh peers|services|push`: the mesh through this node's xnoded.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;
use xnode_api::Request;
use xnode_api::fleet::FleetStatus;
use xnode_api::mesh::{Member, Provider};
use xnode_api::node::{Done, Status};
use xnode_spec::push;

use crate::Outcome;
use crate::cli::{AgentArgs, MeshCommand, Output};
use crate::cmd;

pub fn run(command: &MeshCommand) -> Result<Outcome> {
    match command {
        MeshCommand::Peers(agent) => {
            let members: Vec<Member> = cmd::call(&agent.socket, Request::MeshPeers)?;
            show(agent, &members, peers_table)
        }
        MeshCommand::Services { name, agent } => {
            let request = Request::MeshServices {
                service: name.clone(),
            };
            let providers: Vec<Provider> = cmd::call(&agent.socket, request)?;
            show(agent, &providers, services_table)
        }
        MeshCommand::Push {
            wait,
            key,
            generation,
            node,
            file,
            agent,
        } => {
            let key = cmd::key::read(key)?;
            let Some((_, bytes)) = cmd::load_valid(file)? else {
                return Ok(Outcome::Failure);
            };
            if bytes.len() > push::MAX_BYTES {
                bail!(
                    "{} is {} bytes; a push carries at most {} (apply a spec this large on the node itself)",
                    file.display(),
                    bytes.len(),
                    push::MAX_BYTES
                );
            }
            let spec: Value = serde_json::from_slice(&bytes)?;
            let (generation, now) = cmd::signing_time(*generation, "push")?;
            let peer = peer_of(&agent.socket, node)?;
            let push = push::sign(&key, &peer, generation, now, spec);
            let Done(answer) = cmd::call(
                &agent.socket,
                Request::MeshPush {
                    push: serde_json::to_value(push)?,
                },
            )?;
            match agent.output {
                Output::Json => cmd::print_json(&answer)?,
                Output::Text => cmd::print(&format!("{node}: {answer}\n"))?,
            }
            if !*wait {
                return Ok(Outcome::Success);
            }
            let Some(generation) = applied_as(&answer) else {
                bail!("the node's answer names no generation to wait for: {answer}");
            };
            wait_for_apply(&agent.socket, node, &peer, generation)
        }
    }
}

/// The generation an accepted push is applied as, from the node's answer
/// ("… applying it as generation N").
fn applied_as(answer: &str) -> Option<u64> {
    answer
        .rsplit_once("as generation ")
        .and_then(|(_, n)| n.trim().parse().ok())
}

/// Waits until `peer`'s heartbeats say how its apply of `generation` ended.
fn wait_for_apply(socket: &Path, node: &str, peer: &str, generation: u64) -> Result<Outcome> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    loop {
        let fleet: FleetStatus = cmd::call(socket, Request::FleetStatus)?;
        let report = fleet
            .members
            .into_iter()
            .find(|m| m.peer_id == peer)
            .and_then(|m| m.report);
        let Some(report) = report else {
            bail!(
                "{node} reports no outcomes in its heartbeats (an older release?): see its `xnodectl history`"
            );
        };
        let applied = report.node.applied;
        let outcome = report.node.last_apply.as_str();
        if applied > generation {
            bail!(
                "{node} has applied generation {applied} since; generation {generation}'s outcome is in its history"
            );
        }
        if applied == generation && outcome != "applying" {
            cmd::print(&format!("{node}: generation {generation}: {outcome}\n"))?;
            return Ok(if outcome == "healthy" {
                Outcome::Success
            } else {
                Outcome::Failure
            });
        }
        if std::time::Instant::now() > deadline {
            bail!("{node} has not told the outcome of generation {generation} in 15 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A libp2p peer id as printed (base58: an ed25519 key's starts `12D3KooW`, a
/// hashed one's `Qm`), which a node name of that shape would only imitate.
fn looks_like_peer_id(s: &str) -> bool {
    (s.starts_with("12D3KooW") || s.starts_with("Qm")) && s.len() >= 46
}

/// The peer id of `target`: itself if it is one, else the one live member (or this
/// node) of that name. A push is signed for a peer id, which only that node holds;
/// names are chosen by the nodes themselves.
fn peer_of(socket: &Path, target: &str) -> Result<String> {
    if looks_like_peer_id(target) || xnode_spec::rules::dns_label(target).is_err() {
        return Ok(target.to_owned());
    }
    let status: Status = cmd::call(socket, Request::Status)?;
    if status.node.as_deref() == Some(target)
        && let Some(own) = status.mesh.and_then(|m| m.node)
    {
        return Ok(own.peer_id);
    }
    let members: Vec<Member> = cmd::call(socket, Request::MeshPeers)?;
    let named: Vec<&str> = members
        .iter()
        .filter(|m| m.node == target && m.state != "dead")
        .map(|m| m.peer_id.as_str())
        .collect();
    match named.as_slice() {
        [peer] => Ok((*peer).to_owned()),
        [] => bail!(
            "no live member is called {target:?}; name its peer id instead (xnodectl mesh peers)"
        ),
        _ => bail!(
            "{} live members call themselves {target:?}: name the peer id to push to ({})",
            named.len(),
            named.join(", ")
        ),
    }
}

fn show<T: serde::Serialize>(
    agent: &AgentArgs,
    rows: &[T],
    table: fn(&[T]) -> String,
) -> Result<Outcome> {
    match agent.output {
        Output::Json => cmd::print_json(&rows)?,
        Output::Text => cmd::print(&table(rows))?,
    }
    Ok(Outcome::Success)
}

fn peers_table(members: &[Member]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<5} {:<9} {:<54} {}\n",
        "NODE", "STATE", "CPUS", "MEM FREE", "PEER ID", "LABELS"
    );
    for m in members {
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let free = m.resources.memory_free >> 20;
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<5} {:<9} {:<54} {}",
            m.node,
            m.state,
            m.resources.cpus,
            format!("{free}M"),
            m.peer_id,
            labels.join(",")
        );
    }
    out
}

fn services_table(providers: &[Provider]) -> String {
    let mut out = format!(
        "{:<20} {:<20} {:<12} {}\n",
        "SERVICE", "NODE", "PORT", "ADDRESSES"
    );
    for p in providers {
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<12} {}",
            p.service,
            p.node,
            format!("{}/{}", p.port, p.protocol),
            p.addresses.join(" ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_id_is_pushed_to_as_such_and_a_name_is_looked_up() {
        for peer in [
            "12D3KooWCuwuJ6FUvK53jMwVMAQJG4ZNhLAU85cbXmes2ceb4F7K",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        ] {
            assert!(looks_like_peer_id(peer), "{peer}");
            // It would pass for a node name: that alone must not decide.
            assert!(xnode_spec::rules::dns_label(peer).is_ok());
        }
        for name in ["n2", "web-1", "12D3KooW", "qmnode"] {
            assert!(!looks_like_peer_id(name), "{name}");
        }
    }
}
