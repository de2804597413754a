//! What membership costs one node, in one fleet of 20, 50 and 100 real xnode-meshd
//! processes (release builds) on 127.0.0.1: CPU (% of a core), bytes in and out per
//! second, and gossip messages delivered per second; then the growth from 20 to 100,
//! and the fleet size at which a node would spend 5 % of a core.
//!
//! Bytes are the loopback interface's (packets, headers included) shared out over the
//! nodes: everything a node sends there another receives, so in and out per node are
//! the same figure. Anything else on the machine's loopback meanwhile counts too.
//!
//! The anchor is memberlist (Serf, Consul): its keep-alive load per node is constant
//! whatever the cluster size (one probe a second, gossip to 3 members every 200 ms).
//!
//! Run: `cargo bench -p xnode-mesh --bench fleet`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails by panicking

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, in_state};

const SIZES: [usize; 4] = [20, 30, 50, 100];
const WINDOW: Duration = Duration::from_secs(10);

/// CPU ticks (user + system) of a process.
fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name's closing parenthesis: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Bytes received on the loopback interface so far.
fn loopback_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap();
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether every node sees the other n - 1 alive, within `deadline`.
fn whole(c: &mut Cluster, n: usize, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        let all = c.nodes.values_mut().all(|p| {
            let members = p.request("members")["members"].clone();
            in_state(members.as_array().unwrap(), "alive").len() == n - 1
        });
        if all {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Per node, the mean over all nodes: (% of a core, bytes/s each way, messages/s); none
/// when the fleet never became whole, or fell apart while measured.
fn measure(n: usize) -> Option<(f64, f64, f64)> {
    let mut c = Cluster::new(&format!("cost{n}"));
    for i in 0..n {
        c.start(&format!("n{i:03}"), &[]);
    }
    if !whole(&mut c, n, Duration::from_secs(120)) {
        return None;
    }
    // Settled: the join's own traffic is over.
    std::thread::sleep(Duration::from_secs(5));
    let received = |c: &mut Cluster| -> Vec<u64> {
        c.nodes
            .values_mut()
            .map(|p| p.request("status")["status"]["received"].as_u64().unwrap())
            .collect()
    };
    let pids: Vec<u32> = c.nodes.values().map(cluster::Proc::pid).collect();
    let msgs_before = received(&mut c);
    let before: Vec<u64> = pids.iter().map(|p| ticks(*p)).collect();
    let lo_before = loopback_bytes();
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let lo = loopback_bytes() - lo_before;
    let after: Vec<u64> = pids.iter().map(|p| ticks(*p)).collect();
    let secs = started.elapsed().as_secs_f64();
    let msgs_after = received(&mut c);
    let tck = clock_ticks();
    let mean = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>() / n as f64;
    let cpu = mean(&|i| (after[i] - before[i]) as f64 / tck / secs * 100.0);
    let bytes = lo as f64 / n as f64 / secs;
    let msgs = mean(&|i| (msgs_after[i] - msgs_before[i]) as f64 / secs);
    // Still whole at the end: the figures are of a fleet that worked throughout.
    whole(&mut c, n, Duration::from_secs(5)).then_some((cpu, bytes, msgs))
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "membership cost per node, one fleet on 127.0.0.1 ({cores} cores), {WINDOW:?} window:"
    );
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "members", "CPU % core", "KB/s in", "KB/s out", "messages/s", "whole machine"
    );
    let mut rows = Vec::new();
    for n in SIZES {
        match measure(n) {
            Some((cpu, bytes, msgs)) => {
                let kb = bytes / 1000.0;
                let machine = cpu * n as f64 / cores as f64;
                println!("{n:>8} {cpu:>12.2} {kb:>12.1} {kb:>12.1} {msgs:>12.0} {machine:>13.0}%");
                rows.push((n, cpu, bytes, msgs));
            }
            None => println!(
                "{n:>8}   not measured: the fleet never stayed whole (every member alive on every node) on these {cores} cores"
            ),
        }
    }
    if rows.len() < 2 {
        return;
    }
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    let growth = |a: f64, b: f64| b / a.max(f64::MIN_POSITIVE);
    println!(
        "growth {} → {} members: CPU {:.1}×, bytes {:.1}×, messages {:.1}× \
         (memberlist: 1.0×, constant per node)",
        first.0,
        last.0,
        growth(first.1, last.1),
        growth(first.2, last.2),
        growth(first.3, last.3)
    );
    // CPU per node grows about linearly with the members heard: fit a line through the
    // first and last rows, and find where it crosses 5 %.
    let slope = (last.1 - first.1) / (last.0 - first.0) as f64;
    if slope > 0.0 {
        let at = first.0 as f64 + (5.0 - first.1) / slope;
        println!("a node would spend 5 % of a core at about {at:.0} members (linear fit)");
    } else {
        println!("CPU per node did not grow with the fleet in this run");
    }
    println!(
        "targets at 100 members: ≤ 2 % of a core, ≤ 100 KB/s in; measured at {}: {:.2} %, {:.1} KB/s",
        last.0,
        last.1,
        last.2 / 1000.0
    );
}
