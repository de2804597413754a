//! One fleet spec for a whole fleet: five real nodes (xnoded under systemd, each in its
//! own container and network namespace) admitted with a join key. The owner applies a
//! fleet spec through one member while another is down: the four take it, the fifth
//! catches up when it returns. A new definition rolls out one member at a time; a bad
//! one halts at the canary and goes back, and no other member ever starts it. Forged,
//! replayed, older and invalid fleet specs are refused with their reasons, and a name
//! both a node spec and the fleet spec define changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::cluster::wait_until;
use xnode_lab::fleet::{owner, second_owner};
use xnode_lab::node::{api, journal};
use xnode_lab::{Cluster, Container, Network};
use xnode_spec::fleet_spec::signed::sign;
use xnode_spec::keys::OwnerKey;

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const N: usize = 5;
const WEB: &str = "xnode-web.service";
/// A node whose own spec runs a workload called `extra`.
const OWN_EXTRA: usize = 3;
/// Boot, joining, fetching and a rollout across five members on a loaded machine.
const SLOW: Duration = Duration::from_secs(120);

fn spec(i: usize, net: &Network) -> Vec<u8> {
    let workloads = if i == OWN_EXTRA {
        json!({"extra": {"command": ["/bin/sleep", "infinity"]}})
    } else {
        json!({})
    };
    Cluster::spec(N, i, net, &workloads)
}

