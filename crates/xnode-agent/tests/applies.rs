//! Applies run beside xnoded's loop: it answers while an apply waits in its health
//! gate and says how far the apply is, refuses a second one by name, restarts a mesh
//! workload it changes without placement stopping it first, and gates a mesh workload
//! the new generation places on the node, so that its failure rolls the generation
//! back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::node::{active, api, generation, wait_status};
use xnode_lab::{Container, fleet};

fn node(spec: &Value, flags: &str) -> Container {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let spec = serde_json::to_vec_pretty(spec).unwrap();
    xnode_lab::node::boot_node_with(bin.parent().unwrap(), &spec, flags).unwrap()
}

fn wait_for(c: &Container, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_status(c, what, Duration::from_secs(60), check).unwrap_or_else(|e| panic!("{e}"))
}

fn sleeper() -> Value {
    json!({"command": ["/bin/sleep", "infinity"]})
}

fn apply_in_background(c: &Container, spec: Value) -> std::thread::JoinHandle<Value> {
    let socket = c.path("/run/xnode/api.sock");
    std::thread::spawn(move || {
        let request = Request::Apply {
            spec,
            no_rollback: false,
        };
        xnode_api::call(&socket, request, Duration::from_secs(180)).unwrap()
    })
}

#[test]
fn status_answers_while_an_apply_waits_in_a_long_health_gate_and_shows_it() {
    let spec =
        |workloads: Value| json!({"version": 1, "node": {"name": "gate"}, "workloads": workloads});
    let c = node(&spec(json!({"a": sleeper()})), xnode_lab::node::TEST_FLAGS);
    wait_for(&c, "convergence", |s| s["converged"] == true);
    // Healthy once something listens on `port`: the test opens it when it is done.
    let port = xnode_lab::node::free_port();
    let gated = spec(json!({
        "a": sleeper(),
        "slow": {"command": ["/bin/sleep", "infinity"], "health": {"timeout": "60s", "tcp": {"port": port}}}
    }));
    let applying = apply_in_background(&c, gated);
    let s = wait_for(&c, "the gate", |s| {
        let why = &s["applying"]["workloads"]["slow"]["why"];
        why.as_str().is_some_and(|w| w.contains("probe fails"))
    });
    assert_eq!(s["applying"]["generation"], 2, "{s:#}");
    let slow = &s["applying"]["workloads"]["slow"];
    assert_eq!(slow["state"], "waiting", "{s:#}");
    assert!(
        slow["why"].as_str().unwrap().contains("probe fails"),
        "{s:#}"
    );
    assert_eq!(s["converged"], false, "not converged while it applies");
    // Every request is answered while the gate waits: status again and again,
    // history, logs, a plan; a second apply is refused, naming the one under way.
    for _ in 0..20 {
        let s = api(&c, Request::Status).unwrap();
        assert_eq!(s["applying"]["generation"], 2);
    }
    let history = api(&c, Request::History).unwrap();
    assert_eq!(history["generations"][1]["outcome"]["state"], "applying");
    api(
        &c,
        Request::Logs {
            workload: "a".into(),
            lines: 5,
        },
    )
    .unwrap();
    let plan = api(
        &c,
        Request::Plan {
            spec: spec(json!({})),
        },
    )
    .unwrap();
    assert!(!plan["actions"].as_array().unwrap().is_empty());
    let refused = api(
        &c,
        Request::Apply {
            spec: spec(json!({})),
            no_rollback: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("generation 2 is being applied"),
        "{refused}"
    );
    assert!(!applying.is_finished(), "still in the gate");

    // Something listens: the gate passes, and the apply reports it.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let result = applying.join().unwrap();
    assert_eq!(result["outcome"]["state"], "healthy", "{result:#}");
    let s = wait_for(&c, "convergence", |s| s["converged"] == true);
    assert!(s["applying"].is_null());
    assert_eq!(generation(&s), 2);
}

#[test]
fn a_mesh_workload_a_failing_generation_places_here_rolls_it_back() {
    // A node alone in its mesh is quorate by itself: its mesh workloads run here once
    // its hold-down is over.
    let port = xnode_lab::node::free_port();
    let spec = |workloads: Value| {
        json!({"version": 1, "node": {"name": "alone", "owner": fleet::owner().owner().to_string()},
               "mesh": {"listen": [format!("/ip4/127.0.0.1/tcp/{port}")]},
               "workloads": workloads})
    };
    let flags = &format!(
        "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0 {}",
        fleet::JOIN_FLAG
    );
    let mesh = json!({"command": ["/bin/sleep", "infinity"], "placement": {"mesh": {}}});
    let c = node(&spec(json!({"m": mesh.clone()})), flags);
    wait_for(&c, "the hold-down, then its mesh workload", |s| {
        s["converged"] == true && active(&c, "xnode-m.service") == "active"
    });
    // A new definition of it is the apply's to restart, not placement's to stop: the
    // node decides with what it now offers, not with what the mesh last published.
    let mut changed = mesh.clone();
    changed["environment"] = json!({"VERSION": "2"});
    let result = apply_in_background(&c, spec(json!({"m": changed.clone()})))
        .join()
        .unwrap();
    assert_eq!(result["outcome"]["state"], "healthy", "{result:#}");
    let log = c.sh("journalctl -u xnoded --no-pager -o cat").unwrap();
    assert!(!log.contains("placement moved m off"), "{log}");
    assert_eq!(active(&c, "xnode-m.service"), "active");
    let failing = spec(json!({
        "m": changed,
        "solo": {"command": ["/bin/sh", "-c", "sleep 0.5; exit 3"], "restart": {"policy": "no"},
                 "placement": {"mesh": {}}}
    }));
    let result = apply_in_background(&c, failing).join().unwrap();
    assert_eq!(result["outcome"]["state"], "rolled_back", "{result:#}");
    let reason = result["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("solo: failed (exit status 3)"), "{reason}");
    let s = wait_for(&c, "convergence after the rollback", |s| {
        s["converged"] == true
    });
    assert_eq!(generation(&s), 4);
    assert_ne!(active(&c, "xnode-solo.service"), "active");
    assert!(!c.path("/run/systemd/system/xnode-solo.service").exists());
    // It ran under the lease, as every mesh workload does.
    let bound = c
        .sh("journalctl -u xnoded-lease.service --no-pager -o cat")
        .unwrap();
    assert!(bound.contains("Started"), "{bound}");
}
