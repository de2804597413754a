//! Twenty mesh nodes (release builds of xnode-meshd, separate processes) on 127.0.0.1:
//! the time from the first start to full membership on every node, the time for every
//! node to see a `kill -9` (five kills), and service lookup latency; each printed
//! beside the published figures of the systems it replaces.
//!
//! Run: `cargo bench -p xnode-mesh --bench mesh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails by panicking

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use cluster::{Cluster, in_state};

const NODES: usize = 20;
const KILLS: usize = 5;
const LOOKUPS: usize = 1000;
const FREEZES: usize = 3;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// How many member events each node has printed so far.
fn marks(c: &Cluster) -> BTreeMap<String, usize> {
    c.nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.member_events().len()))
        .collect()
}

/// For each of `nodes`, the ms from `since` to its first report, after its mark, that
/// `victim` is dead.
fn dead_seen(
    c: &Cluster,
    marks: &BTreeMap<String, usize>,
    nodes: &[String],
    victim: &str,
    since: u64,
) -> Vec<f64> {
    nodes
        .iter()
        .map(|n| {
            let seen = c.nodes[n].member_events()[marks[n]..]
                .iter()
                .find(|e| e["state"] == "dead" && e["peer_id"] == victim)
                .map(|e| e["at_ms"].as_u64().unwrap())
                .unwrap();
            seen.saturating_sub(since) as f64
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut c = Cluster::new("bench");
    let started = now_ms();
    for i in 0..NODES {
        let extra: &[&str] = if i == 7 {
            &["--service", "web:8080"]
        } else {
            &[]
        };
        c.start(&format!("n{i:02}"), extra);
    }
    let ids: BTreeMap<String, String> = c
        .nodes
        .iter()
        .map(|(n, p)| (n.clone(), p.peer_id.clone()))
        .collect();
    c.wait_all("full membership", Duration::from_secs(60), |me, m| {
        in_state(m, "alive").len() == NODES - 1 && !in_state(m, "alive").contains(&ids[me])
    });
    // When each node saw its last member arrive, from its own events.
    let full_ms = c
        .nodes
        .values()
        .map(|p| {
            p.member_events()
                .iter()
                .filter(|e| e["state"] == "alive")
                .map(|e| e["at_ms"].as_u64().unwrap())
                .max()
                .unwrap()
        })
        .max()
        .unwrap()
        - started;

    // Kills: every other node's time to mark the victim dead.
    let mut detect = Vec::new();
    for k in 0..KILLS {
        let name = format!("n{:02}", 2 + k * 3);
        let victim = c.nodes[&name].peer_id.clone();
        let before = marks(&c);
        let killed_at = now_ms();
        c.kill(&name);
        c.wait_all("the kill seen", Duration::from_secs(30), |_, m| {
            in_state(m, "dead").contains(&victim)
        });
        let everyone: Vec<String> = c.nodes.keys().cloned().collect();
        detect.extend(dead_seen(&c, &before, &everyone, &victim, killed_at));
        c.start(&name, &[]);
        c.wait_all("the victim back", Duration::from_secs(30), |me, m| {
            me == name || in_state(m, "alive").contains(&victim)
        });
    }
    detect.sort_by(f64::total_cmp);

    // Freezes (SIGSTOP): the process hangs with its connections open, as a machine
    // that stops answering does; only the heartbeats' silence tells.
    let mut frozen = Vec::new();
    for k in 0..FREEZES {
        let name = format!("n{:02}", 3 + k * 5);
        let victim = c.nodes[&name].peer_id.clone();
        let before = marks(&c);
        let frozen_at = now_ms();
        c.signal(&name, "-STOP");
        let others: Vec<String> = c.nodes.keys().filter(|n| **n != name).cloned().collect();
        c.wait_except(
            Some(&name),
            "the freeze seen",
            Duration::from_secs(30),
            |_, m| in_state(m, "dead").contains(&victim),
        );
        frozen.extend(dead_seen(&c, &before, &others, &victim, frozen_at));
        c.signal(&name, "-CONT");
        c.wait_all("the frozen node back", Duration::from_secs(30), |me, m| {
            me == name || in_state(m, "alive").contains(&victim)
        });
    }
    frozen.sort_by(f64::total_cmp);

    // Lookups of `web`, round trip through each node's request interface.
    let names: Vec<String> = c.nodes.keys().cloned().collect();
    let mut lookups = Vec::new();
    for i in 0..LOOKUPS {
        let node = c.nodes.get_mut(&names[i % names.len()]).unwrap();
        let t = Instant::now();
        let answer = node.request("providers web");
        lookups.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(answer["providers"].as_array().unwrap().len(), 1, "{answer}");
    }
    lookups.sort_by(f64::total_cmp);

    println!("mesh of {NODES} nodes on 127.0.0.1 (release xnode-meshd processes)");
    println!("  full membership from the first start   {full_ms:>7} ms   target ≤ 3000 ms;");
    println!("      gossipsub's default first heartbeat alone comes at 6000 ms");
    println!(
        "  kill -9 seen by every node ({} sightings of {KILLS} kills)\n      median {:>7.0} ms   max {:>5.0} ms   target median ≤ 3000 ms;",
        detect.len(),
        percentile(&detect, 0.5),
        detect[detect.len() - 1]
    );
    println!(
        "      memberlist/Serf: 4000–8000 ms at 10–100 nodes (ratio at our median vs 4000: {:.0}×)",
        4000.0 / percentile(&detect, 0.5).max(1.0)
    );
    println!(
        "  a node frozen (SIGSTOP), seen dead by every node ({} sightings of {FREEZES} freezes)\n      median {:>7.0} ms   max {:>5.0} ms   (silence: suspect after 1500 ms, dead after 2500 ms)",
        frozen.len(),
        percentile(&frozen, 0.5),
        frozen[frozen.len() - 1]
    );
    println!(
        "  service lookup ({LOOKUPS}, through each node's request interface)\n      p50 {:>7.3} ms   p99 {:>7.3} ms   target p99 ≤ 100 ms",
        percentile(&lookups, 0.5),
        percentile(&lookups, 0.99)
    );
}
