//! `xnode-meshd`: a mesh member that runs no workloads. A fleet's bootstrap peer, and the
//! node the mesh's own tests and benchmark start by the dozen.
//!
//! It writes what happens as JSON lines on standard output (`ready`, then `member`
//! changes) and answers requests read as lines on standard input: `members`,
//! `providers [NAME]`, `status`, `fleet`, `admit PEER CERTIFICATE_JSON`,
//! `revoke REVOCATION_JSON`, `push PEER TEXT` (the text as a push's bytes: an
//! agent's answer comes back, or why it did not arrive) and `narinfo PEER HASH` (a
//! store path's narinfo asked of a peer: its answer, or why there was none).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Parser;
use libp2p::Multiaddr;
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;
use xnode_mesh::fleet::{FleetConfig, JoinKey};
use xnode_mesh::membership::State;
use xnode_mesh::message::Service;
use xnode_mesh::node::{Config, Event, Handle, Node};
use xnode_spec::Owner;

/// A mesh member that runs no workloads.
#[derive(Debug, Parser)]
#[command(name = "xnode-meshd", version, about)]
struct Args {
    /// Where its identity (mesh.key) is kept.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Its node name.
    #[arg(long)]
    name: String,
    /// Where to listen (repeatable).
    #[arg(
        long,
        value_name = "MULTIADDR",
        default_value = "/ip4/0.0.0.0/tcp/7720"
    )]
    listen: Vec<Multiaddr>,
    /// A peer to join through (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// A service to advertise, NAME:PORT (repeatable).
    #[arg(long, value_name = "NAME:PORT")]
    service: Vec<String>,
    /// A label, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Find peers on the local link with mDNS.
    #[arg(long)]
    mdns: bool,
    /// The fleet to be in: its owner (`ed25519:…` or `eth:0x…`). Without it (or a join
    /// key) the node is in no fleet.
    #[arg(long, value_name = "OWNER")]
    owner: Option<String>,
    /// A join key file (from `xnodectl fleet join-key`) to admit this node with.
    #[arg(long, value_name = "FILE")]
    join_key: Option<PathBuf>,
}

fn fleet(args: &Args) -> Result<Option<FleetConfig>> {
    let join_key = args
        .join_key
        .as_ref()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the join key {}", path.display()))?;
            JoinKey::parse(&text).with_context(|| format!("{}", path.display()))
        })
        .transpose()?;
    let owner = match (&args.owner, &join_key) {
        (Some(o), _) => Owner::parse(o).map_err(anyhow::Error::msg)?,
        (None, Some(k)) => k.owner,
        (None, None) => return Ok(None),
    };
    if let Some(k) = &join_key
        && k.owner != owner
    {
        bail!(
            "the join key is for the fleet of {}, not of {owner}",
            k.owner
        );
    }
    Ok(Some(FleetConfig { owner, join_key }))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn say(value: serde_json::Value) {
    println!("{value}");
}

fn services(specs: &[String]) -> Result<Vec<Service>> {
    specs
        .iter()
        .map(|s| {
            let (name, port) = s.split_once(':').context("a service is NAME:PORT")?;
            xnode_spec::rules::dns_label(name).map_err(anyhow::Error::msg)?;
            Ok(Service {
                name: name.into(),
                port: port
                    .parse()
                    .with_context(|| format!("{port:?} is not a port"))?,
                protocol: "tcp".into(),
            })
        })
        .collect()
}

fn labels(specs: &[String]) -> Result<BTreeMap<String, String>> {
    specs
        .iter()
        .map(|s| match s.split_once('=') {
            // As a spec's node.labels: every member would reject heartbeats with others.
            Some((k, v)) => {
                xnode_spec::rules::label_key(k).map_err(anyhow::Error::msg)?;
                xnode_spec::rules::label_value(v).map_err(anyhow::Error::msg)?;
                Ok((k.to_owned(), v.to_owned()))
            }
            None => bail!("a label is KEY=VALUE, not {s:?}"),
        })
        .collect()
}

