//! Two fleets in one mesh: six real nodes (xnoded under systemd, each in its own
//! container and network namespace) on one network, all joining through each other.
//! Three are the lab owner's fleet, two are another owner's, and one names the lab
//! owner but holds only the other owner's join key. Both fleets run the same singleton
//! definition; each runs its own copy, and the claimer runs none. Then the second fleet
//! and the claimer die at once: the first fleet's singleton keeps running, untouched,
//! on the same node. Last, the owner revokes that node, and the singleton moves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::cluster::wait_until;
use xnode_lab::fleet::{JOIN_KEY_PATH, SECOND_JOIN_KEY_PATH, owner, second_owner};
use xnode_lab::node::api;
use xnode_lab::runs::first_overlap;
use xnode_lab::{Cluster, Network};

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const SOLO: &str = "xnode-solo.service";
const N: usize = 6;
const FIRST: [usize; 3] = [0, 1, 2];
const SECOND: [usize; 2] = [3, 4];
const CLAIMER: usize = 5;
/// Boot, joining, the hold-down and handovers.
const SETTLE: Duration = Duration::from_secs(60);

fn spec(i: usize, net: &Network) -> Vec<u8> {
    let fleet_owner = if SECOND.contains(&i) {
        second_owner()
    } else {
        owner()
    };
    let workloads =
        json!({"solo": {"command": ["/bin/sleep", "infinity"], "placement": {"mesh": {}}}});
    Cluster::spec_of(N, i, net, &fleet_owner, &workloads)
}

fn flags(i: usize) -> String {
    let key = if FIRST.contains(&i) {
        JOIN_KEY_PATH
    } else {
        SECOND_JOIN_KEY_PATH
    };
    format!("{FLAGS} --join-key {key}")
}

fn status(cluster: &Cluster, i: usize) -> Value {
    api(&cluster.nodes[i], Request::Status).unwrap_or(Value::Null)
}

/// The one owner of `solo` that every node of `fleet` agrees on, once they are all
/// quorate with `fleet.len()` voters and past the hold-down.
fn agreed_owner(cluster: &Cluster, fleet: &[usize]) -> Option<String> {
    let mut owner = None;
    for i in fleet {
        let p = status(cluster, *i)["mesh"]["placement"].clone();
        let settled = p["quorate"] == true
            && p["voters"] == fleet.len()
            && p["settled_secs"].as_f64().unwrap_or(0.0)
                >= p["hold_down_secs"].as_f64().unwrap_or(f64::MAX);
        let owners = p["workloads"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == "solo"))
            .map(|w| w["owners"].clone())?;
        let [one] = owners.as_array()?.as_slice() else {
            return None;
        };
        if !settled || owner.get_or_insert(one.clone()) != one {
            return None;
        }
    }
    owner.and_then(|o| o.as_str().map(str::to_owned))
}

fn index(name: &str) -> usize {
    name.trim_start_matches('n').parse().unwrap()
}

#[test]
fn two_fleets_in_one_mesh_run_their_own_copies_and_never_touch_each_other() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = Cluster::boot_each(bin.parent().unwrap(), N, flags, spec).unwrap();
    let mut owners = (None, None);
    let settled = wait_until(SETTLE, || {
        owners = (
            agreed_owner(&cluster, &FIRST),
            agreed_owner(&cluster, &SECOND),
        );
        let (Some(a), Some(b)) = &owners else {
            return false;
        };
        let mut expected = vec![index(a), index(b)];
        expected.sort();
        cluster.running(SOLO) == expected
    });
    let (first, second) = owners.clone();
    assert!(
        settled.is_ok(),
        "the fleets did not settle: owners {owners:?}, solo runs on {:?}",
        cluster.running(SOLO)
    );
    let (first, second) = (index(&first.unwrap()), index(&second.unwrap()));
    assert!(FIRST.contains(&first) && SECOND.contains(&second));

    // The claimer is no member: it runs nothing, is fenced, and says why.
    let claimer = status(&cluster, CLAIMER);
    assert_eq!(
        claimer["mesh"]["fleet"]["standing"]["state"], "outside",
        "{claimer:#}"
    );
    assert_eq!(
        claimer["mesh"]["placement"]["quorate"], false,
        "{claimer:#}"
    );
    // Each fleet sees its own members only.
    let members = |i: usize| -> Vec<String> {
        let mut m: Vec<String> = status(&cluster, i)["mesh"]["fleet"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["node"].as_str().unwrap().to_owned())
            .collect();
        m.sort();
        m
    };
    assert_eq!(members(0), ["n0", "n1", "n2"]);
    assert_eq!(members(3), ["n3", "n4"]);

    // The second fleet and the claimer die at once.
    let runs_before = cluster.runs(SOLO).unwrap()[first].len();
    for i in [SECOND[0], SECOND[1], CLAIMER] {
        cluster.kill(i, &[SOLO]).unwrap();
    }
    // Longer than any takeover or fencing would take to show.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        cluster.running(SOLO),
        [first],
        "the first fleet's singleton moved"
    );
    assert_eq!(
        cluster.runs(SOLO).unwrap()[first].len(),
        runs_before,
        "the first fleet's singleton was restarted"
    );
    assert_eq!(agreed_owner(&cluster, &FIRST), Some(format!("n{first}")));
    let _ = second;

    // The owner revokes the node that runs it, through another member: the singleton
    // moves to the third within seconds, never on two nodes at once, and the revoked
    // node knows itself out.
    let witness = FIRST.into_iter().find(|i| *i != first).unwrap();
    let peer = status(&cluster, first)["mesh"]["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = owner().to_secret_string();
    let revoked = cluster.nodes[witness]
        .sh(&format!(
            "umask 077; echo '{key}' > /root/owner.key && \
             xnodectl fleet revoke --key /root/owner.key {peer}"
        ))
        .unwrap();
    assert!(revoked.contains("revoked"), "{revoked}");
    let moved = wait_until(Duration::from_secs(30), || {
        let running = cluster.running(SOLO);
        running.len() == 1 && running[0] != first
    });
    assert!(
        moved.is_ok(),
        "the singleton did not leave the revoked node: runs on {:?}",
        cluster.running(SOLO)
    );
    // The first fleet's copy (the second fleet's ran beside it, as it should).
    let all = cluster.runs(SOLO).unwrap();
    let runs: Vec<_> = FIRST.iter().map(|i| all[*i].clone()).collect();
    assert_eq!(
        first_overlap(&runs, 1),
        None,
        "the singleton ran twice: {runs:?}"
    );
    let standing = status(&cluster, first)["mesh"]["fleet"]["standing"].clone();
    assert_eq!(standing["state"], "outside", "{standing}");
    assert!(
        standing["why"].as_str().unwrap().contains("revoked"),
        "{standing}"
    );
}
