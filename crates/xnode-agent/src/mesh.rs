//! The agent's part in the mesh: the mesh node set up from the current spec (and set up
//! again when the spec's mesh settings change), and what the agent needs of it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use xnode_mesh::fleet::{FleetConfig, JoinKey};
use xnode_mesh::message::Service;
use xnode_mesh::node::{Config, Event, Handle, Node};
use xnode_spec::{Protocol, Spec};

/// The spec's settings that need the node set up again when they change; labels and
/// services are only advertised anew.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Joining {
    node: String,
    owner: Option<xnode_spec::Owner>,
    listen: Vec<String>,
    bootstrap: Vec<String>,
    mdns: bool,
}

fn joining(spec: &Spec) -> Joining {
    let port = spec.mesh.port;
    let listen = if spec.mesh.listen.is_empty() {
        vec![
            format!("/ip4/0.0.0.0/tcp/{port}"),
            format!("/ip6/::/tcp/{port}"),
        ]
    } else {
        spec.mesh.listen.clone()
    };
    Joining {
        node: spec.node.name.clone(),
        owner: spec.node.owner,
        listen,
        bootstrap: spec.mesh.bootstrap.clone(),
        mdns: spec.mesh.mdns,
    }
}

/// The services this node provides, as the mesh advertises them: those its local
/// workloads and the mesh workloads `placed` here expose, but not those of `withdrawn`
/// workloads (failing their probes).
pub fn services(
    spec: &Spec,
    placed: &BTreeSet<String>,
    withdrawn: &BTreeSet<String>,
) -> Vec<Service> {
    let mut out: Vec<Service> = spec
        .workloads
        .iter()
        .filter(|(name, w)| {
            let here = match w.placement {
                xnode_spec::Placement::Local => true,
                xnode_spec::Placement::Mesh(_) => placed.contains(*name),
            };
            here && !withdrawn.contains(*name)
        })
        .flat_map(|(_, w)| &w.expose)
        .map(|e| Service {
            name: e.service.clone(),
            port: e.port,
            protocol: match e.protocol {
                Protocol::Tcp => "tcp".into(),
                Protocol::Udp => "udp".into(),
            },
        })
        .collect();
    out.sort();
    out
}

struct Running {
    joining: Joining,
    advertised: (std::collections::BTreeMap<String, String>, Vec<Service>),
    handle: Handle,
    task: JoinHandle<()>,
}

/// The mesh node of this agent, if the spec lets it run.
pub struct Mesh {
    state_dir: PathBuf,
    join_key: Option<JoinKey>,
    metrics: Arc<xnode_mesh::Metrics>,
    events: mpsc::UnboundedSender<Event>,
    running: Option<Running>,
    /// The running node's handle, for those beside the loop.
    handles: tokio::sync::watch::Sender<Option<Handle>>,
    /// Why the node is not running, when it should.
    pub error: Option<String>,
}