/// A fleet spec whose `web` prints `version` and then runs (or fails, when `bad`).
fn fleet(version: &str, bad: bool, extra: bool) -> Value {
    let run = if bad {
        format!("echo web {version}; exit 1")
    } else {
        format!("echo web {version}; exec sleep infinity")
    };
    let mut workloads = json!({"web": {
        "command": ["/bin/sh", "-c", run],
        "restart": {"policy": "no"},
        "health": {"timeout": "5s"},
        "placement": {"mesh": {"replicas": N}},
        "rollout": {"canary": 1, "max_parallel": 1, "min_healthy_time": "1s"}
    }});
    if extra {
        workloads["extra"] = json!({"command": ["/bin/sleep", "infinity"],
                                    "placement": {"mesh": {"replicas": N}}});
    }
    json!({"version": 1, "workloads": workloads})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(key: &OwnerKey, generation: u64, timestamp: u64, spec: Value) -> Request {
    Request::FleetApply {
        spec: serde_json::to_value(sign(key, generation, timestamp, spec)).unwrap(),
    }
}

fn fleet_status(c: &Container) -> Value {
    api(c, Request::FleetStatus).unwrap_or(Value::Null)
}

/// The fleet generation each node runs, as its own status says; 0 while it applies
/// (a generation is recorded when its apply begins) or is not healthy.
fn running(cluster: &Cluster, nodes: &[usize]) -> Vec<u64> {
    nodes
        .iter()
        .map(|i| {
            api(&cluster.nodes[*i], Request::Status)
                .ok()
                .filter(|s| {
                    s["applying"].is_null() && s["generation"]["outcome"]["state"] == "healthy"
                })
                .map_or(0, |s| s["rollout"]["running"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Whether every node of `nodes` runs fleet generation `g`, healthy, with `web` up.
fn all_on(cluster: &Cluster, nodes: &[usize], g: u64) -> bool {
    running(cluster, nodes).iter().all(|r| *r == g) && nodes.iter().all(|i| cluster.active(WEB)[*i])
}

/// When xnoded logged a line containing `text`, in µs of the monotonic clock.
fn logged(c: &Container, text: &str) -> Vec<u64> {
    let out = c
        .exec(&[
            "journalctl",
            "-u",
            "xnoded.service",
            "-o",
            "json",
            "--no-pager",
        ])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["MESSAGE"].as_str().is_some_and(|m| m.contains(text)))
        .filter_map(|e| e["__MONOTONIC_TIMESTAMP"].as_str()?.parse().ok())
        .collect()
}

/// Which nodes' `web` ever printed `web {version}`.
fn printed(cluster: &Cluster, version: &str) -> Vec<usize> {
    (0..N)
        .filter(|i| {
            cluster.nodes[*i]
                .sh(&format!(
                    "journalctl -u {WEB} -o cat --no-pager | grep -c 'web {version}$' || true"
                ))
                .unwrap()
                .trim()
                != "0"
        })
        .collect()
}

fn wait(what: &str, cluster: &Cluster, done: impl FnMut() -> bool) {
    if wait_until(SLOW, done).is_err() {
        let journals: Vec<String> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("== n{i}\n{}", tail(&journal(c))))
            .collect();
        panic!(
            "{what}: not after {SLOW:?}\n{:#}\n{}",
            fleet_status(&cluster.nodes[0]),
            journals.join("\n")
        );
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn a_fleet_spec_reaches_every_member_and_rolls_out_one_at_a_time() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = Cluster::boot(bin.parent().unwrap(), N, FLAGS, spec).unwrap();
    let all: Vec<usize> = (0..N).collect();
    wait("every member reports to every other", &cluster, || {
        all.iter().all(|i| {
            let s = fleet_status(&cluster.nodes[*i]);
            s["rollout"]["members"] == N - 1 || s["rollout"]["members"] == N
        }) && fleet_status(&cluster.nodes[0])["members"]
            .as_array()
            .is_some_and(|m| m.iter().filter(|m| !m["report"].is_null()).count() == N)
    });

    // Generation 1 through n0 while n4 is down: the four take it.
    cluster.kill(4, &[]).unwrap();
    let four = [0, 1, 2, 3];
    let answer = api(
        &cluster.nodes[0],
        signed(&owner(), 1, now(), fleet("v1", false, false)),
    );
    assert!(
        answer
            .as_ref()
            .is_ok_and(|a| a.as_str().unwrap().contains("generation 1")),
        "{answer:?}"
    );
    wait("generation 1 on the four", &cluster, || {
        all_on(&cluster, &four, 1)
    });

    // n4 comes back and catches up from its peers.
    cluster.restart(4).unwrap();
    wait("n4 catches up", &cluster, || all_on(&cluster, &all, 1));
    let spec4 = api(&cluster.nodes[4], Request::FleetSpec).unwrap();
    assert_eq!(spec4["generation"], 1, "{spec4:#}");

    // Generation 2, a new definition: one member at a time.
    let answer = api(
        &cluster.nodes[1],
        signed(&owner(), 2, now(), fleet("v2", false, false)),
    );
    assert!(answer.is_ok(), "{answer:?}");
    wait("generation 2 everywhere", &cluster, || {
        all_on(&cluster, &all, 2)
            && all.iter().all(|i| {
                !logged(&cluster.nodes[*i], "fleet generation 2 is healthy here").is_empty()
            })
    });
    let mut moves: Vec<(u64, u64, usize)> = Vec::new();
    for i in &all {
        let start = logged(&cluster.nodes[*i], "moving to fleet generation 2");
        let end = logged(&cluster.nodes[*i], "fleet generation 2 is healthy here");
        assert_eq!((start.len(), end.len()), (1, 1), "n{i} moved once");
        moves.push((start[0], end[0], *i));
    }
    moves.sort();
    for pair in moves.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "n{} moved before n{} was healthy on generation 2: {moves:?}",
            pair[1].2,
            pair[0].2
        );
    }
    assert_eq!(printed(&cluster, "v2"), all);
    // Any member's fleet view shows every member on it, healthy.
    wait("the fleet view shows it", &cluster, || {
        let view = fleet_status(&cluster.nodes[2]);
        view["rollout"]["state"] == "done"
            && view["members"].as_array().is_some_and(|ms| {
                ms.len() == N
                    && ms
                        .iter()
                        .all(|m| m["report"]["fleet"]["running"] == 2 && m["live"] == true)
            })
    });

    // Generation 3 fails its health gate at the canary: it halts and goes back.
    let answer = api(
        &cluster.nodes[2],
        signed(&owner(), 3, now(), fleet("v3", true, false)),
    );
    assert!(answer.is_ok(), "{answer:?}");
    wait("the rollout of 3 halts", &cluster, || {
        all.iter()
            .all(|i| fleet_status(&cluster.nodes[*i])["rollout"]["state"] == "halted")
    });
    // Long enough for any member that would wrongly move to do so.
    std::thread::sleep(Duration::from_secs(8));
    wait("everyone back on 2", &cluster, || all_on(&cluster, &all, 2));
    let tried = printed(&cluster, "v3");
    assert_eq!(tried.len(), 1, "only the canary ever started it: {tried:?}");
    let moved: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !logged(&cluster.nodes[*i], "moving to fleet generation 3").is_empty())
        .collect();
    assert_eq!(moved, tried, "only the canary moved to generation 3");

    // Refused with their reasons, and nothing changes.
    let before = api(&cluster.nodes[1], Request::FleetSpec).unwrap();
    let cases = [
        (
            signed(&second_owner(), 9, now(), fleet("x", false, false)),
            "fleet of",
        ),
        (
            signed(&owner(), 3, now(), fleet("v3", true, false)),
            "not newer",
        ),
        (
            signed(&owner(), 1, now(), fleet("v1", false, false)),
            "not newer",
        ),
        (
            signed(&owner(), 9, now() - 3600, fleet("x", false, false)),
            "node's clock",
        ),
        (
            signed(
                &owner(),
                9,
                now(),
                json!({"version": 1, "workloads": {"w": {}}}),
            ),
            "not valid",
        ),
    ];
    for (request, why) in cases {
        let err = api(&cluster.nodes[1], request).unwrap_err().to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
    let mut forged = sign(&owner(), 9, now(), fleet("x", false, false));
    forged.spec["workloads"]["web"]["command"][2] = json!("echo forged; exec sleep infinity");
    let err = api(
        &cluster.nodes[1],
        Request::FleetApply {
            spec: serde_json::to_value(forged).unwrap(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("signature is not"), "{err}");
    assert_eq!(api(&cluster.nodes[1], Request::FleetSpec).unwrap(), before);

    // A node spec that defines the fleet's `web` is refused, and changes nothing.
    let mut local = serde_json::from_slice::<Value>(&spec(0, &cluster.net)).unwrap();
    local["workloads"]["web"] = json!({"command": ["/bin/sleep", "infinity"]});
    let err = api(
        &cluster.nodes[0],
        Request::Apply {
            spec: local,
            no_rollback: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("both the node spec and the fleet spec define web"),
        "{err}"
    );

    // A fleet spec that defines `extra`, which n3's own spec runs: n3 shows the
    // conflict and keeps its own copy; the others move on.
    let answer = api(
        &cluster.nodes[0],
        signed(&owner(), 4, now(), fleet("v4", false, true)),
    );
    assert!(answer.is_ok(), "{answer:?}");
    let others = [0, 1, 2, 4];
    wait("generation 4 on the others", &cluster, || {
        all_on(&cluster, &others, 4)
    });
    // n3 finds the conflict when its turn comes, which may be after the others'.
    wait("n3 shows the conflict", &cluster, || {
        api(&cluster.nodes[OWN_EXTRA], Request::Status).is_ok_and(|s| {
            s["rollout"]["conflict"]
                .as_str()
                .is_some_and(|c| c.contains("extra"))
        })
    });
    let status3 = api(&cluster.nodes[OWN_EXTRA], Request::Status).unwrap();
    assert_eq!(status3["rollout"]["running"], 2, "{status3:#}");
    assert!(cluster.active("xnode-extra.service")[OWN_EXTRA]);
    // Its owner takes `extra` out of n3's own spec: n3 moves to generation 4 by itself.
    let without =
        serde_json::from_slice::<Value>(&Cluster::spec(N, OWN_EXTRA, &cluster.net, &json!({})))
            .unwrap();
    api(
        &cluster.nodes[OWN_EXTRA],
        Request::Apply {
            spec: without,
            no_rollback: false,
        },
    )
    .unwrap();
    wait(
        "n3 on generation 4 once its conflict is gone",
        &cluster,
        || all_on(&cluster, &[OWN_EXTRA], 4) && cluster.active("xnode-extra.service")[OWN_EXTRA],
    );

    // A push answers at once; `--wait` waits for its outcome, and fails on a rollback.
    let c = &cluster.nodes[0];
    let key = owner().to_secret_string();
    let mut good = serde_json::from_slice::<Value>(&spec(1, &cluster.net)).unwrap();
    good["workloads"]["pushed"] = json!({"command": ["/bin/sleep", "infinity"]});
    let mut bad = good.clone();
    bad["workloads"]["pushed"] = json!({"command": ["/bin/false"], "restart": {"policy": "no"},
                                        "health": {"timeout": "5s"}});
    std::fs::write(c.path("/root/good.json"), good.to_string()).unwrap();
    std::fs::write(c.path("/root/bad.json"), bad.to_string()).unwrap();
    c.sh(&format!("umask 077; echo '{key}' > /root/owner.key"))
        .unwrap();
    let pushed = c
        .sh("xnodectl mesh push --wait --key /root/owner.key n1 /root/good.json")
        .unwrap();
    assert!(
        pushed.contains("accepted push generation") && pushed.contains(": healthy"),
        "{pushed}"
    );
    let rolled = c
        .sh("xnodectl mesh push --wait --key /root/owner.key n1 /root/bad.json; echo exit=$?")
        .unwrap();
    assert!(
        rolled.contains(": rolled-back") && rolled.contains("exit=1"),
        "{rolled}"
    );
    assert!(
        cluster.active("xnode-pushed.service")[1],
        "the good one is back"
    );
}
