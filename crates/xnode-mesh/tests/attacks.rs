//! Attacks that are well-formed but false, each carried out against real `xnode-meshd`
//! processes by a hand-written libp2p peer, and each shown to fail. (Malformed input is
//! `hostile.rs`'s.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster::{Cluster, gossip_swarm, heartbeat, hostile_swarm, in_state, rss_kb};
use futures_util::StreamExt as _;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, request_response};
use serde_json::Value;

/// Three members, whole and quorate; their peer ids by name.
fn fleet_of_three(name: &str) -> (Cluster, BTreeMap<String, String>) {
    let mut c = Cluster::new(name);
    for n in ["a", "b", "c"] {
        c.start(n, &[]);
    }
    let ids: BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    let all: BTreeSet<String> = ids.values().cloned().collect();
    let whole = {
        let ids = ids.clone();
        move |me: &str, m: &[Value]| {
            let others: BTreeSet<String> = all.iter().filter(|p| **p != ids[me]).cloned().collect();
            in_state(m, "alive") == others
        }
    };
    c.wait_all("the fleet", Duration::from_secs(30), whole);
    (c, ids)
}

/// Whether any node ever saw `peer` as anything but alive.
fn ever_doubted(c: &Cluster, peer: &str) -> Vec<Value> {
    c.nodes
        .values()
        .flat_map(|p| p.member_events())
        .filter(|e| e["peer_id"] == peer && e["state"] != "alive")
        .collect()
}

type Pusher = request_response::json::Behaviour<Value, Value>;

fn pusher(_: &libp2p::identity::Keypair) -> Pusher {
    request_response::json::Behaviour::new(
        [(
            StreamProtocol::new("/xnode/push/1.0.0"),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
    )
}

/// The attack of the review: a push of 62 MiB took a node from 11 MB to 1.09 GB and
/// stalled it for 3 s, so the others declared it dead. Now: the huge push is refused
/// unread, a flood of pushes of the largest size read (1 MiB) from several peers at
/// once costs a bounded amount of memory, and no member ever doubts the node.
#[tokio::test]
async fn huge_pushes_and_floods_of_pushes_neither_swell_nor_stall_a_node() {
    const PEERS: usize = 4;
    const EACH: usize = 25;
    let (mut c, ids) = fleet_of_three("push-flood");
    let target: Multiaddr = c.nodes["a"].listen.parse().unwrap();
    let target_peer: PeerId = ids["a"].parse().unwrap();
    let rss_before = rss_kb(c.nodes["a"].pid());

    let huge = Value::String("x".repeat(62 << 20));
    let full = Value::String("y".repeat((1 << 20) - 2));
    let mut attackers = Vec::new();
    for i in 0..PEERS {
        let mut swarm = hostile_swarm(pusher);
        swarm.add_peer_address(target_peer, target.clone());
        let huge = (i == 0).then(|| huge.clone());
        let full = full.clone();
        attackers.push(tokio::spawn(async move {
            let big = huge.map(|h| swarm.behaviour_mut().send_request(&target_peer, h));
            for _ in 0..EACH {
                swarm
                    .behaviour_mut()
                    .send_request(&target_peer, full.clone());
            }
            // Every request ends, answered or failed; the huge one must fail.
            let (mut ended, mut answered, mut huge_failed) = (0, 0, false);
            while ended < EACH + usize::from(big.is_some()) {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message { .. }) => {
                        ended += 1;
                        answered += 1;
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        ..
                    }) => {
                        ended += 1;
                        huge_failed |= Some(request_id) == big;
                    }
                    _ => {}
                }
            }
            (answered, big.is_none() || huge_failed)
        }));
    }
    let mut peak = 0;
    let attack = async {
        let (mut answered, mut refused_unread) = (0, true);
        for a in attackers {
            let (n, refused) = a.await.unwrap();
            answered += n;
            refused_unread &= refused;
        }
        (answered, refused_unread)
    };
    tokio::pin!(attack);
    let (answered, refused_unread) = loop {
        tokio::select! {
            done = &mut attack => break done,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                peak = peak.max(rss_kb(c.nodes["a"].pid()));
            }
        }
    };
    assert!(refused_unread, "the 62 MiB push was read");
    // Those read were answered (xnode-meshd takes no specs); the rest found the
    // budget spent and were refused unread.
    println!(
        "{answered} of {} full-size pushes read and answered",
        PEERS * EACH
    );
    assert!(answered > 0, "no push was read at all");
    let grown = peak.saturating_sub(rss_before);
    println!("a's memory: {rss_before} kB before, {peak} kB at most during the attack");
    assert!(grown < 64_000, "a grew by {grown} kB");
    // The node answered on: its loop kept turning, and nobody doubted it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = c.nodes.get_mut("a").unwrap().request("status");
    assert_eq!(status["kind"], "status", "{status}");
    let doubts = ever_doubted(&c, &ids["a"]);
    assert!(doubts.is_empty(), "a was doubted: {doubts:?}");
}

