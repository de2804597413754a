//! Deploying to a fleet of five real nodes (xnoded under systemd, each in its own
//! container and network namespace, admitted with a join key):
//!
//! - adding a workload to all five: one `fleet apply` (all five at once:
//!   `max_parallel: 5, canary: 0`) against five `mesh push`es, one after another as an
//!   owner without fleet specs sends them, each waited for (what `mesh push --wait`
//!   does);
//! - rolling a new definition out across the five with `canary: 1`, `min_healthy_time:
//!   "2s"`, and `max_parallel` 1, then 2.
//!
//! Each time runs from the command to the last of the five starting it, read from the
//! journals on the monotonic clock every container shares.
//!
//! `cargo bench -p xnode-agent --bench fleet` (root).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails by panicking

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::Cluster;
use xnode_lab::cluster::{monotonic_us, wait_until};
use xnode_lab::fleet::owner;
use xnode_lab::node::api;
use xnode_lab::runs::runs;
use xnode_spec::{fleet_spec, push};

const N: usize = 5;
const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn workload(version: &str) -> Value {
    json!({"command": ["/bin/sh", "-c", format!("echo {version}; exec sleep infinity")],
           "placement": {"mesh": {"replicas": N}}})
}

/// Seconds from `from` (µs, monotonic) until `unit` started on every node after it.
fn everywhere(cluster: &Cluster, unit: &str, from: u64) -> f64 {
    let started = || -> Option<u64> {
        let mut last = 0;
        for c in &cluster.nodes {
            let first = runs(c, unit)
                .ok()?
                .iter()
                .map(|r| r.from_us)
                .find(|t| *t > from)?;
            last = last.max(first);
        }
        Some(last)
    };
    wait_until(Duration::from_secs(300), || started().is_some())
        .unwrap_or_else(|_| panic!("{unit} did not start on all {N} nodes"));
    (started().unwrap() - from) as f64 / 1e6
}

fn fleet_apply(cluster: &Cluster, generation: u64, workloads: Value) -> u64 {
    let at = monotonic_us();
    let spec = json!({"version": 1, "workloads": workloads});
    let signed = fleet_spec::signed::sign(&owner(), generation, now(), spec);
    api(
        &cluster.nodes[0],
        Request::FleetApply {
            spec: serde_json::to_value(signed).unwrap(),
        },
    )
    .unwrap();
    at
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = Cluster::boot(bin.parent().unwrap(), N, FLAGS, |i, net| {
        Cluster::spec(N, i, net, &json!({}))
    })
    .unwrap();
    // A node's peer id shows once its mesh node answers, which can be a moment after
    // xnoded is ready.
    let peers: Vec<String> = (0..N)
        .map(|i| {
            let mut peer = None;
            wait_until(Duration::from_secs(60), || {
                peer = api(&cluster.nodes[i], Request::Status)
                    .ok()
                    .and_then(|s| s["mesh"]["peer_id"].as_str().map(str::to_owned));
                peer.is_some()
            })
            .expect("every node's mesh answers");
            peer.unwrap_or_default()
        })
        .collect();
    wait_until(Duration::from_secs(120), || {
        api(&cluster.nodes[0], Request::FleetStatus).is_ok_and(|s| s["rollout"]["members"] == N)
    })
    .expect("every member reports");

    // One fleet apply, all five at once.
    let at_once = json!({"canary": 0, "max_parallel": N, "min_healthy_time": "0s"});
    let mut a = workload("a");
    a["rollout"] = at_once.clone();
    let from = fleet_apply(&cluster, 1, json!({"a": a}));
    let fleet = everywhere(&cluster, "xnode-a.service", from);

    // Five pushes, one after another, each waited for.
    let from = monotonic_us();
    for (i, peer) in peers.iter().enumerate() {
        let mut spec: Value =
            serde_json::from_slice(&Cluster::spec(N, i, &cluster.net, &json!({}))).unwrap();
        spec["workloads"]["b"] = workload("b");
        let signed = push::sign(&owner(), peer, 1000, now(), spec);
        let answer = api(
            &cluster.nodes[0],
            Request::MeshPush {
                push: serde_json::to_value(signed).unwrap(),
            },
        )
        .unwrap();
        let generation: u64 = answer
            .as_str()
            .and_then(|a| a.rsplit_once("as generation "))
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap();
        wait_until(Duration::from_secs(120), || {
            api(&cluster.nodes[i], Request::Status).is_ok_and(|s| {
                s["generation"]["number"] == generation
                    && s["generation"]["outcome"]["state"] == "healthy"
            })
        })
        .expect("the push is applied");
    }
    let pushes = everywhere(&cluster, "xnode-b.service", from);

    // New definitions of `a`, rolled out one, then two, at a time.
    let mut rollouts = Vec::new();
    for (generation, max_parallel) in [(2, 1), (3, 2)] {
        let mut a = workload(&format!("a{generation}"));
        a["rollout"] = json!({"canary": 1, "max_parallel": max_parallel, "min_healthy_time": "2s"});
        let from = fleet_apply(&cluster, generation, json!({"a": a}));
        rollouts.push((max_parallel, everywhere(&cluster, "xnode-a.service", from)));
    }

    println!("deploying to a fleet of {N} nodes (lab, xnoded under systemd)");
    println!(
        "  add a workload to all {N}: fleet apply {fleet:.2} s   {N} sequential mesh pushes {pushes:.2} s   ({:.1}x faster)",
        pushes / fleet
    );
    for (max_parallel, took) in rollouts {
        println!(
            "  roll out a new definition, canary 1, max_parallel {max_parallel}, min_healthy_time 2s: {took:.2} s"
        );
    }
}
