//! What real services need from a workload, under systemd: a oneshot that runs once,
//! state that survives restarts, updates and removal until pruned, an age secret that
//! reaches `$CREDENTIALS_DIRECTORY` and nowhere else, a secret for another node that
//! stays unread, `after`/`requires` ordering starts, and a timer firing on its schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::Container;
use xnode_lab::node::{api, wait_status};

/// The secret: nothing else in the test writes this text.
const SECRET: &str = "xnode-test-secret-7f3a91c2";

fn wait_for(c: &Container, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_status(c, what, Duration::from_secs(90), check).unwrap_or_else(|e| panic!("{e}"))
}

fn workload<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["workloads"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == name))
        .unwrap_or(&Value::Null)
}

fn apply(c: &Container, spec: &Value) -> Value {
    api(
        c,
        Request::Apply {
            spec: spec.clone(),
            no_rollback: false,
        },
    )
    .unwrap()
}

/// Lines of a unit's journal, as its processes printed them.
fn said(c: &Container, unit: &str) -> Vec<String> {
    c.sh(&format!("journalctl -u {unit} --no-pager -o cat"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn show(c: &Container, unit: &str, property: &str) -> String {
    c.sh(&format!("systemctl show -P {property} {unit}"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The node's peer id, from the mesh key xnoded made on its first start.
fn peer_id(c: &Container) -> String {
    let bytes = std::fs::read(c.path("/var/lib/xnode/mesh.key")).unwrap();
    let key = libp2p::identity::Keypair::from_protobuf_encoding(&bytes).unwrap();
    key.public().to_peer_id().to_base58()
}

fn spec(workloads: Value) -> Value {
    json!({"version": 1, "node": {"name": "kinds"}, "workloads": workloads})
}

#[test]
fn oneshots_state_secrets_and_order_under_systemd() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node(
        bin.parent().unwrap(),
        &serde_json::to_vec(&spec(json!({}))).unwrap(),
    )
    .unwrap();
    // The spec file's apply is done before the test's own.
    wait_for(&c, "the first apply", |s| s["converged"] == true);
    let me = xnode_secret::peer_public_key(&peer_id(&c)).unwrap();
    let age = xnode_secret::encrypt(&[me], SECRET.as_bytes()).unwrap();
    let stranger = libp2p::identity::Keypair::ed25519_from_bytes([3u8; 32]).unwrap();
    let stranger =
        xnode_secret::peer_public_key(&stranger.public().to_peer_id().to_base58()).unwrap();
    let not_mine = xnode_secret::encrypt(&[stranger], b"for another node").unwrap();
    c.sh("mkdir -p /etc/kinds && printf 'GREETING=hello\\n' > /etc/kinds/db.env && printf tls-key > /etc/kinds/tls")
        .unwrap();
    // db counts its starts in its state directory.
    let db = |version: &str| {
        json!({
            "command": ["/bin/sh", "-c", "n=$(cat $STATE_DIRECTORY/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $STATE_DIRECTORY/count; echo \"count $n greeting $GREETING\"; exec sleep infinity"],
            "environment": {"VERSION": version},
            "environment_files": ["/etc/kinds/db.env"],
            "state": true,
            "stop": {"timeout": "20s", "signal": "SIGINT"},
        })
    };
    // migrate runs after db (only after: a oneshot that requires db would run again
    // whenever db restarts) and says what it was handed, by hash only.
    let migrate = json!({
        "kind": "oneshot",
        "command": ["/bin/sh", "-c", "echo migrate ran; sha256sum < $CREDENTIALS_DIRECTORY/token; cat $CREDENTIALS_DIRECTORY/tls; echo"],
        "after": ["db"],
        "credentials": {"token": {"age": age}, "tls": {"file": "/etc/kinds/tls"}},
        "restart": {"policy": "no"},
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let full = spec(json!({
        "db": db("1"),
        "migrate": migrate,
        // app needs db: started with it, after it.
        "app": {"command": ["/bin/sleep", "infinity"], "after": ["db"], "requires": ["db"]},
        "other": {"command": ["/bin/sleep", "infinity"], "credentials": {"token": {"age": not_mine}}},
        "tick": {"kind": "timer", "schedule": "*:*:0/2", "command": ["/bin/echo", "tick"]},
        // Healthy while the test listens on its port (the containers share the host's
        // loopback).
        "probed": {"command": ["/bin/sleep", "infinity"], "health": {"tcp": {"port": port}}},
    }));
    let reply = apply(&c, &full);
    assert_eq!(reply["outcome"]["state"], "healthy", "{reply:#}");
    let s = wait_for(&c, "migrate done", |s| {
        workload(s, "migrate")["state"] == "exited"
    });

    // The oneshot ran once, after db, with its secret and file.
    let lines = said(&c, "xnode-migrate.service");
    assert_eq!(
        lines.iter().filter(|l| *l == "migrate ran").count(),
        1,
        "{lines:?}"
    );
    let want = c.sh(&format!("printf %s '{SECRET}' | sha256sum")).unwrap();
    assert!(lines.iter().any(|l| l.trim() == want.trim()), "{lines:?}");
    assert!(lines.iter().any(|l| l == "tls-key"), "{lines:?}");
    let started = |u: &str| {
        show(&c, u, "ExecMainStartTimestampMonotonic")
            .parse::<u64>()
            .unwrap()
    };
    assert!(started("xnode-db.service") < started("xnode-migrate.service"));
    assert!(started("xnode-db.service") < started("xnode-app.service"));
    assert_eq!(show(&c, "xnode-db.service", "KillSignal"), "2");
    assert_eq!(show(&c, "xnode-db.service", "TimeoutStopUSec"), "20s");
    assert!(said(&c, "xnode-db.service").contains(&"count 1 greeting hello".to_owned()));

    // The secret for another node: that workload is held back, with why, and nothing
    // of either secret shows.
    let other = workload(&s, "other");
    assert!(
        other["error"]
            .as_str()
            .unwrap_or("")
            .contains("not encrypted to this node"),
        "{other:#}"
    );
    assert_eq!(
        xnode_lab::node::active(&c, "xnode-other.service"),
        "inactive"
    );

    // The timer fires on its schedule, every 2 s, and stays set.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while said(&c, "xnode-tick.service")
        .iter()
        .filter(|l| *l == "tick")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the timer did not fire twice"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(xnode_lab::node::active(&c, "xnode-tick.timer"), "active");

    // Every form of schedule the spec accepts, systemd accepts.
    for schedule in xnode_spec::calendar::EXAMPLES {
        c.sh(&format!(
            "systemd-analyze calendar '{schedule}' > /dev/null"
        ))
        .unwrap_or_else(|e| panic!("systemd refuses {schedule:?}: {e}"));
    }

    // The probe runs all the time: the workload turns unhealthy when nothing answers,
    // with why, and healthy again when something does.
    let healthy = |s: &Value| workload(s, "probed")["health"]["healthy"].clone();
    wait_for(&c, "probed healthy", |s| healthy(s) == true);
    drop(listener);
    let s = wait_for(&c, "probed unhealthy", |s| healthy(s) == false);
    let why = workload(&s, "probed")["health"]["why"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(why.contains("nothing listens"), "{why}");
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    wait_for(&c, "probed healthy again", |s| healthy(s) == true);
    drop(listener);
    let log = xnode_lab::node::journal(&c);
    assert!(log.contains("probed fails its probe"), "{log}");

    // Converge passes later, the oneshot has still run once.
    std::thread::sleep(Duration::from_secs(5));
    let lines = said(&c, "xnode-migrate.service");
    assert_eq!(
        lines.iter().filter(|l| *l == "migrate ran").count(),
        1,
        "{lines:?}"
    );

    // State survives a restart and an update of the definition.
    c.sh("systemctl restart xnode-db.service").unwrap();
    let mut updated = full.clone();
    updated["workloads"]["db"] = db("2");
    let reply = apply(&c, &updated);
    assert_eq!(reply["outcome"]["state"], "healthy", "{reply:#}");
    let lines = said(&c, "xnode-db.service");
    assert!(
        lines.contains(&"count 3 greeting hello".to_owned()),
        "{lines:?}"
    );
    let s = wait_for(&c, "state measured", |s| {
        workload(s, "db")["state_bytes"].as_u64() > Some(0)
    });
    assert_eq!(
        workload(&s, "db")["state_bytes"],
        2,
        "the count file, \"3\\n\""
    );
    // What systemd accounts for it, sampled beside the loop: no restarts of its own
    // (the test's restart was by hand).
    // (The lab's containers account neither memory nor CPU per unit, so only the
    // restarts show here.)
    let s = wait_for(&c, "db's usage sampled", |s| {
        workload(s, "db")["usage"]["restarts"].is_u64()
    });
    let usage = &workload(&s, "db")["usage"];
    assert_eq!(usage["restarts"], 0, "{usage}");

    // The plaintext is nowhere but the credential itself: not in files under /var,
    // /run or /etc, the journal, or any reply.
    let found = c
        .sh(&format!(
            "grep -rlsF '{SECRET}' /var /run /etc /tmp | grep -v -e '^/run/xnode-secrets/' -e '^/run/credentials/' || true"
        ))
        .unwrap();
    assert_eq!(found.trim(), "", "the secret is in these files");
    let staged = c
        .sh(&format!("grep -rlsF '{SECRET}' /run/xnode-secrets || true"))
        .unwrap();
    assert_eq!(
        staged.lines().count(),
        1,
        "decrypted once, for migrate: {staged}"
    );
    let journal = c.sh("journalctl --no-pager -o cat").unwrap();
    assert!(!journal.contains(SECRET), "the secret is in the journal");
    for request in [
        Request::Status,
        Request::History,
        Request::StateList,
        Request::Logs {
            workload: "migrate".into(),
            lines: 100,
        },
        Request::Plan {
            spec: updated.clone(),
        },
    ] {
        let reply = api(&c, request.clone()).unwrap().to_string();
        assert!(
            !reply.contains(SECRET),
            "{request:?} replied with the secret"
        );
    }

    // Removed, db's data stays, listed, until pruned; a workload in the spec cannot be.
    let err = api(
        &c,
        Request::StatePrune {
            workload: "db".into(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is in the spec"), "{err}");
    let reply = apply(&c, &spec(json!({})));
    assert_eq!(reply["outcome"]["state"], "healthy", "{reply:#}");
    let list = api(&c, Request::StateList).unwrap();
    assert_eq!(list[0]["workload"], "db", "{list:#}");
    assert_eq!(list[0]["in_spec"], false);
    assert!(c.path("/var/lib/private/xnode-db/count").exists());
    assert_eq!(
        c.sh("ls /run/xnode-secrets").unwrap().trim(),
        "",
        "secrets of removed workloads go"
    );
    let pruned = api(
        &c,
        Request::StatePrune {
            workload: "db".into(),
        },
    )
    .unwrap();
    assert_eq!(pruned["bytes"], 2);
    assert!(!c.path("/var/lib/private/xnode-db").exists());
    assert_eq!(api(&c, Request::StateList).unwrap(), json!([]));

    // Back again, db starts from nothing.
    let reply = apply(&c, &spec(json!({"db": db("3")})));
    assert_eq!(reply["outcome"]["state"], "healthy", "{reply:#}");
    let lines = said(&c, "xnode-db.service");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("count 1 greeting hello"),
        "{lines:?}"
    );
}
