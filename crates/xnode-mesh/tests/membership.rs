//! The mesh as real processes on 127.0.0.1: twenty nodes joining through one, one of
//! them killed with SIGKILL and brought back, and a service found from every node.
//! Deadlines here are generous bounds against hanging, not speed targets (the
//! benchmark measures speed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

mod cluster;

use std::time::Duration;

use cluster::{Cluster, in_state};

const NODES: usize = 20;

#[test]
fn twenty_nodes_join_through_one_and_see_a_kill_and_a_return() {
    let mut c = Cluster::new("twenty");
    for i in 0..NODES {
        c.start(&format!("n{i:02}"), &[]);
    }
    let everyone: Vec<(String, String)> = c
        .nodes
        .values()
        .map(|p| (p.name.clone(), p.peer_id.clone()))
        .collect();
    let others = |me: &str| -> std::collections::BTreeSet<String> {
        everyone
            .iter()
            .filter(|(n, _)| n != me)
            .map(|(_, p)| p.clone())
            .collect()
    };
    c.wait_all("full membership", Duration::from_secs(60), |me, m| {
        in_state(m, "alive") == others(me)
    });
    // Members carry what they said about themselves.
    let view = c.nodes.get_mut("n00").unwrap().request("members");
    let n05 = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == "n05")
        .unwrap()
        .clone();
    assert!(n05["resources"]["cpus"].as_u64().unwrap() >= 1, "{n05}");
    assert!(n05["resources"]["memory"].as_u64().unwrap() > 0, "{n05}");
    assert!(
        n05["addresses"][0]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/"),
        "{n05}"
    );

    // kill -9: every other node marks it dead.
    let victim = c.nodes["n07"].peer_id.clone();
    c.kill("n07");
    c.wait_all(
        "the victim dead everywhere",
        Duration::from_secs(30),
        |_, m| in_state(m, "dead").contains(&victim),
    );
    // Restarted with its state dir: the same peer id, taken back by everyone.
    let back = c.start("n07", &[]).peer_id.clone();
    assert_eq!(back, victim, "the identity persists in the state dir");
    c.wait_all(
        "the victim back everywhere",
        Duration::from_secs(30),
        |me, m| in_state(m, "alive") == others(me),
    );
}

#[test]
fn a_service_resolves_from_every_node_and_stops_when_its_node_dies() {
    let mut c = Cluster::new("services");
    c.start("boot", &[]);
    c.start("web1", &["--service", "web:8080", "--label", "zone=a"]);
    for i in 0..4 {
        c.start(&format!("m{i}"), &[]);
    }
    let web1 = c.nodes["web1"].peer_id.clone();
    let names: Vec<String> = c.nodes.keys().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for name in &names {
        loop {
            let answer = c.nodes.get_mut(name).unwrap().request("providers web");
            let providers = answer["providers"].as_array().unwrap();
            if providers.len() == 1 {
                assert_eq!(providers[0]["peer_id"], web1.as_str());
                assert_eq!(providers[0]["node"], "web1");
                assert_eq!(providers[0]["port"], 8080);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never found web: {answer}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let none = c.nodes.get_mut(name).unwrap().request("providers nosuch");
        assert_eq!(none["providers"].as_array().unwrap().len(), 0);
    }
    c.kill("web1");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for name in names.iter().filter(|n| *n != "web1") {
        loop {
            let answer = c.nodes.get_mut(name).unwrap().request("providers web");
            if answer["providers"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} still answers web: {answer}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A bootstrap address may name its peer (`…/p2p/ID`, as the spec allows): it is dialed
/// all the same (a node dials no peer id it does not know, but this one the operator
/// gave), and the fleet forms through it.
#[test]
fn a_bootstrap_address_that_names_its_peer_is_dialed() {
    let mut c = Cluster::new("p2p");
    c.start("boot", &[]);
    let boot = format!("{}/p2p/{}", c.nodes["boot"].listen, c.nodes["boot"].peer_id);
    c.start("a", &["--bootstrap", &boot]);
    c.start("b", &["--bootstrap", &boot]);
    c.wait_all("the three", Duration::from_secs(30), |_, m| {
        in_state(m, "alive").len() == 2
    });
}

#[test]
fn a_node_left_alone_rejoins_when_its_bootstrap_peer_returns() {
    let mut c = Cluster::new("rejoin");
    c.start("boot", &[]);
    c.start("lone", &[]);
    let boot = c.nodes["boot"].peer_id.clone();
    c.wait_all("the pair", Duration::from_secs(30), |_, m| {
        in_state(m, "alive").len() == 1
    });
    c.kill("boot");
    c.wait_all("alone", Duration::from_secs(30), |_, m| {
        in_state(m, "dead").contains(&boot)
    });
    // Only the bootstrap address links them: the lone node must dial it again itself.
    c.start("boot", &[]);
    c.wait_all("together again", Duration::from_secs(60), |_, m| {
        in_state(m, "alive").len() == 1
    });
}

#[test]
fn one_listen_address_that_works_is_enough_and_none_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("xnode-mesh-listen-{}", std::process::id()));
    let run = |listens: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xnode-meshd"));
        cmd.arg("--state-dir").arg(&dir).args(["--name", "n1"]);
        for l in listens {
            cmd.args(["--listen", l]);
        }
        // Standard input closed and no peers: it would run on; a second is plenty to
        // see it ready or failed.
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let _ = child.kill();
        child.wait_with_output().unwrap()
    };
    // 10.213.0.0/16 is on no interface here: it cannot be bound.
    let out = run(&["/ip4/10.213.99.99/tcp/0", "/ip4/127.0.0.1/tcp/0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"kind\":\"ready\""), "{stdout}");
    let out = run(&["/ip4/10.213.99.99/tcp/0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on /ip4/10.213.99.99/tcp/0"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