/// A push codec that sends its push a byte every half second: a sender that holds a
/// share of the node's push budget for as long as the node lets it.
#[derive(Clone, Default)]
struct Trickle;

impl request_response::Codec for Trickle {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> std::io::Result<()>
    where
        T: futures_util::AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> std::io::Result<()>
    where
        T: futures_util::AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures_util::AsyncWrite + Unpin + Send,
    {
        use futures_util::AsyncWriteExt as _;
        for _ in 0..240 {
            io.write_all(b" ").await?;
            io.flush().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures_util::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// The review's attack on the push budget: strangers sending pushes a byte at a time
/// held every share of it (8 across all peers, each for up to 30 s), so the owner's
/// pushes were refused. Now members and bootstrap peers draw on a budget of their own,
/// and a stranger's push must arrive within seconds: with twelve strangers trickling,
/// a member's push to the node is read and answered, and every trickle is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_sending_slowly_keep_no_members_push_out() {
    const STRANGERS: usize = 12;
    let (mut c, ids) = fleet_of_three("slow-push");
    let target: Multiaddr = c.nodes["a"].listen.parse().unwrap();
    let target_peer: PeerId = ids["a"].parse().unwrap();
    let mut tricklers = Vec::new();
    for _ in 0..STRANGERS {
        let mut swarm = hostile_swarm(|_| {
            request_response::Behaviour::with_codec(
                Trickle,
                [(
                    StreamProtocol::new("/xnode/push/1.0.0"),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(150)),
            )
        });
        swarm.add_peer_address(target_peer, target.clone());
        tricklers.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            swarm.behaviour_mut().send_request(&target_peer, ());
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        error,
                        ..
                    }) => return (started.elapsed(), error.to_string()),
                    SwarmEvent::Behaviour(request_response::Event::Message { .. }) => {
                        return (started.elapsed(), "answered".into());
                    }
                    _ => {}
                }
            }
        }));
    }
    // The strangers' pushes are under way; a member pushes to a.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let push = format!("push {} {{}}", ids["a"]);
    let answer = c.nodes.get_mut("b").unwrap().request(&push);
    println!("b's push: {answer}");
    assert_eq!(
        answer["answer"]["Err"], "xnode-meshd runs no workloads and takes no specs",
        "the member's push was not read: {answer}"
    );
    for t in tricklers {
        let (took, how) = t.await.unwrap();
        println!("a trickle ended after {took:?}: {how}");
        assert!(how != "answered", "a trickled push was read whole");
        assert!(
            took < Duration::from_secs(60),
            "a trickle went on for {took:?}"
        );
    }
    let doubts = ever_doubted(&c, &ids["a"]);
    assert!(doubts.is_empty(), "a was doubted: {doubts:?}");
}

/// A heartbeat saying `node`, with a certificate from `owner` naming `named`: an
/// insider's, whom the owner admitted.
fn member_heartbeat(
    owner: &xnode_spec::keys::OwnerKey,
    peer: &PeerId,
    named: &str,
    node: &str,
    seq: u64,
) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cert =
        xnode_spec::fleet::Certificate::issue(owner, &peer.to_string(), named, now - 1, now + 3600);
    heartbeat(cert, node, seq, 0)
}

