//! `xnodectl fleet join-key|admit|revoke|members`: the owner admits nodes to a fleet
//! (one by one, or with a join key that admits them itself), revokes them, and sees
//! who is in.

use std::fmt::Write as _;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use xnode_api::Request;
use xnode_api::mesh::{FleetView, Standing};
use xnode_api::node::Done;
use xnode_spec::fleet::{Certificate, JoinKey, Revocation};

use crate::Outcome;
use crate::cli::{FleetCommand, Output};
use crate::cmd;

pub fn run(command: &FleetCommand) -> Result<Outcome> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    match command {
        FleetCommand::JoinKey { key, expires, file } => {
            let owner = cmd::key::read(key)?;
            let expires = later(now, expires)?;
            let join_key = JoinKey::create(&owner, expires)?;
            cmd::write_secret(file, "join key", &serde_json::to_string_pretty(&join_key)?)?;
            cmd::print(&format!(
                "{}: a join key for the fleet of {}, until {expires} (Unix time)\n",
                file.display(),
                owner.owner()
            ))?;
            Ok(Outcome::Success)
        }
        FleetCommand::Admit {
            key,
            expires,
            peers,
            agent,
        } => {
            let owner = cmd::key::read(key)?;
            let expires = later(now, expires)?;
            let named = peers
                .iter()
                .map(|p| named_peer(p))
                .collect::<Result<Vec<_>>>()?;
            let mut failed = false;
            for (node, peer) in named {
                let cert = Certificate::issue(&owner, peer, node, now, expires);
                let request = Request::FleetAdmit {
                    certificate: serde_json::to_value(&cert)?,
                };
                failed |= !report(agent.output, peer, cmd::call(&agent.socket, request))?;
            }
            Ok(if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            })
        }
        FleetCommand::Revoke { key, peer, agent } => {
            let owner = cmd::key::read(key)?;
            let revocation = Revocation::issue(&owner, peer, now);
            let request = Request::FleetRevoke {
                revocation: serde_json::to_value(&revocation)?,
            };
            Ok(
                match report(agent.output, peer, cmd::call(&agent.socket, request))? {
                    true => Outcome::Success,
                    false => Outcome::Failure,
                },
            )
        }
        FleetCommand::Apply {
            key,
            generation,
            file,
            agent,
        } => cmd::fleet_spec::apply(key, *generation, file, agent),
        FleetCommand::Spec(agent) => cmd::fleet_spec::show(agent),
        FleetCommand::Status { agent, watch } => cmd::fleet_spec::status(agent, *watch),
        FleetCommand::Schema => {
            cmd::print_json(&xnode_spec::fleet_spec::schema())?;
            Ok(Outcome::Success)
        }
        FleetCommand::Members(agent) => {
            let fleet: FleetView = cmd::call(&agent.socket, Request::FleetMembers)?;
            match agent.output {
                Output::Json => cmd::print_json(&fleet)?,
                Output::Text => cmd::print(&members_table(&fleet, now))?,
            }
            Ok(Outcome::Success)
        }
    }
}

/// `now` plus a duration, in seconds since the Unix epoch.
fn later(now: u64, duration: &str) -> Result<u64> {
    now.checked_add(seconds(duration)?)
        .with_context(|| format!("{duration:?} is further off than any clock reaches"))
}

/// "30d", "12h", "90min", "3600s".
fn seconds(text: &str) -> Result<u64> {
    let secs = match text.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(24 * 3600)),
        None => xnode_spec::Duration::parse(text)
            .ok()
            .map(|d| d.as_millis() / 1000),
    };
    match secs {
        Some(s) if s > 0 => Ok(s),
        _ => bail!("{text:?} is not a duration (use e.g. \"30d\", \"12h\", \"90min\")"),
    }
}

/// Prints one peer's answer; whether it was accepted.
fn report(output: Output, peer: &str, answer: Result<Done>) -> Result<bool> {
    let (ok, text) = match answer {
        Ok(Done(text)) => (true, text),
        Err(e) => (false, format!("{e:#}")),
    };
    match output {
        Output::Json => {
            cmd::print_json(&serde_json::json!({"peer": peer, "ok": ok, "message": text}))?
        }
        Output::Text if ok => cmd::print(&format!("{peer}: {text}\n"))?,
        Output::Text => eprintln!("{peer}: {text}"),
    }
    Ok(ok)
}

fn members_table(fleet: &FleetView, now: u64) -> String {
    let mut out = String::new();
    let owner = fleet.owner.as_deref().unwrap_or("-");
    let _ = writeln!(out, "FLEET OF {owner}");
    match &fleet.standing {
        Some(Standing::Member { warning, .. }) => {
            if let Some(w) = warning {
                let _ = writeln!(out, "warning: {w}");
            }
        }
        Some(Standing::Outside { why }) => {
            let _ = writeln!(out, "this node is not a member: {why}");
        }
        None => {
            let _ = writeln!(out, "this node names no owner, so it is in no fleet");
        }
    }
    let _ = writeln!(
        out,
        "{:<20} {:<54} {:<10} {:<12} ADMITTED BY",
        "NODE", "PEER ID", "STATE", "EXPIRES IN"
    );
    for m in &fleet.members {
        let left = m.expires.saturating_sub(now);
        let _ = writeln!(
            out,
            "{:<20} {:<54} {:<10} {:<12} {}",
            m.node,
            m.peer_id,
            m.state,
            format!("{}d {}h", left / 86400, left % 86400 / 3600),
            m.admitted_by,
        );
    }
    out
}

/// `NAME=PEER_ID`, the name checked as node names are.
fn named_peer(arg: &str) -> Result<(&str, &str)> {
    let Some((node, peer)) = arg.split_once('=') else {
        anyhow::bail!(
            "{arg:?}: name the node too, as NAME=PEER_ID (the certificate binds the name to the peer)"
        );
    };
    xnode_spec::rules::dns_label(node).map_err(|why| anyhow::anyhow!("{arg:?}: {why}"))?;
    Ok((node, peer))
}
