//! A hostile peer against three real nodes of a fleet: 1,000 malformed messages
//! (gossip on the fleet's topic that is not a member's, breaks its bounds or reports a
//! false death, garbage pushes, and connections that speak no protocol at all). No
//! node crashes, the fleet stays whole, and the peer is graylisted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

mod cluster;

use std::io::Write as _;
use std::time::Duration;

use cluster::{Cluster, gossip_swarm, heartbeat, hostile_swarm, in_state, rss_kb};
use futures_util::StreamExt as _;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, gossipsub, request_response};

#[derive(NetworkBehaviour)]
struct Hostile {
    gossipsub: gossipsub::Behaviour,
    push: request_response::json::Behaviour<serde_json::Value, serde_json::Value>,
}

/// What the hostile peer publishes on the membership topic: each wrong in its own way.
fn bad_gossip(i: usize, victim: &str) -> Vec<u8> {
    match i % 8 {
        0 => vec![0xff; i % 97],
        1 => b"{\"type\":\"heartbeat\"}".to_vec(),
        2 => format!("{{\"type\":\"takeover\",\"n\":{i}}}").into_bytes(),
        3 => serde_json::json!({"type": "heartbeat", "node": "-bad-", "incarnation": 1, "seq": i,
            "resources": {"cpus": 1, "memory": 1, "memory_free": 1, "disk": 1, "disk_free": 1}})
        .to_string()
        .into_bytes(),
        4 => serde_json::json!({"type": "gone", "peer": "not a peer id", "incarnation": 1, "seq": 1})
            .to_string()
            .into_bytes(),
        // A false report that a live member died: the nodes connected to it know better.
        5 => serde_json::json!({"type": "gone", "peer": victim, "incarnation": u64::MAX, "seq": u64::MAX})
            .to_string()
            .into_bytes(),
        6 => "[".repeat(200).into_bytes(),
        _ => serde_json::json!({"type": "heartbeat", "node": "x", "incarnation": 1, "seq": i,
            "resources": {"cpus": 1, "memory": 1, "memory_free": 1, "disk": 1, "disk_free": 1},
            "addresses": vec!["/nope"; 3]})
        .to_string()
        .into_bytes(),
    }
}

