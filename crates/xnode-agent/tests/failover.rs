//! Mesh workloads fail over by themselves: five real nodes (xnoded under systemd, each
//! in its own container and network namespace) run a singleton and a workload of three
//! replicas. The owner dies, comes back after the hold-down, a replica's node dies, and
//! the singleton's node is partitioned away and healed; through all of it the journals
//! show the singleton never ran on two nodes at once, nor the other on more than three.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::cluster::wait_until as wait;
use xnode_lab::node::api;
use xnode_lab::runs::first_overlap;
use xnode_lab::{Cluster, Network};

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const SOLO: &str = "xnode-solo.service";
const TRIO: &str = "xnode-trio.service";
const N: usize = 5;
/// Long enough for any failover on a loaded machine; the benchmark measures how long
/// one takes.
const FAILOVER: Duration = Duration::from_secs(20);
/// Boot, joining, the hold-down and handovers.
const SETTLE: Duration = Duration::from_secs(40);

fn spec(i: usize, net: &Network) -> Vec<u8> {
    let workloads = json!({
        "solo": {"command": ["/bin/sleep", "infinity"], "placement": {"mesh": {}}},
        "trio": {"command": ["/bin/sleep", "infinity"], "placement": {"mesh": {"replicas": 3}}}
    });
    Cluster::spec(N, i, net, &workloads)
}

fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) -> Duration {
    wait(timeout, done).unwrap_or_else(|_| panic!("{what}: not after {timeout:?}"))
}

fn wait_settled(what: &str, cluster: &Cluster, live: &[usize]) {
    if let Err(e) = cluster.wait_settled(live, &["solo", "trio"], SETTLE) {
        panic!("{what}: {e}");
    }
}

fn owners(status: &Value, workload: &str) -> Value {
    status["mesh"]["placement"]["workloads"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == workload))
        .map_or(Value::Null, |w| w["owners"].clone())
}

fn assert_never_overlapped(cluster: &Cluster) {
    let solo = cluster.runs(SOLO).unwrap();
    assert_eq!(
        first_overlap(&solo, 1),
        None,
        "the singleton ran twice: {solo:?}"
    );
    let trio = cluster.runs(TRIO).unwrap();
    assert_eq!(
        first_overlap(&trio, 3),
        None,
        "more than three replicas: {trio:?}"
    );
}

fn only(list: Vec<usize>) -> usize {
    assert_eq!(list.len(), 1, "{list:?}");
    list[0]
}

#[test]
fn mesh_workloads_fail_over_and_never_run_twice() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = Cluster::boot(bin.parent().unwrap(), N, FLAGS, spec).unwrap();
    let all: Vec<usize> = (0..N).collect();
    wait_settled("the mesh settles", &cluster, &all);
    assert_eq!(cluster.running(TRIO).len(), 3);

    // The singleton's node dies: exactly one other node takes it over.
    let owner = only(cluster.running(SOLO));
    let trio_there = cluster.running(TRIO).contains(&owner);
    cluster.kill(owner, &[SOLO, TRIO]).unwrap();
    let took = wait_until("the singleton fails over", FAILOVER, || {
        cluster.running(SOLO).len() == 1
    });
    let heir = only(cluster.running(SOLO));
    assert_ne!(heir, owner);
    eprintln!("failover of solo from n{owner} to n{heir} seen after {took:?}");
    if trio_there {
        wait_until("the replicas fail over", FAILOVER, || {
            cluster.running(TRIO).len() == 3
        });
    }
    let live: Vec<usize> = all.iter().copied().filter(|i| *i != owner).collect();
    wait_settled("the four settle", &cluster, &live);
    let status = api(&cluster.nodes[heir], Request::Status).unwrap();
    assert_eq!(
        owners(&status, "solo"),
        json!([format!("n{heir}")]),
        "{status:#}"
    );

    // It comes back: nothing starts there before the hold-down, then placement settles
    // with exactly one singleton and three replicas.
    let back = cluster.restart(owner).unwrap();
    wait_settled("the node rejoins and settles", &cluster, &all);
    let hold_down_us = xnode_mesh::placement::HOLD_DOWN.as_micros() as u64;
    for unit in [SOLO, TRIO] {
        for run in xnode_lab::runs::runs(&cluster.nodes[owner], unit).unwrap() {
            if run.from_us > back {
                assert!(
                    run.from_us - back >= hold_down_us,
                    "{unit} started {} ms after the agent came back, inside the hold-down",
                    (run.from_us - back) / 1000
                );
            }
        }
    }

    // A node running replicas dies: three run again.
    let replicas = cluster.running(TRIO);
    let solo_now = only(cluster.running(SOLO));
    let victim = *replicas
        .iter()
        .find(|i| **i != solo_now)
        .unwrap_or(&replicas[0]);
    cluster.kill(victim, &[SOLO, TRIO]).unwrap();
    wait_until("three replicas again", FAILOVER, || {
        let r = cluster.running(TRIO);
        r.len() == 3 && !r.contains(&victim)
    });
    wait_until("one singleton", FAILOVER, || {
        cluster.running(SOLO).len() == 1
    });
    cluster.restart(victim).unwrap();
    wait_settled("all five settle", &cluster, &all);

    // The singleton's node is cut off: it fences itself and stops the singleton; the
    // majority runs exactly one copy. Healed, it is still exactly one.
    let cut = only(cluster.running(SOLO));
    cluster.net.cut(cut).unwrap();
    wait_until("the cut-off node fences itself", FAILOVER, || {
        cluster.placement(cut)["quorate"] == false && !cluster.active(SOLO)[cut]
    });
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != cut).collect();
    wait_until("the majority runs one singleton", FAILOVER, || {
        cluster.running(SOLO).len() == 1
    });
    assert_ne!(only(cluster.running(SOLO)), cut);
    wait_settled("the majority settles", &cluster, &rest);
    cluster.net.heal(cut).unwrap();
    wait_settled("healed, all five settle", &cluster, &all);
    only(cluster.running(SOLO));

    assert_never_overlapped(&cluster);
    let status = api(&cluster.nodes[heir], Request::Status).unwrap();
    assert_eq!(status["mesh"]["placement"]["voters"], N, "{status:#}");
    // The heir counted and timed its failover.
    let log = cluster.nodes[heir]
        .sh("journalctl -u xnoded.service --no-pager -o cat")
        .unwrap();
    assert!(log.contains("failover: solo runs here"), "{log}");
}
