//! Signed pushes between nodes: a push for this node goes to its owner (the agent) and
//! the answer back to the sender; a push for a member goes out and its answer comes
//! back to whoever asked.

use libp2p::request_response;
use tokio::sync::oneshot;
use tracing::debug;

use super::push_wire::PushBytes;
use super::{Command, Event, Node, PushResponse};

impl Node {
    pub(super) fn on_push(&mut self, event: request_response::Event<PushBytes, PushResponse>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let (reply, verdict) = oneshot::channel();
                // Never full: the push budget bounds how many are queued.
                let delivered = self.events.send(Event::Push {
                    from: peer,
                    push: request,
                    reply,
                });
                let commands = self.commands_tx.clone();
                if delivered.is_err() {
                    let answer = PushResponse {
                        accepted: false,
                        message: "this node takes no pushes (it is not an agent)".into(),
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .push
                        .send_response(channel, answer);
                    return;
                }
                tokio::spawn(async move {
                    let answer = PushResponse::of(
                        verdict
                            .await
                            .unwrap_or_else(|_| Err("the node went away".into())),
                    );
                    let _ = commands.send(Command::Respond(channel, answer)).await;
                });
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(response.verdict());
                }
            }
            E::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(format!("the push did not reach the node: {error}")));
                }
            }
            E::InboundFailure { peer, error, .. } => {
                debug!(%peer, "a push from this peer failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }
}