async fn answer(handle: &Handle, line: &str) -> Result<serde_json::Value> {
    let mut words = line.split_whitespace();
    Ok(match (words.next(), words.next()) {
        (Some("members"), None) => json!({"kind": "members", "members": handle.members().await?}),
        (Some("providers"), name) => {
            let started = std::time::Instant::now();
            let providers = handle.providers(name.map(str::to_owned)).await?;
            json!({"kind": "providers", "providers": providers,
                   "took_us": started.elapsed().as_micros() as u64})
        }
        (Some("status"), None) => json!({"kind": "status", "status": handle.status().await?}),
        (Some("fleet"), None) => json!({"kind": "fleet", "fleet": handle.fleet().await?}),
        (Some("admit"), Some(peer)) => {
            let cert = line.splitn(3, ' ').nth(2).unwrap_or_default();
            let answer = handle
                .admit(peer.parse()?, serde_json::from_str(cert)?)
                .await?;
            json!({"kind": "admit", "answer": answer})
        }
        (Some("push"), Some(peer)) => {
            let text = line.splitn(3, ' ').nth(2).unwrap_or_default();
            let answer = handle.push(peer.parse()?, text.as_bytes().to_vec()).await?;
            json!({"kind": "push", "answer": answer})
        }
        (Some("narinfo"), Some(peer)) => {
            let hash = xnode_nix::HashPart::parse(words.next().unwrap_or_default())?;
            let ask = xnode_nix::wire::Ask {
                hash,
                want: xnode_nix::wire::Want::Narinfo,
            };
            let answer = xnode_nix::wire::ask(&mut handle.streams(), peer.parse()?, &ask)
                .await
                .map(|(answer, _)| answer);
            json!({"kind": "narinfo", "answer": answer})
        }
        (Some("revoke"), Some(_)) => {
            let revocation = serde_json::from_str(line.split_once(' ').unwrap_or_default().1)?;
            json!({"kind": "revoke", "answer": handle.revoke(revocation).await?})
        }
        _ => json!({"kind": "error", "error": format!("unknown request {line:?}")}),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    xnode_spec::rules::dns_label(&args.name).map_err(anyhow::Error::msg)?;
    let key = xnode_mesh::identity::load_or_create(&args.state_dir)?;
    let config = Config {
        node: args.name.clone(),
        listen: args.listen.clone(),
        bootstrap: args.bootstrap.clone(),
        mdns: args.mdns,
        timing: Default::default(),
        labels: labels(&args.label)?,
        services: services(&args.service)?,
        state_dir: args.state_dir.clone(),
        max_connections: 256,
        hold_down: xnode_mesh::placement::HOLD_DOWN,
        fleet: fleet(&args)?,
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = xnode_mesh::Metrics::register(&mut registry);
    let (node, handle) = Node::new(key, config, events_tx, metrics)?;
    tokio::spawn(node.run());

    // Ready once it listens: say where.
    let status = loop {
        let status = handle.status().await?;
        if !status.listen.is_empty() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    say(json!({"kind": "ready", "peer_id": status.peer_id, "listen": status.listen}));

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Member { peer_id, node, state }) => {
                    let state = match state {
                        State::Alive => "alive",
                        State::Suspect => "suspect",
                        State::Dead => "dead",
                    };
                    say(json!({"kind": "member", "peer_id": peer_id.to_string(), "node": node,
                               "state": state, "at_ms": now_ms() as u64}));
                }
                Some(Event::Push { reply, .. }) => {
                    let _ = reply.send(Err("xnode-meshd runs no workloads and takes no specs".into()));
                }
                None => return Ok(()),
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => say(answer(&handle, &line).await.unwrap_or_else(
                    |e| json!({"kind": "error", "error": format!("{e:#}")}),
                )),
                _ => stdin_open = false,
            },
        }
    }
}
