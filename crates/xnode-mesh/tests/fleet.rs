//! Fleets against real processes: only the nodes the owner admitted are members;
//! nodes that claim the owner without a certificate, and another owner's fleet on the
//! same mesh, count for nothing; a revoked member is out everywhere, and stays out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

mod cluster;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use cluster::{Cluster, in_state};
use xnode_spec::fleet::{Certificate, JoinKey, Revocation};
use xnode_spec::keys::{KeyKind, OwnerKey};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn only_admitted_nodes_are_members_and_a_revoked_one_is_out_for_good() {
    let mut c = Cluster::new("fleet");
    for name in ["a", "b", "c"] {
        c.start(name, &[]);
    }
    let owner = c.owner.owner().to_string();
    // Two that claim the owner with no certificate, and another owner's fleet of two.
    // (x1 and x2 share only a, of another fleet: a introduces them to each other.)
    c.start("claim1", &["--owner", &owner]);
    c.start("claim2", &["--owner", &owner]);
    let other = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let other_key = c.dir.join("other.key");
    let key = JoinKey::create(&other, now() + 3600).unwrap();
    std::fs::write(&other_key, serde_json::to_vec(&key).unwrap()).unwrap();
    let other_key = other_key.to_str().unwrap().to_owned();
    c.start("x1", &["--join-key", &other_key]);
    c.start("x2", &["--join-key", &other_key]);

    let id = |c: &Cluster, n: &str| c.nodes[n].peer_id.clone();
    let fleet: BTreeSet<String> = ["a", "b", "c"].iter().map(|n| id(&c, n)).collect();
    let others: BTreeSet<String> = ["x1", "x2"].iter().map(|n| id(&c, n)).collect();
    let ids: std::collections::BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    let c_ids = ids.clone();
    let fleet_ids = fleet.clone();
    let expected = move |me: &str, members: &[serde_json::Value]| -> bool {
        let mine = &ids[me];
        let seen: BTreeSet<String> = members
            .iter()
            .map(|m| m["peer_id"].as_str().unwrap().to_owned())
            .collect();
        let of = |set: &BTreeSet<String>| -> BTreeSet<String> {
            set.iter().filter(|p| *p != mine).cloned().collect()
        };
        match me {
            "x1" | "x2" => seen == of(&others) && in_state(members, "alive") == of(&others),
            // Claimers hear the fleet, and nobody hears them.
            _ => seen == of(&fleet) && in_state(members, "alive") == of(&fleet),
        }
    };
    c.wait_all(
        "each fleet sees its own members only",
        Duration::from_secs(30),
        &expected,
    );
    // And it stays so over several heartbeats.
    std::thread::sleep(Duration::from_secs(3));
    c.wait_all("still", Duration::from_secs(1), &expected);
    for name in ["claim1", "claim2"] {
        let fleet = c.nodes.get_mut(name).unwrap().request("fleet")["fleet"].clone();
        assert_eq!(fleet["standing"]["state"], "outside", "{fleet}");
        let why = fleet["standing"]["why"].as_str().unwrap();
        assert!(why.contains("xnodectl fleet admit"), "{why}");
    }
    // Certificates for claim1, delivered through a as `xnodectl fleet admit` does:
    // each bad one is refused with its reason, and the good one admits it.
    let claim1 = id(&c, "claim1");
    let t = now();
    let expired_key = JoinKey::create(&c.owner, t - 10).unwrap();
    let secret = OwnerKey::parse(&expired_key.secret).unwrap();
    let from_expired_key = Certificate {
        issued: t,
        expires: t + 60,
        signature: secret.sign(&Certificate::payload(
            &c.owner.owner(),
            &claim1,
            Some("claim1"),
            t,
            t + 60,
        )),
        delegation: Some(expired_key.delegation.clone()),
        ..Certificate::issue(&c.owner, &claim1, "claim1", t, t + 60)
    };
    let mut forged = Certificate::issue(&c.owner, &claim1, "claim1", t, t + 3600);
    forged.expires += 1;
    let bad = [
        ("forged", forged, "forged or altered"),
        (
            "expired",
            Certificate::issue(&c.owner, &claim1, "claim1", t - 100, t - 1),
            "expired at",
        ),
        (
            "wrong peer",
            Certificate::issue(&c.owner, &id(&c, "a"), "claim1", t, t + 3600),
            "presented it",
        ),
        (
            "another node's name",
            Certificate::issue(&c.owner, &claim1, "a", t, t + 3600),
            "names node \"a\"",
        ),
        (
            "wrong owner",
            Certificate::issue(&other, &claim1, "claim1", t, t + 3600),
            "fleet of",
        ),
        ("expired join key", from_expired_key, "its join key expired"),
    ];
    for (what, cert, why) in bad {
        let line = format!("admit {claim1} {}", serde_json::to_string(&cert).unwrap());
        let answer = c.nodes.get_mut("a").unwrap().request(&line);
        let err = answer["answer"]["Err"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(err.contains(why), "{what}: {answer}");
    }
    let good = Certificate::issue(&c.owner, &claim1, "claim1", t, t + 3600);
    let line = format!("admit {claim1} {}", serde_json::to_string(&good).unwrap());
    let answer = c.nodes.get_mut("a").unwrap().request(&line);
    assert!(
        answer["answer"]["Ok"]
            .as_str()
            .unwrap()
            .contains("admitted"),
        "{answer}"
    );
    let claim1_standing =
        c.nodes.get_mut("claim1").unwrap().request("fleet")["fleet"]["standing"].clone();
    assert_eq!(claim1_standing["state"], "member", "{claim1_standing}");
    assert_eq!(claim1_standing["admitted_by"], "owner", "{claim1_standing}");
    let with_claim1: BTreeSet<String> = fleet_ids.into_iter().chain([claim1.clone()]).collect();
    c.wait_except(
        Some("claim2"),
        "claim1 admitted",
        Duration::from_secs(10),
        |me, m| {
            let mine = c_ids[me].clone();
            match me {
                "x1" | "x2" => true,
                _ => {
                    let want: BTreeSet<String> = with_claim1
                        .iter()
                        .filter(|p| **p != mine)
                        .cloned()
                        .collect();
                    in_state(m, "alive") == want
                }
            }
        },
    );

    let a = c.nodes.get_mut("a").unwrap().request("fleet")["fleet"].clone();
    assert_eq!(a["standing"]["state"], "member", "{a}");
    assert_eq!(a["members"].as_array().unwrap().len(), 4, "{a}");
    assert!(
        a["members"][0]["admitted_by"]
            .as_str()
            .unwrap()
            .starts_with("join key "),
        "{a}"
    );

    // The owner revokes c, through a: everyone drops it at once, c knows itself out.
    let victim = id(&c, "c");
    let revocation = Revocation::issue(&c.owner, &victim, now());
    let line = format!("revoke {}", serde_json::to_string(&revocation).unwrap());
    let answer = c.nodes.get_mut("a").unwrap().request(&line);
    assert_eq!(answer["answer"]["Ok"], "revoked", "{answer}");
    // A stranger's revocation of b is refused.
    let forged = Revocation::issue(&other, &id(&c, "b"), now());
    let line = format!("revoke {}", serde_json::to_string(&forged).unwrap());
    let answer = c.nodes.get_mut("a").unwrap().request(&line);
    assert!(
        answer["answer"]["Err"]
            .as_str()
            .unwrap()
            .contains("fleet of"),
        "{answer}"
    );
    let rest: BTreeSet<String> = ["a", "b", "claim1"].iter().map(|n| id(&c, n)).collect();
    c.wait_except(Some("c"), "c is out", Duration::from_secs(5), |me, m| {
        let dead = in_state(m, "dead");
        match me {
            "a" | "b" | "claim1" => dead.contains(&victim) && in_state(m, "alive").is_subset(&rest),
            _ => true,
        }
    });
    // c hears of it too (from a, or from the gossip), maybe a little later.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let standing = loop {
        let s = c.nodes.get_mut("c").unwrap().request("fleet")["fleet"]["standing"].clone();
        if s["state"] == "outside" || std::time::Instant::now() > until {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(standing["state"], "outside", "{standing}");
    assert!(
        standing["why"].as_str().unwrap().contains("revoked"),
        "{standing}"
    );

    // Out for good: restarted with its join key still there, c is not taken back.
    c.kill("c");
    c.start("c", &[]);
    std::thread::sleep(Duration::from_secs(3));
    for name in ["a", "b"] {
        let members = c.nodes.get_mut(name).unwrap().request("members")["members"].clone();
        let alive = in_state(members.as_array().unwrap(), "alive");
        assert!(!alive.contains(&victim), "{name}: {members}");
    }
    let standing = c.nodes.get_mut("c").unwrap().request("fleet")["fleet"]["standing"].clone();
    assert_eq!(standing["state"], "outside", "{standing}");
}