/// The review's attack: 600 small `Gone` reports naming a node made it publish 607
/// full heartbeats in 3 s. Made now by a peer the owner did admit (a stranger's are not
/// even looked at), in the victim's own incarnation and about heartbeats just sent,
/// they make it say little more than it always says, and nobody believes it dead: each
/// node's own connection to the victim outweighs any report. (Of a member a node is
/// not connected to, it believes one such report, then none from that reporter for
/// five minutes: `credibility.rs`.)
#[tokio::test]
async fn a_flood_of_death_reports_from_a_member_neither_kills_nor_amplifies() {
    use xnode_mesh::membership::GONE_SEQ_AHEAD;
    use xnode_mesh::message::Message;
    const REPORTS: u64 = 600;
    let (c, ids) = fleet_of_three("gone-flood");
    let victim: PeerId = ids["a"].parse().unwrap();
    let topic = libp2p::gossipsub::IdentTopic::new(xnode_mesh::fleet::topic(&c.owner.owner()));
    let mut insider = gossip_swarm(&topic);
    insider
        .dial(c.nodes["a"].listen.parse::<Multiaddr>().unwrap())
        .unwrap();
    let me = *insider.local_peer_id();
    // Three seconds of heartbeats, so the nodes know it for a member; then the flood,
    // and three seconds of counting what the victim says. The reports name the
    // victim's own incarnation and its heartbeats just heard or about to be: reports
    // a node would believe of a member it is not connected to.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let (mut seq, mut flooded_at, mut victim_beats) = (0, None, 0);
    let mut victim_at: Option<(u64, u64)> = None;
    let start = tokio::time::Instant::now();
    loop {
        tokio::select! {
            event = insider.select_next_some() => {
                if let SwarmEvent::Behaviour(libp2p::gossipsub::Event::Message { message, .. }) = event
                    && message.source == Some(victim)
                    && let Ok(Message::Heartbeat(hb)) = Message::decode(&message.data)
                {
                    victim_at = victim_at.max(Some((hb.incarnation, hb.seq)));
                    if flooded_at.is_some() {
                        victim_beats += 1;
                    }
                }
            }
            _ = tick.tick() => {
                seq += 1;
                let hb = member_heartbeat(&c.owner, &me, "insider", "insider", seq);
                let _ = insider.behaviour_mut().publish(topic.clone(), hb);
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the insider heard no heartbeat of the victim in a minute"
                );
                if let Some((incarnation, last)) = victim_at.filter(|_| flooded_at.is_none() && start.elapsed() > Duration::from_secs(3)) {
                    for i in 0..REPORTS {
                        let seq = last + i % GONE_SEQ_AHEAD;
                        let gone = Message::Gone { peer: victim.to_string(), incarnation, seq };
                        let _ = insider.behaviour_mut().publish(topic.clone(), gone.encode());
                    }
                    flooded_at = Some(tokio::time::Instant::now());
                }
                if flooded_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
                    break;
                }
            }
        }
    }
    println!("after {REPORTS} reports, the victim sent {victim_beats} heartbeats in 3 s");
    // Six a second is its own pace (with gossip's copies, a few more arrive).
    assert!(
        victim_beats >= 3,
        "the insider heard nothing: the test saw no attack"
    );
    assert!(victim_beats <= 24, "{victim_beats} heartbeats in 3 s");
    let doubts = ever_doubted(&c, &ids["a"]);
    assert!(doubts.is_empty(), "a was doubted: {doubts:?}");
}

