//! The mesh's metrics, in the agent's registry: libp2p's own (connections, gossipsub,
//! identify, Kademlia, ping) and the membership's.

use libp2p::PeerId;
use libp2p::metrics::Recorder as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::membership::{Membership, State};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The mesh's metrics, registered once and shared by every run of the node.
pub struct Metrics {
    libp2p: libp2p::metrics::Metrics,
    members: Family<StateLabel, Gauge>,
    rejected: Counter,
    quorate: Gauge,
    fenced: Counter,
}

impl Metrics {
    /// Registers the mesh's metrics (and libp2p's) in `registry`.
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Metrics> {
        let members = Family::<StateLabel, Gauge>::default();
        let rejected = Counter::default();
        let quorate = Gauge::default();
        let fenced = Counter::default();
        let mesh = registry.sub_registry_with_prefix("xnode_mesh");
        mesh.register(
            "members",
            "Members of the mesh as this node sees them",
            members.clone(),
        );
        mesh.register(
            "messages_rejected",
            "Membership messages that failed validation",
            rejected.clone(),
        );
        mesh.register(
            "quorate",
            "1 while this node sees a majority of the mesh and may run mesh workloads",
            quorate.clone(),
        );
        mesh.register(
            "fenced",
            "Times this node lost sight of a majority and stopped its mesh workloads",
            fenced.clone(),
        );
        std::sync::Arc::new(Metrics {
            libp2p: libp2p::metrics::Metrics::new(registry.sub_registry_with_prefix("libp2p")),
            members,
            rejected,
            quorate,
            fenced,
        })
    }

    pub(crate) fn members(&self, membership: &Membership<PeerId>) {
        for (state, name) in [
            (State::Alive, "alive"),
            (State::Suspect, "suspect"),
            (State::Dead, "dead"),
        ] {
            let n = membership
                .members()
                .filter(|(_, m)| m.state == state)
                .count();
            self.members
                .get_or_create(&StateLabel { state: name })
                .set(n as i64);
        }
    }

    pub(crate) fn quorate(&self, quorate: bool) {
        self.quorate.set(i64::from(quorate));
        if !quorate {
            self.fenced.inc();
        }
    }

    pub(crate) fn rejected(&self) {
        self.rejected.inc();
    }

    pub(crate) fn record_swarm<E>(&self, event: &libp2p::swarm::SwarmEvent<E>) {
        self.libp2p.record(event);
    }

    pub(crate) fn record_gossipsub(&self, event: &libp2p::gossipsub::Event) {
        self.libp2p.record(event);
    }

    pub(crate) fn record_identify(&self, event: &libp2p::identify::Event) {
        self.libp2p.record(event);
    }

    pub(crate) fn record_kad(&self, event: &libp2p::kad::Event) {
        self.libp2p.record(event);
    }

    pub(crate) fn record_ping(&self, event: &libp2p::ping::Event) {
        self.libp2p.record(event);
    }
}
