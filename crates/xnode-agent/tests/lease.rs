//! Fencing that does not depend on the agent: three real nodes (xnoded under systemd,
//! each in its own container and network namespace) run a singleton. Its node's
//! xnoded is frozen, then killed, and a node is cut off in the middle of an apply; the
//! lease that systemd enforces stops the singleton there before another node starts
//! it. The journals, on the monotonic clock every container shares, never show it on
//! two nodes at once; and systemd skips a start of it where it is not placed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use xnode_api::Request;
use xnode_lab::cluster::wait_until as wait;
use xnode_lab::node::api;
use xnode_lab::runs::{first_overlap, runs};
use xnode_lab::{Cluster, Network};

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const SOLO: &str = "xnode-solo.service";
const N: usize = 3;
/// Long enough for any failover on a loaded machine.
const FAILOVER: Duration = Duration::from_secs(30);
/// Boot, joining, the hold-down and handovers.
const SETTLE: Duration = Duration::from_secs(60);

fn solo() -> serde_json::Value {
    json!({"command": ["/bin/sleep", "infinity"], "placement": {"mesh": {}}})
}

fn spec(i: usize, net: &Network) -> Vec<u8> {
    Cluster::spec(N, i, net, &json!({"solo": solo()}))
}

fn boot() -> Cluster {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = Cluster::boot(bin.parent().unwrap(), N, FLAGS, spec).unwrap();
    settle("the mesh settles", &cluster);
    cluster
}

fn settle(what: &str, cluster: &Cluster) {
    let all: Vec<usize> = (0..N).collect();
    if let Err(e) = cluster.wait_settled(&all, &["solo"], SETTLE) {
        panic!("{what}: {e}");
    }
}

/// Waits for `done`; says what every node saw when it never comes.
fn wait_until(cluster: &Cluster, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    if wait(timeout, done).is_ok() {
        return;
    }
    let seen: Vec<String> = (0..N)
        .map(|i| {
            let journal = cluster.nodes[i]
                .sh("journalctl -u xnoded -u xnoded-lease -u xnode-solo --no-pager -o short-monotonic | tail -n 40")
                .unwrap_or_default();
            format!("n{i}: {}\n{journal}", cluster.placement(i))
        })
        .collect();
    panic!("{what}: not after {timeout:?}\n{}", seen.join("\n"));
}

fn only(list: Vec<usize>) -> usize {
    assert_eq!(list.len(), 1, "{list:?}");
    list[0]
}

fn assert_never_twice(cluster: &Cluster) {
    let solo = cluster.runs(SOLO).unwrap();
    assert_eq!(
        first_overlap(&solo, 1),
        None,
        "the singleton ran twice: {solo:?}"
    );
}

/// When node `i`'s singleton last stopped, in µs of the monotonic clock.
fn stopped_at(cluster: &Cluster, i: usize) -> u64 {
    runs(&cluster.nodes[i], SOLO)
        .unwrap()
        .last()
        .and_then(|r| r.to_us)
        .expect("it stopped")
}

/// When the singleton started on a node other than `not`, after `after`.
/// Waits until a node other than `lost` runs the singleton, and checks it stopped on
/// `lost` before that; `what` happened to `lost` at `at` (µs, monotonic).
fn taken_over(cluster: &Cluster, lost: usize, at: u64, what: &str) {
    wait_until(cluster, "another node runs it", FAILOVER, || {
        cluster.running(SOLO).iter().any(|i| *i != lost)
    });
    assert!(!cluster.active(SOLO)[lost], "{what}: still runs there");
    let (stop, start) = (
        stopped_at(cluster, lost),
        started_elsewhere(cluster, lost, at),
    );
    eprintln!(
        "{what}: stopped {} ms after, started elsewhere {} ms after",
        (stop - at) / 1000,
        (start - at) / 1000
    );
    assert!(stop < start, "{what}: started elsewhere before it stopped");
}

fn started_elsewhere(cluster: &Cluster, not: usize, after: u64) -> u64 {
    (0..N)
        .filter(|i| *i != not)
        .flat_map(|i| runs(&cluster.nodes[i], SOLO).unwrap())
        .map(|r| r.from_us)
        .filter(|t| *t > after)
        .min()
        .expect("it started elsewhere")
}

