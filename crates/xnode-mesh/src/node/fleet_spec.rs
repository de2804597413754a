//! The fleet spec between members: each serves the signed fleet specs its agent keeps,
//! and fetches one from a member whose heartbeat announces it. The agent checks what
//! is fetched (the owner's signature, the generation); here only members are served,
//! and nothing is believed.

use std::collections::BTreeMap;
use std::sync::Arc;

use libp2p::{PeerId, request_response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::debug;

use super::Node;

/// The largest answer read: a fleet spec at the largest a push may be, and room for
/// its envelope.
pub(super) const MAX_SPEC_RESPONSE: u64 = 2 * xnode_spec::push::MAX_BYTES as u64;

/// "Send me your signed fleet spec of this generation."
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecRequest {
    /// The generation.
    pub generation: u64,
}

/// The signed fleet spec asked for, or why not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecResponse {
    /// The envelope (`xnode_spec::fleet_spec::signed::SignedFleetSpec`).
    #[serde(default)]
    pub spec: Option<Value>,
    /// Why there is none.
    #[serde(default)]
    pub error: Option<String>,
}

/// The signed fleet specs this node serves, by generation.
pub(crate) type Served = BTreeMap<u64, Arc<Value>>;

pub(crate) type Reply = oneshot::Sender<Result<Value, String>>;

impl Node {
    pub(super) fn on_fleet_spec(
        &mut self,
        event: request_response::Event<SpecRequest, SpecResponse>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let answer = self.serve_spec(&peer, request.generation);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .fleet_spec
                    .send_response(channel, answer);
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.spec_pending.remove(&request_id) {
                    let _ = reply.send(match (response.spec, response.error) {
                        (Some(spec), _) => Ok(spec),
                        (None, why) => Err(why
                            .unwrap_or_else(|| "it has none".into())
                            .chars()
                            .take(200)
                            .collect()),
                    });
                }
            }
            E::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.spec_pending.remove(&request_id) {
                    let _ = reply.send(Err(format!("the member did not answer: {error}")));
                }
            }
            E::InboundFailure { .. } | E::ResponseSent { .. } => {}
        }
    }

    fn serve_spec(&self, peer: &PeerId, generation: u64) -> SpecResponse {
        let (spec, error) = if !self.is_member(peer) {
            debug!(%peer, "a fleet spec asked for by a peer that is no member, refused");
            (None, Some("only members of the fleet are served".into()))
        } else {
            match self.served.get(&generation) {
                Some(spec) => (Some(Value::clone(spec)), None),
                None => (
                    None,
                    Some(format!("no fleet spec of generation {generation} here")),
                ),
            }
        };
        SpecResponse { spec, error }
    }

    /// Asks the member `peer` for its fleet spec of `generation`.
    pub(super) fn fetch_spec(&mut self, peer: PeerId, generation: u64, reply: Reply) {
        if !self.is_member(&peer) {
            let _ = reply.send(Err(format!("{peer} is not a live member")));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .fleet_spec
            .send_request(&peer, SpecRequest { generation });
        self.spec_pending.insert(id, reply);
    }
}
