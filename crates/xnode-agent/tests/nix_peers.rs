//! Store paths from the fleet: three real nodes (xnoded under systemd, each in its own
//! container, network namespace and Nix store), whose Nix has no substituter but its
//! node's local binary cache. A closure of several paths, signed with the fleet's key,
//! reaches a node that had none of it; a member serving corrupt NARs, unsigned paths,
//! paths signed by an untrusted key and a stranger's question are all refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use xnode_lab::node::{journal, wait_status, write_spec};
use xnode_lab::{Cluster, Container, Network, nix};

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const N: usize = 3;
const HOLDER: usize = 0;
const LIAR: usize = 1;
const FETCHER: usize = 2;
/// Boot, joining and a few realise attempts on a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

/// A closure of three paths: a program that references a built path that references a
/// text file. The same on every node (the builds are deterministic).
const CLOSURE: &str = r#"
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
  leaf = builtins.toFile "leaf" "the closure's leaf\n";
  mid = mk "mid" "echo ${leaf} > $out";
in
mk "app-WHICH" "/bin/mkdir $out; echo ${mid} > $out/mid; printf '#!/bin/sh\\nexec /bin/sleep infinity\\n' > $out/run; /bin/chmod 755 $out/run"
"#;

fn spec(i: usize, net: &Network, workloads: &Value) -> Vec<u8> {
    Cluster::spec(N, i, net, workloads)
}

/// Builds the closure named `which` in `c`'s store; its top path.
fn build(c: &Container, which: &str) -> String {
    nix::build(c, &CLOSURE.replace("WHICH", which)).unwrap()
}

fn workload(path: &str) -> Value {
    json!({"command": [format!("{path}/run")], "store_paths": [path]})
}