#[test]
fn a_frozen_then_killed_agent_loses_its_singleton_to_the_lease_before_anyone_takes_it() {
    let cluster = boot();

    // Frozen for 15 s: its units keep running unless the lease stops them.
    let frozen = only(cluster.running(SOLO));
    let at = cluster.signal_agent(frozen, "STOP").unwrap();
    taken_over(&cluster, frozen, at, "frozen, by the lease");
    let lease_log = cluster.nodes[frozen]
        .sh("journalctl -u xnoded-lease.service --no-pager -o cat")
        .unwrap();
    // The relay ends it; systemd's watchdog is the backstop.
    assert!(
        lease_log.contains("the lease ran out") || lease_log.contains("Watchdog timeout"),
        "{lease_log}"
    );
    std::thread::sleep(
        Duration::from_secs(15).saturating_sub(Duration::from_micros(
            xnode_lab::cluster::monotonic_us() - at,
        )),
    );
    cluster.signal_agent(frozen, "CONT").unwrap();
    settle("thawed, the three settle", &cluster);

    // Killed with its singleton running: systemd starts xnoded again; meanwhile the
    // lease runs out and stops what it ran.
    let killed = only(cluster.running(SOLO));
    let at = cluster.signal_agent(killed, "KILL").unwrap();
    taken_over(&cluster, killed, at, "killed, by the lease");
    settle("restarted, the three settle", &cluster);
    only(cluster.running(SOLO));
    assert_never_twice(&cluster);
}

#[test]
fn a_node_cut_off_in_the_middle_of_an_apply_stops_its_singleton_before_the_others_start_it() {
    let cluster = boot();
    let owner = only(cluster.running(SOLO));
    // systemd itself skips a start where placement did not put the singleton, even
    // one by hand: its unit starts only while the agent's placement mark is there.
    let other = (owner + 1) % N;
    cluster.nodes[other]
        .sh(&format!("systemctl start {SOLO}"))
        .unwrap();
    let condition = cluster.nodes[other]
        .sh(&format!("systemctl show -P ConditionResult {SOLO}"))
        .unwrap();
    assert_eq!(condition.trim(), "no", "started though not placed there");
    assert_eq!(cluster.running(SOLO), [owner]);
    // An apply on the owner that waits in its health gate: nothing listens on port 1.
    let gated = json!({
        "solo": solo(),
        "slow": {"command": ["/bin/sleep", "infinity"], "health": {"timeout": "25s", "tcp": {"port": 1}}}
    });
    let spec: serde_json::Value =
        serde_json::from_slice(&Cluster::spec(N, owner, &cluster.net, &gated)).unwrap();
    let socket = cluster.nodes[owner].path("/run/xnode/api.sock");
    let applying = std::thread::spawn(move || -> Result<serde_json::Value, _> {
        xnode_api::call(
            &socket,
            Request::Apply {
                spec,
                no_rollback: false,
            },
            Duration::from_secs(120),
        )
    });
    let gating = |s: &serde_json::Value| s["applying"]["phase"] == "gating";
    xnode_lab::node::wait_status(&cluster.nodes[owner], "the gate", SETTLE, gating)
        .unwrap_or_else(|e| panic!("{e}"));

    let at = xnode_lab::cluster::monotonic_us();
    cluster.net.cut(owner).unwrap();
    taken_over(&cluster, owner, at, "cut off while it applies");
    let status = api(&cluster.nodes[owner], Request::Status).unwrap();
    assert!(gating(&status), "the apply still waits: {status:#}");
    assert_eq!(status["mesh"]["placement"]["quorate"], false, "{status:#}");

    cluster.net.heal(owner).unwrap();
    let result = applying.join().unwrap().unwrap();
    assert_eq!(result["outcome"]["state"], "rolled_back", "{result:#}");
    settle("healed, the three settle", &cluster);
    only(cluster.running(SOLO));
    assert_never_twice(&cluster);
}