#[tokio::test]
async fn a_thousand_malformed_messages_crash_no_one() {
    let mut c = Cluster::new("hostile");
    for name in ["a", "b", "c"] {
        c.start(name, &[]);
    }
    let peers: Vec<String> = c.nodes.values().map(|p| p.peer_id.clone()).collect();
    let whole = |me_peer: &str, members: &[serde_json::Value]| {
        let others: std::collections::BTreeSet<String> =
            peers.iter().filter(|p| *p != me_peer).cloned().collect();
        in_state(members, "alive") == others
    };
    let ids: std::collections::BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    c.wait_all("the mesh", Duration::from_secs(30), |me, m| {
        whole(&ids[me], m)
    });
    let target: Multiaddr = c.nodes["a"].listen.parse().unwrap();
    let target_peer = c.nodes["a"].peer_id.parse().unwrap();
    let victim = c.nodes["b"].peer_id.clone();
    let mut sent = 0;

    // 300 connections that are not libp2p at all.
    let port = c.nodes["a"]
        .listen
        .rsplit('/')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    for i in 0..300u32 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(&i.to_le_bytes().repeat((i % 64 + 1) as usize));
        }
        sent += 1;
    }

    // A real libp2p peer, saying wrong things: 400 gossip messages, 300 pushes.
    let mut hostile = hostile_swarm(|key| Hostile {
        gossipsub: gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossipsub::ConfigBuilder::default()
                .heartbeat_initial_delay(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .unwrap(),
        push: request_response::json::Behaviour::new(
            [(
                StreamProtocol::new("/xnode/push/1.0.0"),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default(),
        ),
    });
    let topic = gossipsub::IdentTopic::new(xnode_mesh::fleet::topic(&c.owner.owner()));
    hostile.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    hostile.dial(target).unwrap();
    // Until a's subscription to the topic is known, publishing has nobody to go to.
    let subscribed = async {
        loop {
            if let SwarmEvent::Behaviour(HostileEvent::Gossipsub(gossipsub::Event::Subscribed {
                ..
            })) = hostile.select_next_some().await
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), subscribed)
        .await
        .expect("a subscribes");
    for i in 0..400 {
        let bytes = bad_gossip(i, &victim);
        let _ = hostile
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), bytes);
        sent += 1;
    }
    for i in 0..300 {
        let garbage = match i % 3 {
            0 => serde_json::json!("not a push"),
            1 => serde_json::json!({"v": 1, "node": "a", "generation": i, "spec": [[[[]]]]}),
            _ => serde_json::json!(vec![i; 1000]),
        };
        hostile
            .behaviour_mut()
            .push
            .send_request(&target_peer, garbage);
        sent += 1;
    }
    // Let it all go out and be answered.
    let drain = async {
        loop {
            hostile.select_next_some().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    assert_eq!(sent, 1000);
    // A turned the gossip away (none of it is a member's), and after the first few
    // ignores the hostile peer altogether.
    let status = c.nodes.get_mut("a").unwrap().request("status")["status"].clone();
    let rejected = status["rejected"].as_u64().unwrap();
    assert!(
        rejected >= 3,
        "a rejected only {rejected} messages: {status}"
    );
    assert_eq!(status["graylisted"], 1, "{status}");
    let drain = async {
        loop {
            hostile.select_next_some().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), drain).await;

    // Nobody crashed, and the mesh is whole (the false reports about b changed nothing
    // that lasted).
    c.wait_all(
        "the mesh after the attack",
        Duration::from_secs(30),
        |me, m| whole(&ids[me], m),
    );
    for proc in c.nodes.values_mut() {
        let status = proc.request("status");
        assert_eq!(status["kind"], "status", "{status}");
    }
}

/// A heartbeat that claims the fleet: its certificate is the forger's own, or the
/// fleet's owner's name over the forger's signature.
fn forged_heartbeat(peer: &libp2p::PeerId, owner: &xnode_spec::Owner, i: u64) -> Vec<u8> {
    use xnode_spec::fleet::Certificate;
    use xnode_spec::keys::{KeyKind, OwnerKey};
    let peer = peer.to_string();
    let forger = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let mut cert = Certificate::issue(&forger, &peer, "n", 1, u64::MAX);
    if i.is_multiple_of(2) {
        cert.owner = *owner;
    }
    heartbeat(cert, &format!("forged{i}"), i, 3_600_000)
}

#[tokio::test]
async fn heartbeats_from_dozens_of_forged_keys_over_one_connection_change_nothing() {
    const FORGERS: usize = 40;
    let mut c = Cluster::new("forged");
    for name in ["a", "b", "c"] {
        c.start(name, &[]);
    }
    let ids: std::collections::BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    let fleet: std::collections::BTreeSet<String> = ids.values().cloned().collect();
    let same = move |me: &str, m: &[serde_json::Value]| {
        let others: std::collections::BTreeSet<String> =
            fleet.iter().filter(|p| **p != ids[me]).cloned().collect();
        let seen: std::collections::BTreeSet<String> = m
            .iter()
            .map(|x| x["peer_id"].as_str().unwrap().to_owned())
            .collect();
        in_state(m, "alive") == others && seen == others
    };
    c.wait_all("the fleet", Duration::from_secs(30), &same);
    let quorate_of_three = |c: &mut Cluster| {
        c.nodes.values_mut().all(|p| {
            let s = p.request("status")["status"].clone();
            s["quorate"] == true && s["voters"] == 3
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !quorate_of_three(&mut c) {
        assert!(
            std::time::Instant::now() < until,
            "the fleet never agreed on its voters"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_before = rss_kb(c.nodes["a"].pid());

    // The relay: the one connection to the fleet, forwarding whatever it is given.
    let topic = gossipsub::IdentTopic::new(xnode_mesh::fleet::topic(&c.owner.owner()));
    let mut relay = gossip_swarm(&topic);
    relay
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let relay_addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = relay.select_next_some().await {
            break address;
        }
    };
    relay
        .dial(c.nodes["a"].listen.parse::<Multiaddr>().unwrap())
        .unwrap();
    let relay_task = tokio::spawn(async move {
        loop {
            relay.select_next_some().await;
        }
    });
    // Forty fresh keys behind it, each saying it is a member, ten times.
    let owner = c.owner.owner();
    let mut forgers = Vec::new();
    for _ in 0..FORGERS {
        let mut f = gossip_swarm(&topic);
        f.dial(relay_addr.clone()).unwrap();
        let topic = topic.clone();
        forgers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            let mut sent = 0;
            loop {
                tokio::select! {
                    _ = f.select_next_some() => {}
                    _ = tick.tick() => {
                        // Signed by the forger's own key: the message's source is it.
                        let hb = forged_heartbeat(f.local_peer_id(), &owner, sent);
                        let _ = f.behaviour_mut().publish(topic.clone(), hb);
                        sent += 1;
                        if sent == 10 {
                            return;
                        }
                    }
                }
            }
        }));
    }
    for f in forgers {
        f.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay_task.abort();

    // Nothing changed: the same members, quorate with the same voters; a took in
    // little memory for it, and refused the relay.
    c.wait_all(
        "the fleet after the forgeries",
        Duration::from_secs(5),
        &same,
    );
    assert!(quorate_of_three(&mut c), "the forgeries changed the voters");
    let a = c.nodes.get_mut("a").unwrap().request("status")["status"].clone();
    assert!(a["rejected"].as_u64().unwrap() >= 3, "{a}");
    let grown = rss_kb(c.nodes["a"].pid()).saturating_sub(rss_before);
    assert!(grown < 20_000, "a grew by {grown} kB");
}
