//! The push behaviour: request-response, but each connection's codec knows its peer
//! (request-response tells a codec nothing of it), so a push is read within the budget
//! of its sender's kind. The peer is handed over as the connection is set up, when
//! request-response clones the codec for it; everything else is request-response's.

use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, request_response};

use super::push_wire::{PushCodec, PushShared};

type Inner = request_response::Behaviour<PushCodec>;

pub(super) struct Behaviour {
    inner: Inner,
    shared: PushShared,
}

impl Behaviour {
    pub(super) fn new(config: request_response::Config, protocol: libp2p::StreamProtocol) -> Self {
        let (codec, shared) = PushCodec::new();
        Behaviour {
            inner: Inner::with_codec(
                codec,
                [(protocol, request_response::ProtocolSupport::Full)],
                config,
            ),
            shared,
        }
    }

    /// Members and bootstrap peers, as of now: their pushes draw on their own budget.
    pub(super) fn trust(&self, peers: &std::collections::HashSet<PeerId>) {
        self.shared.trust(peers);
    }

    /// Runs `f` (request-response setting up a connection) with `peer` handed to the
    /// codec it clones.
    fn for_peer<T>(&mut self, peer: PeerId, f: impl FnOnce(&mut Inner) -> T) -> T {
        if let Ok(mut next) = self.shared.next_peer.lock() {
            *next = Some(peer);
        }
        let out = f(&mut self.inner);
        if let Ok(mut next) = self.shared.next_peer.lock() {
            *next = None;
        }
        out
    }
}

impl Deref for Behaviour {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Behaviour {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = THandler<Inner>;
    type ToSwarm = <Inner as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.for_peer(peer, |inner| {
            inner.handle_established_inbound_connection(id, peer, local, remote)
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        address: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.for_peer(peer, |inner| {
            inner.handle_established_outbound_connection(id, peer, address, role, port_use)
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
