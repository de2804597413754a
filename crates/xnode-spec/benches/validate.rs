//! Validate + hash a 10,000-workload spec against bare `serde_json` parsing of the same
//! bytes, in one run, and print both and the ratio (target: at most 3x).
//!
//! `cargo bench -p xnode-spec --bench validate` (add `-- --rounds N` for more samples).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A realistic workload: limits, health check, exposed port, environment, sandbox.
fn workload(i: usize) -> Value {
    let hash = "8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6";
    let mut w = json!({
        "command": [format!("/nix/store/{hash}-svc-{i}/bin/svc"), "--listen", format!("127.0.0.1:{}", 10_000 + i), "--log-level", "info"],
        "store_paths": [format!("/nix/store/{hash}-svc-{i}")],
        "environment": {"RUST_LOG": "info", "SVC_ID": i.to_string(), "DATA_DIR": format!("/var/lib/svc-{i}")},
        "resources": {"cpu": "50%", "memory": "256M", "tasks": 128},
        "restart": {"policy": "on-failure", "delay": "2s"},
        "health": {"timeout": "30s", "http": {"port": 10_000 + i, "path": "/healthz", "timeout": "1s"}},
        "expose": [{"service": format!("svc-{i}"), "port": 10_000 + i}],
        "sandbox": {"writable_paths": [format!("/var/lib/svc-{i}")]}
    });
    // 50 of 10,000 on the mesh: a node offers at most 64 mesh workloads.
    if i.is_multiple_of(200) {
        w["placement"] = json!({"mesh": {"replicas": 3, "labels": {"tier": "web"}}});
    }
    w
}

fn spec(n: usize) -> String {
    let workloads: serde_json::Map<String, Value> =
        (0..n).map(|i| (format!("svc-{i}"), workload(i))).collect();
    let spec = json!({
        "version": 1,
        "node": {"name": "bench", "labels": {"tier": "web"},
                 "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
        "mesh": {"listen": ["/ip4/0.0.0.0/tcp/7720"]},
        "workloads": workloads,
    });
    serde_json::to_string_pretty(&spec).unwrap_or_default()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    let text = spec(10_000);
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Alternate the two so that noise on the machine falls on both alike.
        let t = Instant::now();
        let value: Value = serde_json::from_str(black_box(&text)).unwrap_or(Value::Null);
        drop(black_box(value));
        bare.push(t.elapsed());
        let t = Instant::now();
        let validated = xnode_spec::parse(black_box(text.as_bytes()));
        assert!(
            validated.is_ok(),
            "the bench spec must be valid: {validated:?}"
        );
        drop(black_box(validated));
        ours.push(t.elapsed());
    }
    let (bare, ours) = (median(bare), median(ours));
    let ratio = ours.as_secs_f64() / bare.as_secs_f64();
    println!(
        "spec: 10000 workloads, {:.1} MB, median of {rounds} rounds",
        text.len() as f64 / 1e6
    );
    println!(
        "serde_json::from_str::<Value> (baseline)  {:>8.1} ms",
        bare.as_secs_f64() * 1e3
    );
    println!(
        "xnode_spec::parse (validate + hash)      {:>8.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!("ratio {ratio:.2}x (target: at most 3x)");
}