/// The review's attack: 254 connections held from throwaway peer ids filled a node's
/// slots, and a new node could not join through it. Now strangers share a quarter of
/// the slots and a few per address, the longest held makes room, and the newcomer is
/// a stranger only until its first heartbeat.
#[tokio::test]
async fn connections_held_from_throwaway_ids_keep_no_new_node_out() {
    const HELD: usize = 254;
    let (mut c, ids) = fleet_of_three("slots");
    let target: Multiaddr = c.nodes["a"].listen.parse().unwrap();
    let topic = libp2p::gossipsub::IdentTopic::new(xnode_mesh::fleet::topic(&c.owner.owner()));
    let (established, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let mut holders = Vec::new();
    let mut made = 0;
    // In batches, as a patient attacker would: a node takes only so many handshakes
    // at once.
    for batch in 0..HELD.div_ceil(32) {
        let size = (HELD - batch * 32).min(32);
        for _ in 0..size {
            // Gossip on the fleet's topic keeps a connection from going idle.
            let mut swarm = gossip_swarm(&topic);
            swarm.dial(target.clone()).unwrap();
            let established = established.clone();
            holders.push(tokio::spawn(async move {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { .. } => {
                            let _ = established.send(true);
                        }
                        SwarmEvent::OutgoingConnectionError { .. } => {
                            let _ = established.send(false);
                        }
                        _ => {}
                    }
                }
            }));
        }
        for _ in 0..size {
            match tokio::time::timeout(Duration::from_secs(60), arrivals.recv()).await {
                Ok(Some(true)) => made += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    println!("{made} of {HELD} throwaway connections were made (most evicted since)");
    assert!(made > 200, "the attack did not happen");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = c.nodes.get_mut("a").unwrap().request("status")["status"]["connected"]
        .as_u64()
        .unwrap();
    println!("a is connected to {held} peers");
    // b, c, and strangers from this one address: no more than its share.
    assert!(held <= 2 + 8, "a holds {held} connections");

    // A new node joins through a (its only bootstrap peer), and the fleet is whole.
    c.start("d", &[]);
    let mut all: BTreeSet<String> = ids.values().cloned().collect();
    all.insert(c.nodes["d"].peer_id.clone());
    let peers: BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    // Well within the minute after which the node would close idle connections.
    c.wait_all("d in the fleet", Duration::from_secs(30), |me, m| {
        let others: BTreeSet<String> = all.iter().filter(|p| **p != peers[me]).cloned().collect();
        in_state(m, "alive") == others
    });
    for h in holders {
        h.abort();
    }
}

/// The review's attack: the addresses in one forged heartbeat made every node dial a
/// host and port of the attacker's choosing. Now: a stranger's heartbeat is not
/// believed, of what a stranger says of its addresses (identify) only those on the
/// host it connected from are taken, and a stranger is never in the routing table, so
/// no query asks it for peers and dials its answer. Here it names a listener of the
/// test's three ways: as its own address (by the name `localhost`), in its heartbeat,
/// and as the address of twenty peers in its own Kademlia table, which it answers
/// every query with; it listens on the nodes' own host. Nobody dials the listener.
#[tokio::test]
async fn no_node_dials_an_address_a_stranger_names() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let victim = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = victim.local_addr().unwrap().port();
    let dialed = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let dialed = dialed.clone();
        std::thread::spawn(move || {
            for stream in victim.incoming() {
                if stream.is_ok() {
                    dialed.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    #[derive(libp2p::swarm::NetworkBehaviour)]
    struct Liar {
        // The liar's own Kademlia would dial the peers it makes up: it may not.
        blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
        identify: libp2p::identify::Behaviour,
        kad: libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>,
        gossipsub: libp2p::gossipsub::Behaviour,
    }
    let mut c = Cluster::new("dial");
    c.start("a", &[]);
    let a: Multiaddr = c.nodes["a"].listen.parse().unwrap();
    let topic = libp2p::gossipsub::IdentTopic::new(xnode_mesh::fleet::topic(&c.owner.owner()));
    let mut liar = hostile_swarm(|key| {
        let me = key.public().to_peer_id();
        Liar {
            blocked: Default::default(),
            identify: libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
                "/xnode/id/1.0.0".into(),
                key.public(),
            )),
            kad: libp2p::kad::Behaviour::with_config(
                me,
                libp2p::kad::store::MemoryStore::new(me),
                libp2p::kad::Config::new(xnode_mesh::node::KAD_PROTOCOL),
            ),
            gossipsub: libp2p::gossipsub::Behaviour::new(
                libp2p::gossipsub::MessageAuthenticity::Signed(key.clone()),
                libp2p::gossipsub::Config::default(),
            )
            .unwrap(),
        }
    });
    liar.behaviour_mut()
        .kad
        .set_mode(Some(libp2p::kad::Mode::Server));
    liar.add_external_address(format!("/dns4/localhost/tcp/{port}").parse().unwrap());
    liar.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    for _ in 0..20 {
        let made_up = PeerId::random();
        liar.behaviour_mut().blocked.block_peer(made_up);
        liar.behaviour_mut().kad.add_address(
            &made_up,
            format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        );
    }
    liar.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    liar.dial(a).unwrap();
    let me = *liar.local_peer_id();
    let liar_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let forger =
            xnode_spec::keys::OwnerKey::generate(xnode_spec::keys::KeyKind::Ed25519).unwrap();
        let mut seq = 0;
        loop {
            tokio::select! {
                _ = liar.select_next_some() => {}
                _ = tick.tick() => {
                    // A heartbeat naming the listener, with a certificate of its own.
                    seq += 1;
                    let mut hb: Value = serde_json::from_slice(&member_heartbeat(&forger, &me, "liar", "liar", seq)).unwrap();
                    hb["addresses"] = serde_json::json!([format!("/ip4/127.0.0.1/tcp/{port}")]);
                    let _ = liar.behaviour_mut().gossipsub.publish(topic.clone(), hb.to_string());
                }
            }
        }
    });
    // Known to a first; then b and c join through a and look the mesh up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.start("b", &[]);
    c.start("c", &[]);
    let ids: BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    let all: BTreeSet<String> = ids.values().cloned().collect();
    c.wait_all("the fleet", Duration::from_secs(30), |me, m| {
        let others: BTreeSet<String> = all.iter().filter(|p| **p != ids[me]).cloned().collect();
        in_state(m, "alive") == others
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    liar_task.abort();
    assert_eq!(
        dialed.load(Ordering::SeqCst),
        0,
        "a node dialed the named host"
    );
}

/// A certificate the holder of `c`'s join key signs for `peer`, naming `node` (or no
/// node), issued at `issued`: a join key's holder chooses every field.
fn join_key_certificate(
    c: &Cluster,
    peer: &PeerId,
    node: Option<&str>,
    issued: u64,
) -> xnode_spec::fleet::Certificate {
    use xnode_spec::fleet::{Certificate, JOIN_CERT_LIFETIME_SECS, JoinKey};
    let key = JoinKey::parse(&std::fs::read_to_string(&c.join_key).unwrap()).unwrap();
    let secret = xnode_spec::keys::OwnerKey::parse(&key.secret).unwrap();
    let expires = issued + JOIN_CERT_LIFETIME_SECS;
    let owner = c.owner.owner();
    Certificate {
        v: xnode_spec::fleet::VERSION,
        owner,
        peer: peer.to_string(),
        node: node.map(str::to_owned),
        issued,
        expires,
        signature: secret.sign(&Certificate::payload(
            &owner,
            &peer.to_string(),
            node,
            issued,
            expires,
        )),
        delegation: Some(key.delegation),
    }
}

/// The review's attack: any heartbeat could claim an existing node's name, which took
/// pushes and service lookups meant for it. Now a certificate names its node, and of
/// two live members that claim one name only one is heard under it. Three impostors
/// try it against `b` (admitted by the join key, as all three nodes are): an insider
/// the owner admitted under another name, which says it is `b`; the join key's holder,
/// with a certificate naming `b` backdated 29 days (before `b`'s own, which renews);
/// and the join key's holder with a certificate that names no node. None is heard as
/// `b`, on any node, `b` included.
#[tokio::test]
async fn no_member_goes_by_another_members_name() {
    let (mut c, ids) = fleet_of_three("names");
    let topic = libp2p::gossipsub::IdentTopic::new(xnode_mesh::fleet::topic(&c.owner.owner()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut impostors = Vec::new();
    for how in ["insider", "backdated", "unnamed"] {
        let mut swarm = gossip_swarm(&topic);
        swarm
            .dial(c.nodes["a"].listen.parse::<Multiaddr>().unwrap())
            .unwrap();
        let me = *swarm.local_peer_id();
        let cert = match how {
            "insider" => None,
            "backdated" => Some(join_key_certificate(&c, &me, Some("b"), now - 29 * 86_400)),
            _ => Some(join_key_certificate(&c, &me, None, now)),
        };
        let (owner, topic) = (c.owner.clone(), topic.clone());
        impostors.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    _ = tick.tick() => {
                        seq += 1;
                        let hb = match &cert {
                            None => member_heartbeat(&owner, &me, "insider", "b", seq),
                            Some(cert) => heartbeat(cert.clone(), "b", seq, 0),
                        };
                        let _ = swarm.behaviour_mut().publish(topic.clone(), hb);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    for name in ["a", "b", "c"] {
        let members = c.nodes.get_mut(name).unwrap().request("members")["members"].clone();
        let called_b: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["node"] == "b" && m["state"] != "dead")
            .map(|m| m["peer_id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = if name == "b" { vec![] } else { vec![&ids["b"]] };
        assert_eq!(called_b, expected, "{name} sees: {members}");
        // Not heard under another name either: no impostor is a member at all.
        let fleet: BTreeSet<&str> = ids.values().map(String::as_str).collect();
        assert!(
            members
                .as_array()
                .unwrap()
                .iter()
                .all(|m| fleet.contains(m["peer_id"].as_str().unwrap())),
            "{name} sees: {members}"
        );
        let providers = c.nodes.get_mut(name).unwrap().request("providers");
        assert!(
            providers["providers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["node"] != "b" || p["peer_id"] == ids["b"].as_str()),
            "{providers}"
        );
    }
    for i in impostors {
        i.abort();
    }
}
