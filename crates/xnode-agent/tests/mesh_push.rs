//! Two real nodes (xnoded under systemd, each in its own container) in one mesh on
//! 127.0.0.1: one finds the other's service, and carries its owner's signed pushes to
//! it. The good push is applied; forged, replayed, stale and wrongly signed ones are
//! rejected with their reasons, and change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::Container;
use xnode_lab::node::{api, wait_status};
use xnode_spec::keys::{KeyKind, OwnerKey};
use xnode_spec::push;

const FLAGS: &str =
    "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0 --join-key /etc/xnode/join.key";

fn node(spec: &Value) -> Container {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    xnode_lab::node::boot_node_with(
        bin.parent().unwrap(),
        &serde_json::to_vec(spec).unwrap(),
        FLAGS,
    )
    .unwrap()
}

fn wait_for(c: &Container, what: &str, request: Request, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(v) = api(c, request.clone()) {
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what} never happened: {v:#}");
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sleeper() -> Value {
    json!({"command": ["/bin/sleep", "infinity"]})
}

#[test]
fn pushes_from_the_owner_are_applied_and_all_others_rejected() {
    let owner = xnode_lab::fleet::owner();
    let stranger = OwnerKey::generate(KeyKind::Eth).unwrap();
    let (pa, pb) = (xnode_lab::node::free_port(), xnode_lab::node::free_port());
    let a = node(
        &json!({"version": 1, "node": {"name": "a", "owner": owner.owner().to_string()},
        "mesh": {"listen": [format!("/ip4/127.0.0.1/tcp/{pa}")]}}),
    );
    let spec_b = |workloads: Value| {
        json!({"version": 1, "node": {"name": "b", "owner": owner.owner().to_string()},
               "mesh": {"listen": [format!("/ip4/127.0.0.1/tcp/{pb}")],
                        "bootstrap": [format!("/ip4/127.0.0.1/tcp/{pa}")]},
               "workloads": workloads})
    };
    let b = node(&spec_b(
        json!({"web": {"command": ["/bin/sleep", "infinity"],
                                        "expose": [{"service": "web", "port": 8080}]}}),
    ));

    // The mesh: each sees the other; b's service resolves from a.
    wait_for(&a, "b in a's view", Request::MeshPeers, |m| {
        m.as_array()
            .unwrap()
            .iter()
            .any(|p| p["node"] == "b" && p["state"] == "alive")
    });
    let providers = wait_for(
        &a,
        "web from a",
        Request::MeshServices {
            service: Some("web".into()),
        },
        |p| p.as_array().unwrap().len() == 1,
    );
    assert_eq!(providers[0]["node"], "b");
    assert_eq!(providers[0]["port"], 8080);
    let status = api(&b, Request::Status).unwrap();
    assert_eq!(status["mesh"]["alive"], 1, "{status:#}");
    let peer_b = status["mesh"]["peer_id"].as_str().unwrap().to_owned();
    assert!(peer_b.starts_with("12D3KooW"));
    assert_eq!(status["mesh"]["members"][0]["node"], "a", "{status:#}");
    assert_eq!(
        status["mesh"]["services"][0]["service"], "web",
        "{status:#}"
    );

    // A good push, carried by a: b applies it as a new generation.
    let pushed = spec_b(json!({"web": {"command": ["/bin/sleep", "infinity"],
                                       "expose": [{"service": "web", "port": 8080}]},
                               "pushed": sleeper()}));
    let good = push::sign(&owner, &peer_b, 1000, now(), pushed.clone());
    let push_via_a = |p: &push::Push| {
        api(
            &a,
            Request::MeshPush {
                push: serde_json::to_value(p).unwrap(),
            },
        )
        .map_err(|e| e.to_string())
    };
    let answer = push_via_a(&good).unwrap();
    assert!(
        answer
            .as_str()
            .unwrap()
            .contains("accepted push generation 1000; applying it as generation 2"),
        "{answer}"
    );
    let status = wait_status(&b, "the push applied", Duration::from_secs(60), |s| {
        s["generation"]["outcome"]["state"] == "healthy" && s["generation"]["number"] == 2
    })
    .unwrap();
    assert_eq!(status["generation"]["number"], 2);
    assert_eq!(status["generation"]["source"]["kind"], "mesh");
    assert_eq!(status["generation"]["source"]["push_generation"], 1000);
    assert!(
        b.sh("systemctl is-active xnode-pushed.service")
            .unwrap()
            .contains("active")
    );

    // Everything else is rejected, with its reason, and changes nothing.
    let mut forged = push::sign(&owner, &peer_b, 2000, now(), pushed.clone());
    forged.spec["workloads"]["evil"] = sleeper();
    let nobody = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    let cases = [
        ("replayed", good.clone(), "not newer"),
        (
            "stale",
            push::sign(&owner, &peer_b, 999, now(), pushed.clone()),
            "not newer",
        ),
        (
            "forged",
            forged,
            "forged, altered, or signed by another key",
        ),
        (
            "wrong key",
            push::sign(&stranger, &peer_b, 3000, now(), pushed.clone()),
            "signed by another key",
        ),
        (
            "too old",
            push::sign(&owner, &peer_b, 4000, now() - 3600, pushed.clone()),
            "node's clock",
        ),
        (
            "for nobody",
            push::sign(&owner, &nobody, 5000, now(), pushed.clone()),
            "no live member",
        ),
        (
            "far future",
            push::sign(&owner, &peer_b, u64::MAX, now(), pushed.clone()),
            "lock out every later push",
        ),
    ];
    for (what, p, reason) in cases {
        let err = push_via_a(&p).unwrap_err();
        assert!(err.contains(reason), "{what}: {err}");
    }
    let status = api(&b, Request::Status).unwrap();
    assert_eq!(
        status["generation"]["number"], 2,
        "no rejected push changed b"
    );
    assert!(b.sh("systemctl is-active xnode-evil.service").is_err());
    let log = b
        .sh("journalctl -u xnoded.service --no-pager -o cat")
        .unwrap();
    assert!(log.contains("push rejected"), "{log}");
    // A push straight to b's own API goes through the same checks.
    let err = api(
        &b,
        Request::MeshPush {
            push: serde_json::to_value(&good).unwrap(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not newer"), "{err}");
}
