//! Failover of a mesh workload whose closure is about 200 MB, with and without
//! pre-fetch: four real nodes (xnoded under systemd, each in its own container,
//! network namespace and Nix store). The builder holds the closure (a program that
//! references four paths of 50 MiB of random data) and runs nothing; the three
//! workers fetch it from the mesh. With `--standbys 1` the worker ranked next fetches
//! it ahead; with `--standbys 0` only the owner does, so a new owner downloads it
//! before it starts. Each time is read from the journals, from the owner's loss to the
//! start elsewhere, on the monotonic clock every container shares. Twice: with the
//! members' default rate, and with each member serving each other at 100 Mbit/s
//! (`--nix-peer-rate`), where the download outlasts the wait for the lost owner's
//! lease.
//!
//! `cargo bench -p xnode-agent --bench prefetch` (root; one loss each).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails by panicking

use std::path::PathBuf;
use std::time::Duration;

use xnode_lab::cluster::wait_until;
use xnode_lab::nix;

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
const N: usize = 4;
const UNIT: &str = "xnode-solo.service";
const WAIT: Duration = Duration::from_secs(120);

/// A program whose closure holds `blobs`.
fn program(blobs: &[String]) -> String {
    let paths: Vec<String> = blobs.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"
let blobs = map builtins.storePath [ {} ]; in
derivation {{
  name = "big";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; echo ${{toString blobs}} > $out/blobs; printf '#!/bin/sh\\nexec /bin/sleep infinity\\n' > $out/run; /bin/chmod 755 $out/run" ];
}}"#,
        paths.join(" ")
    )
}

/// Seconds from the owner's loss to the workload's start elsewhere, with `standbys`
/// members fetching ahead, and each member serving each other one at most `rate`
/// bytes a second.
fn failover(standbys: usize, rate: u64) -> f64 {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let flags = format!("{FLAGS} --standbys {standbys} --nix-peer-rate {rate}");
    let cluster = nix::builder_and_workers(bin.parent().unwrap(), N, &flags).unwrap();
    let builder = &cluster.nodes[0];
    let blobs: Vec<String> = (0..4)
        .map(|i| nix::add_random(builder, &format!("blob-{i}"), 50).unwrap())
        .collect();
    let app = nix::build(builder, &program(&blobs)).unwrap();
    nix::run_signed_singleton(&cluster, &app, WAIT).unwrap();
    let holders = || nix::holders(&cluster, "solo").len();
    // The owner, and with pre-fetch a standby, hold the closure.
    wait_until(WAIT, || {
        cluster.running(UNIT).len() == 1 && holders() > standbys
    })
    .unwrap_or_else(|_| panic!("standbys {standbys}: never settled"));
    // A few heartbeats, so every member knows who holds it.
    std::thread::sleep(Duration::from_secs(3));
    let owner = cluster.running(UNIT)[0];
    let at = cluster.kill(owner, &[UNIT]).unwrap();
    let (heir, seconds) = cluster
        .heir(owner, UNIT, at, WAIT)
        .unwrap_or_else(|| panic!("standbys {standbys}: no failover from n{owner}"));
    eprintln!("standbys {standbys}, rate {rate}: n{owner} -> n{heir} in {seconds:.2} s");
    seconds
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("failover of a singleton whose closure is about 200 MB, {N} nodes, one loss each");
    let default = xnode_nix::Limits::default().peer_rate;
    for (what, rate) in [
        ("members' default rate (128 MiB/s)", default),
        ("members at 100 Mbit/s", 12_500_000),
    ] {
        let ahead = failover(1, rate);
        let owner_only = failover(0, rate);
        println!("  {what}:");
        println!("    fetched ahead by a standby (--standbys 1)   {ahead:>6.2} s");
        println!("    fetched by the new owner (--standbys 0)     {owner_only:>6.2} s");
        println!(
            "    with pre-fetch: {:.0} % of the time",
            100.0 * ahead / owner_only
        );
    }
}
