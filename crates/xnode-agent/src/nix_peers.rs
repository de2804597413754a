//! Store paths between members, for as long as this node is in the mesh: it serves its
//! store to its fleet's members, and runs the local binary cache Nix substitutes from,
//! which asks them. Both run beside the loop; a new mesh node (the settings changed)
//! gets a new server.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};
use xnode_mesh::node::Handle;
use xnode_nix::{Cache, Limits, LocalStore, PROTOCOL, Peers, Server};

/// How this node takes part.
#[derive(Debug)]
pub struct Settings {
    /// The local binary cache's listener (on loopback), if it runs.
    pub cache: Option<TcpListener>,
    /// What the node gives each peer.
    pub limits: Limits,
    /// A test hook: every NAR served is corrupted.
    pub corrupt: bool,
}

/// Binds the local binary cache: loopback only, as Nix trusts it with nothing it does
/// not check, but it spends the fleet's bandwidth for whoever asks.
pub async fn bind_cache(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{addr} is not a loopback address; the local binary cache is for this node's Nix only"
            ),
        ));
    }
    TcpListener::bind(addr).await
}

/// The members as the mesh node of the moment knows them.
struct MeshPeers(watch::Receiver<Option<Handle>>);

impl Peers for MeshPeers {
    fn control(&self) -> Option<libp2p_stream::Control> {
        self.0.borrow().as_ref().map(Handle::streams)
    }

    fn candidates(&self) -> Vec<PeerId> {
        let Some(handle) = self.0.borrow().clone() else {
            return Vec::new();
        };
        let views = handle.views();
        let view = views.borrow();
        candidates(&view)
    }
}

/// The live members other than this one, those that hold closures first (most
/// first): a Nix store holds whole closures, so one that holds any may well hold the
/// path asked for.
fn candidates(view: &xnode_mesh::node::View) -> Vec<PeerId> {
    let mut live: Vec<(usize, PeerId)> = view
        .members
        .iter()
        .filter(|m| m.candidate.live && m.candidate.peer != view.me)
        .map(|m| (m.candidate.closures.len(), m.candidate.peer))
        .collect();
    live.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    live.into_iter().map(|(_, p)| p).collect()
}

/// The fleet's members as the mesh's loop knows them. Asked again in the background
/// when a second old, or when a peer is not among them (at most ten times a second,
/// however many strangers ask), so a busy loop never holds a question up; only the
/// first answer is waited for.
struct Members {
    handle: Handle,
    known: Arc<std::sync::Mutex<Known>>,
}

#[derive(Default)]
struct Known {
    asked: Option<Instant>,
    peers: Option<HashSet<PeerId>>,
}

impl Members {
    const FRESH: Duration = Duration::from_secs(1);
    const AGAIN: Duration = Duration::from_millis(100);

    fn new(handle: Handle) -> Members {
        Members {
            handle,
            known: Arc::default(),
        }
    }

    /// Whether `peer` is a member (one that is dead included: it may be back).
    async fn admit(&self, peer: PeerId) -> bool {
        let (answer, ask, first) = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let answer = known.peers.as_ref().map(|p| p.contains(&peer));
            let age = known.asked.map(|at| at.elapsed());
            let stale = age.is_none_or(|a| a >= Self::FRESH);
            let unsure = answer != Some(true) && age.is_none_or(|a| a >= Self::AGAIN);
            let ask = stale || unsure;
            if ask {
                known.asked = Some(Instant::now());
            }
            (answer, ask, known.peers.is_none())
        };
        if ask {
            let (handle, known) = (self.handle.clone(), self.known.clone());
            let asking = async move {
                // A stuck loop answers no one: the last members known stay.
                if let Ok(Ok(members)) = tokio::time::timeout(Self::FRESH, handle.members()).await {
                    let peers = members
                        .iter()
                        .filter_map(|m| m.peer_id.parse().ok())
                        .collect();
                    known.lock().unwrap_or_else(|e| e.into_inner()).peers = Some(peers);
                }
            };
            if first {
                asking.await;
                let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
                return known.peers.as_ref().is_some_and(|p| p.contains(&peer));
            }
            tokio::spawn(asking);
        }
        answer == Some(true)
    }
}

/// Serves and fetches until the agent stops.
pub async fn run(mut handles: watch::Receiver<Option<Handle>>, settings: Settings) {
    if let Some(listener) = settings.cache {
        let cache = Cache::new(Arc::new(MeshPeers(handles.clone())));
        let address = listener.local_addr().ok();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, cache.router()).await {
                error!("the local binary cache stopped: {e}");
            }
        });
        info!(
            ?address,
            "serving the local binary cache, from the fleet's members"
        );
    }
    let mut serving: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let handle = handles.borrow_and_update().clone();
        if let Some(old) = serving.take() {
            old.abort();
        }
        if let Some(handle) = handle {
            match handle.streams().accept(PROTOCOL) {
                Ok(incoming) => {
                    let members = Arc::new(Members::new(handle.clone()));
                    let gate: xnode_nix::Gate = Arc::new(move |peer: PeerId| {
                        let members = members.clone();
                        Box::pin(async move { members.admit(peer).await })
                    });
                    let mut server = Server::new(LocalStore::default(), settings.limits, gate);
                    if settings.corrupt {
                        server = server.corrupting();
                    }
                    serving = Some(tokio::spawn(Arc::new(server).run(incoming)));
                }
                Err(e) => error!("cannot serve store paths to members: {e}"),
            }
        }
        if handles.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use xnode_mesh::node::{Placed, View};
    use xnode_mesh::placement::Candidate;

    use super::*;

    fn member(peer: PeerId, live: bool, closures: usize) -> Placed {
        Placed {
            node: "n".into(),
            candidate: Candidate {
                peer,
                live,
                eligible: live,
                labels: BTreeMap::new(),
                offers: BTreeMap::new(),
                running: BTreeSet::new(),
                closures: (0..closures).map(|i| format!("{i:0>32}")).collect(),
                silent: Duration::ZERO,
            },
            report: None,
        }
    }

    #[test]
    fn live_members_are_asked_those_holding_closures_first_and_never_this_node() {
        let [me, dead, bare, holder] = [(); 4].map(|()| PeerId::random());
        let view = View {
            at: Instant::now(),
            me,
            quorate: true,
            settled: Duration::ZERO,
            hold_down: Duration::ZERO,
            voters: 4,
            members: vec![
                member(me, true, 5),
                member(dead, false, 9),
                member(bare, true, 0),
                member(holder, true, 2),
            ],
        };
        assert_eq!(candidates(&view), [holder, bare]);
    }
}
