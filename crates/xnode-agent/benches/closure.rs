//! Fetching a closure from a member against the floor: two real nodes (xnoded under
//! systemd, each in its own container, network namespace and Nix store). The holder
//! adds about 200 MB of random data to its store (four paths of 50 MiB) and signs them
//! with the fleet's key; the fetcher realises them through its local binary cache,
//! as xnoded does (through the Nix daemon). In the same run, the same paths go from the
//! holder's store to the fetcher's by `nix-store --export | nix-store --import` over a
//! local pipe: the floor. Each round deletes the paths from the fetcher first.
//!
//! `cargo bench -p xnode-agent --bench closure [-- ROUNDS]` (root; default 3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails by panicking

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use xnode_lab::{Cluster, Container, nix};

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const PATHS: usize = 4;
const MIB_EACH: usize = 50;

fn delete(c: &Container, paths: &str) {
    c.sh(&format!("nix-store --delete {paths} >/dev/null 2>&1"))
        .unwrap();
    assert!(
        c.sh(&format!("nix-store --check-validity {paths}"))
            .is_err()
    );
}

/// Seconds the fetcher's Nix takes to realise `paths` through its local cache.
fn through_the_mesh(fetcher: &Container, paths: &str) -> f64 {
    let start = Instant::now();
    fetcher
        .sh(&format!(
            "NIX_REMOTE=daemon nix-store --realise {paths} >/dev/null"
        ))
        .unwrap();
    start.elapsed().as_secs_f64()
}

/// Seconds `nix-store --export` in the holder piped to `nix-store --import` in the
/// fetcher take.
fn through_a_pipe(holder: &Container, fetcher: &Container, paths: &str) -> f64 {
    let start = Instant::now();
    let mut export = Command::new("nsenter")
        .args(["-t", &holder.leader().to_string(), "-a", "--"])
        .args(["sh", "-c", &format!("nix-store --export {paths}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let import = Command::new("nsenter")
        .args(["-t", &fetcher.leader().to_string(), "-a", "--"])
        .args([
            "sh",
            "-c",
            "NIX_REMOTE=daemon nix-store --import --option require-sigs false >/dev/null",
        ])
        .stdin(export.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(export.wait().unwrap().success() && import.success());
    start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let flags = format!(
        "{FLAGS} {} {}",
        nix::CACHE_FLAG,
        xnode_lab::fleet::JOIN_FLAG
    );
    let cluster = Cluster::boot_each(
        bin.parent().unwrap(),
        2,
        |_| flags.clone(),
        |i, net| Cluster::spec(2, i, net, &json!({})),
    )
    .unwrap();
    let (holder, fetcher) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (secret, public) = nix::signing_key(holder, "fleet").unwrap();
    for c in &cluster.nodes {
        nix::join_fleet_store(c, &secret, &public).unwrap();
    }
    let paths: Vec<String> = (0..PATHS)
        .map(|i| nix::add_random(holder, &format!("blob-{i}"), MIB_EACH).unwrap())
        .collect();
    let paths = paths.join(" ");
    nix::sign(holder, "/tmp/fleet.sk", &paths).unwrap();
    let bytes: f64 = holder
        .sh(&format!("nix-store -q --size {paths}"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<f64>().unwrap())
        .sum();
    cluster.wait_alive(Duration::from_secs(90)).unwrap();
    let (mut mesh, mut pipe) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        delete(fetcher, &paths);
        mesh.push(through_the_mesh(fetcher, &paths));
        delete(fetcher, &paths);
        pipe.push(through_a_pipe(holder, fetcher, &paths));
        eprintln!(
            "round {round}: mesh {:.2} s, export | import {:.2} s",
            mesh[round], pipe[round]
        );
    }
    fetcher
        .sh(&format!("nix-store --verify-path {paths}"))
        .unwrap();
    let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    let mb = bytes / 1e6;
    let (ours, floor) = (mb / best(&mesh), mb / best(&pipe));
    println!(
        "a closure of {PATHS} paths, {mb:.0} MB of random data, from one member; best of {rounds} rounds each"
    );
    println!("  through the mesh and the local cache   {ours:>7.1} MB/s");
    println!("  nix-store --export | --import (floor)  {floor:>7.1} MB/s");
    println!("  ratio {:.2} of the floor (target: >= 0.50)", ours / floor);
}