fn workload_status(status: &Value, name: &str) -> Value {
    status["workloads"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

fn peer_id(c: &Container) -> String {
    let s = wait_status(c, "a peer id", WAIT, |s| s["mesh"]["peer_id"].is_string()).unwrap();
    s["mesh"]["peer_id"].as_str().unwrap().to_owned()
}

/// A stranger (xnode-meshd in no fleet, beside the fetcher) asks `peer` for `hash`'s
/// narinfo; its answer.
fn strangers_answer(c: &Container, net: &Network, peer: &str, hash: &str) -> Value {
    let meshd = PathBuf::from(env!("CARGO_BIN_EXE_xnoded")).with_file_name("xnode-meshd");
    assert!(
        meshd.exists(),
        "{} is missing: build it with cargo build -p xnode-mesh",
        meshd.display()
    );
    let script = format!(
        "(sleep 3; echo 'narinfo {peer} {hash}'; sleep 10) | timeout 30 /opt/xnode/xnode-meshd \
           --state-dir /tmp/stranger --name stranger --listen /ip4/{}/tcp/7799 --bootstrap {}",
        net.address(FETCHER),
        Cluster::mesh_address(net, HOLDER)
    );
    let out = c.exec(&["/bin/sh", "-c", &script]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "narinfo")
        .unwrap_or_else(|| panic!("no answer from xnode-meshd: {stdout}"))
}

#[test]
fn a_signed_closure_comes_from_a_member_and_nothing_false_gets_in() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let bin_dir: &Path = bin.parent().unwrap();
    let cluster = Cluster::boot_each(
        bin_dir,
        N,
        |i| {
            let liar = if i == LIAR { " --nix-corrupt-nars" } else { "" };
            format!(
                "{FLAGS} {}{liar} {}",
                nix::CACHE_FLAG,
                xnode_lab::fleet::JOIN_FLAG
            )
        },
        |i, net| spec(i, net, &json!({})),
    )
    .unwrap();
    let [holder, liar, fetcher] = [HOLDER, LIAR, FETCHER].map(|i| &cluster.nodes[i]);

    // The fleet's signing key, made on the holder; every node trusts its public half
    // and nothing else, and substitutes only from its local cache.
    let (secret, public) = nix::signing_key(holder, "fleet").unwrap();
    for c in &cluster.nodes {
        nix::join_fleet_store(c, &secret, &public).unwrap();
    }

    // Only the liar holds the closure at first, signed as the fleet's.
    let app = build(liar, "a");
    nix::sign(liar, "/tmp/fleet.sk", &app).unwrap();
    assert!(
        fetcher
            .sh(&format!("nix-store --check-validity {app}"))
            .is_err()
    );
    cluster.wait_alive(WAIT).unwrap();

    // The fetcher asks for it: the liar's NAR is not the path's, and Nix refuses it.
    write_spec(
        fetcher,
        &spec(FETCHER, &cluster.net, &json!({"app": workload(&app)})),
    )
    .unwrap();
    let s = wait_status(fetcher, "app held back", WAIT, |s| {
        workload_status(s, "app")["error"].is_string()
    })
    .unwrap();
    let app_status = workload_status(&s, "app");
    eprintln!("with only the liar: {app_status:#}");
    assert_eq!(app_status["active_state"], "absent", "{app_status:#}");
    assert!(
        app_status["error"]
            .as_str()
            .unwrap()
            .contains("hash mismatch"),
        "Nix refused the false NAR: {app_status:#}\n{}",
        journal(fetcher)
    );
    assert!(
        journal(fetcher).contains(&format!("{} served a NAR of", peer_id(liar))),
        "the cache saw the lie"
    );

    // The holder builds and signs the same closure: the fetcher, trying again, has it
    // from there, and Nix finds every path of it sound.
    let same = build(holder, "a");
    assert_eq!(same, app, "the build is deterministic");
    nix::sign(holder, "/tmp/fleet.sk", &app).unwrap();
    let s = wait_status(fetcher, "app running", WAIT, |s| {
        workload_status(s, "app")["active_state"] == "active"
    })
    .unwrap();
    assert!(workload_status(&s, "app")["error"].is_null());
    let closure = fetcher.sh(&format!("nix-store -qR {app}")).unwrap();
    assert_eq!(closure.lines().count(), 3, "{closure}");
    fetcher
        .sh(&format!(
            "nix-store -qR {app} | xargs nix-store --verify-path"
        ))
        .unwrap();
    let holder_id = peer_id(holder);
    let fetched_from_holder = journal(fetcher)
        .lines()
        .any(|l| l.contains("fetching the NAR of") && l.ends_with(&format!("from {holder_id}")));
    assert!(fetched_from_holder, "{}", journal(fetcher));

    // An unsigned closure, and one signed by a key no node trusts, stay out.
    let unsigned = build(holder, "unsigned");
    let untrusted = build(holder, "untrusted");
    nix::signing_key(holder, "other").unwrap();
    nix::sign(holder, "/tmp/other.sk", &untrusted).unwrap();
    write_spec(
        fetcher,
        &spec(
            FETCHER,
            &cluster.net,
            &json!({"app": workload(&app), "unsigned": workload(&unsigned), "untrusted": workload(&untrusted)}),
        ),
    )
    .unwrap();
    let s = wait_status(fetcher, "both held back", WAIT, |s| {
        ["unsigned", "untrusted"]
            .iter()
            .all(|w| workload_status(s, w)["error"].is_string())
    })
    .unwrap();
    for name in ["unsigned", "untrusted"] {
        let w = workload_status(&s, name);
        eprintln!("{name}: {w:#}");
        assert_eq!(w["active_state"], "absent", "{w:#}");
        // No member serves a path no key it trusts signed, so no Nix is offered it.
        assert!(
            w["error"]
                .as_str()
                .unwrap()
                .contains("don't know how to build these paths"),
            "{w:#}"
        );
    }
    for path in [&unsigned, &untrusted] {
        assert!(
            fetcher
                .sh(&format!("nix-store --check-validity {path}"))
                .is_err(),
            "{path} got in"
        );
    }
    assert_eq!(workload_status(&s, "app")["active_state"], "active");
    // It was the signature: once the owner signs the first, it comes.
    nix::sign(holder, "/tmp/fleet.sk", &unsigned).unwrap();
    wait_status(fetcher, "the path signed at last running", WAIT, |s| {
        workload_status(s, "unsigned")["active_state"] == "active"
    })
    .unwrap();

    // A stranger's question is refused.
    let hash = &app["/nix/store/".len()..][..32];
    let answer = strangers_answer(fetcher, &cluster.net, &holder_id, hash);
    assert_eq!(answer["answer"]["Ok"]["answer"], "refused", "{answer:#}");
    assert!(
        answer["answer"]["Ok"]["reason"]
            .as_str()
            .unwrap()
            .contains("fleet members"),
        "{answer:#}"
    );
}

/// How many NARs `c`'s local cache has fetched.
fn fetches(c: &Container) -> usize {
    journal(c).matches("fetching the NAR of").count()
}

#[test]
fn a_standby_holds_the_closure_before_the_owner_dies_and_takes_over_with_no_download() {
    const NODES: usize = 4;
    const UNIT: &str = "xnode-solo.service";
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = nix::builder_and_workers(bin.parent().unwrap(), NODES, FLAGS).unwrap();
    // The builder holds the closure; it serves it but runs nothing (its label).
    let builder = &cluster.nodes[0];
    let app = build(builder, "solo");
    nix::run_signed_singleton(&cluster, &app, WAIT).unwrap();

    // It runs on one worker; another, the next in rank, has fetched its closure too.
    let workers: Vec<usize> = (1..NODES).collect();
    xnode_lab::cluster::wait_until(WAIT, || {
        cluster.running(UNIT).len() == 1 && nix::holders(&cluster, "solo").len() >= 2
    })
    .unwrap_or_else(|_| panic!("never one owner and a standby holding the closure"));
    // A few heartbeats, so every member knows who holds it.
    std::thread::sleep(Duration::from_secs(3));
    let owner = cluster.running(UNIT)[0];
    let before: Vec<usize> = cluster.nodes.iter().map(fetches).collect();

    // The owner dies: a worker that fetched ahead takes over, and fetches nothing.
    cluster.kill(owner, &[UNIT]).unwrap();
    xnode_lab::cluster::wait_until(WAIT, || cluster.running(UNIT).iter().any(|i| *i != owner))
        .unwrap_or_else(|_| panic!("no failover from n{owner}"));
    let heir = *cluster.running(UNIT).iter().find(|i| **i != owner).unwrap();
    eprintln!("n{owner} -> n{heir}; NARs fetched before the loss: {before:?}");
    assert!(
        before[heir] > 0,
        "n{heir} fetched the closure ahead:\n{}",
        journal(&cluster.nodes[heir])
    );
    assert_eq!(
        fetches(&cluster.nodes[heir]),
        before[heir],
        "n{heir} downloaded nothing to take over:\n{}",
        workers
            .iter()
            .map(|i| format!("n{i}:\n{}", journal(&cluster.nodes[*i])))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
