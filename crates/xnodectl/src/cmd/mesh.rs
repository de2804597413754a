//! `xnodectl mesh peers|services|push`: the mesh through this node's xnoded.

use std::fmt::Write as _;
use std::time::SystemTime;

use anyhow::Result;
use serde_json::Value;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{AgentArgs, MeshCommand, Output};
use crate::cmd;

pub fn run(command: &MeshCommand) -> Result<Outcome> {
    match command {
        MeshCommand::Peers(agent) => {
            let members = cmd::call(&agent.socket, Request::MeshPeers)?;
            show(agent, &members, peers_table)
        }
        MeshCommand::Services { name, agent } => {
            let request = Request::MeshServices {
                service: name.clone(),
            };
            let providers = cmd::call(&agent.socket, request)?;
            show(agent, &providers, services_table)
        }
        MeshCommand::Push {
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
            let spec: Value = serde_json::from_slice(&bytes)?;
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
            let generation = generation.unwrap_or(now.as_millis() as u64);
            let push = xnode_spec::push::sign(&key, node, generation, now.as_secs(), spec);
            let answer = cmd::call(
                &agent.socket,
                Request::MeshPush {
                    push: serde_json::to_value(push)?,
                },
            )?;
            match agent.output {
                Output::Json => cmd::print_json(&answer)?,
                Output::Text => cmd::print(&format!(
                    "{node}: {}\n",
                    answer.as_str().unwrap_or_default()
                ))?,
            }
            Ok(Outcome::Success)
        }
    }
}

fn show(agent: &AgentArgs, value: &Value, table: fn(&[Value]) -> String) -> Result<Outcome> {
    match agent.output {
        Output::Json => cmd::print_json(value)?,
        Output::Text => cmd::print(&table(
            value.as_array().map(Vec::as_slice).unwrap_or_default(),
        ))?,
    }
    Ok(Outcome::Success)
}

fn peers_table(members: &[Value]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<5} {:<9} {:<54} {}\n",
        "NODE", "STATE", "CPUS", "MEM FREE", "PEER ID", "LABELS"
    );
    for m in members {
        let labels: Vec<String> = m["labels"]
            .as_object()
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let free = m["resources"]["memory_free"].as_u64().unwrap_or(0) >> 20;
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<5} {:<9} {:<54} {}",
            m["node"].as_str().unwrap_or("-"),
            m["state"].as_str().unwrap_or("-"),
            m["resources"]["cpus"],
            format!("{free}M"),
            m["peer_id"].as_str().unwrap_or("-"),
            labels.join(",")
        );
    }
    out
}

fn services_table(providers: &[Value]) -> String {
    let mut out = format!(
        "{:<20} {:<20} {:<12} {}\n",
        "SERVICE", "NODE", "PORT", "ADDRESSES"
    );
    for p in providers {
        let addresses: Vec<&str> = p["addresses"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<12} {}",
            p["service"].as_str().unwrap_or("-"),
            p["node"].as_str().unwrap_or("-"),
            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("tcp")),
            addresses.join(" ")
        );
    }
    out
}