impl Mesh {
    /// No node yet; its events will go to `events`. A join key admits the node to its
    /// owner's fleet (if the key is that owner's).
    pub fn new(
        state_dir: PathBuf,
        join_key: Option<JoinKey>,
        metrics: Arc<xnode_mesh::Metrics>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Mesh {
        Mesh {
            state_dir,
            join_key,
            metrics,
            events,
            running: None,
            handles: tokio::sync::watch::channel(None).0,
            error: None,
        }
    }

    /// The running node's handle, whichever it is, as it changes.
    pub fn handles(&self) -> tokio::sync::watch::Receiver<Option<Handle>> {
        self.handles.subscribe()
    }

    /// The running node's handle.
    pub fn handle(&self) -> Option<&Handle> {
        self.running.as_ref().map(|r| &r.handle)
    }

    /// Brings the node in line with `spec`: started, set up again if how it joins
    /// changed, or told its new labels and services.
    pub async fn follow(
        &mut self,
        spec: &Spec,
        placed: &BTreeSet<String>,
        withdrawn: &BTreeSet<String>,
    ) {
        let wanted = joining(spec);
        let services = services(spec, placed, withdrawn);
        if let Some(running) = &mut self.running {
            if running.joining == wanted && !running.task.is_finished() {
                let advertised = (spec.node.labels.clone(), services);
                if running.advertised != advertised {
                    let (labels, services) = advertised.clone();
                    // Not awaited: a stuck mesh node must not hold up the agent.
                    if !running.handle.try_set_local(labels, services) {
                        return;
                    }
                    running.advertised = advertised;
                }
                return;
            }
            info!("the mesh settings changed; joining the mesh again");
        }
        if let Some(old) = self.running.take() {
            old.task.abort();
            let _ = old.task.await;
        }
        match self.start(&wanted, spec, services) {
            Ok(running) => {
                self.error = None;
                self.handles.send_replace(Some(running.handle.clone()));
                self.running = Some(running);
            }
            Err(e) => {
                self.handles.send_replace(None);
                error!("cannot join the mesh: {e:#}");
                self.error = Some(format!("{e:#}"));
            }
        }
    }

    fn start(
        &self,
        joining: &Joining,
        spec: &Spec,
        services: Vec<Service>,
    ) -> anyhow::Result<Running> {
        let parse = |list: &[String]| -> anyhow::Result<Vec<libp2p::Multiaddr>> {
            list.iter().map(|a| Ok(a.parse()?)).collect()
        };
        let key = xnode_mesh::identity::load_or_create(&self.state_dir)?;
        let fleet = joining.owner.map(|owner| FleetConfig {
            owner,
            join_key: self.join_key.clone().filter(|k| {
                let ours = k.owner == owner;
                if !ours {
                    warn!(
                        "the join key is for the fleet of {}, but this node's owner is {owner}: not used",
                        k.owner
                    );
                }
                ours
            }),
        });
        let config = Config {
            node: joining.node.clone(),
            listen: parse(&joining.listen)?,
            bootstrap: parse(&joining.bootstrap)?,
            mdns: joining.mdns,
            timing: Default::default(),
            labels: spec.node.labels.clone(),
            services: services.clone(),
            state_dir: self.state_dir.clone(),
            max_connections: 256,
            hold_down: xnode_mesh::placement::HOLD_DOWN,
            fleet,
        };
        let (node, handle) = Node::new(key, config, self.events.clone(), self.metrics.clone())?;
        info!(peer_id = %handle.peer_id(), "joining the mesh");
        Ok(Running {
            joining: joining.clone(),
            advertised: (spec.node.labels.clone(), services),
            handle,
            task: tokio::spawn(node.run()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_says_how_the_node_joins_and_what_it_offers() {
        let spec = xnode_spec::parse(
            br#"{"version": 1, "node": {"name": "n1"}, "mesh": {"port": 7800, "bootstrap": ["/ip4/10.0.0.1/tcp/7720"]},
                 "workloads": {"a": {"command": ["/bin/a"], "expose": [{"service": "web", "port": 80},
                                                                        {"service": "dns", "port": 53, "protocol": "udp"}]}}}"#,
        )
        .unwrap()
        .spec;
        let j = joining(&spec);
        assert_eq!(j.listen, ["/ip4/0.0.0.0/tcp/7800", "/ip6/::/tcp/7800"]);
        assert_eq!(j.bootstrap, ["/ip4/10.0.0.1/tcp/7720"]);
        let none = BTreeSet::new();
        let s = services(&spec, &none, &none);
        assert_eq!(
            s.iter()
                .map(|s| (s.name.as_str(), s.port, s.protocol.as_str()))
                .collect::<Vec<_>>(),
            [("dns", 53, "udp"), ("web", 80, "tcp")]
        );
        let unhealthy: BTreeSet<String> = ["a".to_owned()].into();
        assert!(
            services(&spec, &none, &unhealthy).is_empty(),
            "a failing provider is withdrawn"
        );
        let mesh = xnode_spec::parse(
            br#"{"version": 1, "node": {"name": "n1", "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
                 "workloads": {"m": {"command": ["/bin/m"], "placement": {"mesh": {}}, "expose": [{"service": "m", "port": 81}]}}}"#,
        )
        .unwrap()
        .spec;
        assert!(services(&mesh, &none, &none).is_empty(), "not placed here");
        let here: BTreeSet<String> = ["m".to_owned()].into();
        assert_eq!(services(&mesh, &here, &none).len(), 1);
    }
}
