//! The API's mesh and fleet requests: answered by the mesh node, beside the loop.

use tokio::sync::oneshot;
use xnode_api::Request;
use xnode_api::mesh::PushDraft;
use xnode_spec::push;

use super::Reply;
use crate::nix::Realise;
use crate::units::Units;

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// The mesh and fleet requests, answered by the mesh node beside the loop.
    pub(super) fn mesh_query(&self, request: Request, reply: oneshot::Sender<Reply>) {
        let handle = match self.mesh_handle() {
            Ok(h) => h,
            Err(why) => {
                let _ = reply.send(Reply::error(why));
                return;
            }
        };
        tokio::spawn(async move {
            let answer = match request {
                Request::MeshServices { service } => handle.providers(service).await.map(Reply::ok),
                Request::FleetMembers => handle.fleet().await.map(Reply::ok),
                Request::FleetAdmit { certificate } => {
                    match serde_json::from_value::<xnode_mesh::fleet::Certificate>(certificate) {
                        Ok(cert) => match cert.peer.parse() {
                            Ok(peer) => handle.admit(peer, cert).await.map(answered),
                            Err(_) => Ok(Reply::error(format!("{:?} is not a peer id", cert.peer))),
                        },
                        Err(e) => Ok(Reply::error(format!("not a certificate: {e}"))),
                    }
                }
                Request::FleetRevoke { revocation } => {
                    match serde_json::from_value::<xnode_mesh::fleet::Revocation>(revocation) {
                        Ok(r) => handle.revoke(r).await.map(answered),
                        Err(e) => Ok(Reply::error(format!("not a revocation: {e}"))),
                    }
                }
                Request::PushDraft { spec } => handle
                    .status()
                    .await
                    .map(|node| draft(&node.peer_id, &spec)),
                _ => handle.members().await.map(Reply::ok),
            };
            let _ = reply.send(answer.unwrap_or_else(|e| Reply::error(e.to_string())));
        });
    }
}

/// What the owner signs to push `spec` (validated) to `peer` now.
fn draft(peer: &str, spec: &serde_json::Value) -> Reply {
    let size = serde_json::to_vec(spec).map_or(usize::MAX, |b| b.len());
    if size > push::MAX_BYTES {
        return Reply::error(format!(
            "the spec is {size} bytes; a push carries at most {} (apply a spec this large on the node itself)",
            push::MAX_BYTES
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (generation, timestamp) = (now.as_millis() as u64, now.as_secs());
    let hash = xnode_spec::hash_value(spec);
    let payload = push::payload(peer, generation, timestamp, &hash);
    Reply::ok(PushDraft {
        payload: String::from_utf8_lossy(&payload).into_owned(),
        peer: peer.to_owned(),
        generation,
        timestamp,
    })
}

/// A peer's answer, as the API gives it.
fn answered(answer: Result<String, String>) -> Reply {
    match answer {
        Ok(done) => Reply::ok(done),
        Err(why) => Reply::error(why),
    }
}
