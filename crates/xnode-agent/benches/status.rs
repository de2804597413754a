//! `status` while an apply waits in its health gate: xnoded (release build) as a
//! systemd service in a lab container, 50 workloads; 1,000 `status` calls with the node
//! idle, then 1,000 while an apply that changed all 50 waits for them to pass their
//! probes (the bench opens the probed port afterwards). p50 and p99 of each, in one
//! run, beside the target: p99 during the apply ≤ 2 × idle.
//!
//! `cargo bench -p xnode-agent --bench status` (as root; `-- --calls N`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use xnode_api::Request;
use xnode_lab::node::boot_node_with;

fn spec(argument: &str, port: u16) -> Value {
    let workloads: Map<String, Value> = (0..50)
        .map(|i| {
            let w = json!({
                "command": ["/bin/sleep", argument],
                "health": {"timeout": "300s", "tcp": {"port": port}}
            });
            (format!("w{i:02}"), w)
        })
        .collect();
    json!({"version": 1, "node": {"name": "status"}, "workloads": workloads})
}

/// `calls` status calls, one after another; their latencies in ms, sorted.
fn latencies(socket: &Path, calls: usize) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut took = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        xnode_api::call::<serde_json::Value>(socket, Request::Status, Duration::from_secs(30))?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    Ok(took)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn wait_status(
    socket: &Path,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = xnode_api::call(socket, Request::Status, Duration::from_secs(30))?;
        if check(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(format!("{what} never happened: {s:#}").into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    // The probed port: open now for the first apply, closed for the gated one.
    let open = TcpListener::bind("127.0.0.1:0")?;
    let port = open.local_addr()?.port();
    std::thread::spawn(move || for _ in open.incoming() {});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let bin_dir = bin.parent().ok_or("no bin dir")?;
    let c = boot_node_with(
        bin_dir,
        &serde_json::to_vec(&spec("100001", port))?,
        xnode_lab::node::TEST_FLAGS,
    )?;
    let socket = c.path("/run/xnode/api.sock");
    wait_status(&socket, "convergence", |s| s["converged"] == true)?;
    let idle = latencies(&socket, calls)?;

    // An apply that changes all 50, gated on a port nothing listens on yet.
    let gated_port = {
        let probe = TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let gated = spec("100002", gated_port);
    let apply_socket = socket.clone();
    let applying = std::thread::spawn(move || {
        let request = Request::Apply {
            spec: gated,
            no_rollback: false,
        };
        xnode_api::call(&apply_socket, request, Duration::from_secs(600))
    });
    wait_status(&socket, "the gate on all 50", |s| {
        s["applying"]["workloads"].as_object().is_some_and(|w| {
            w.len() == 50
                && w.values()
                    .all(|g| g["why"].as_str().is_some_and(|y| y.contains("probe")))
        })
    })?;
    let during = latencies(&socket, calls)?;
    let still: serde_json::Value =
        xnode_api::call(&socket, Request::Status, Duration::from_secs(30))?;
    if still["applying"]["phase"] != "gating" {
        return Err(format!("the gate ended during the measurement: {still:#}").into());
    }
    let listener = TcpListener::bind(("127.0.0.1", gated_port))?;
    std::thread::spawn(move || for _ in listener.incoming() {});
    let result: serde_json::Value = applying.join().map_err(|_| "the apply thread panicked")??;
    if result["outcome"]["state"] != "healthy" {
        return Err(format!("the gated apply did not pass: {result:#}").into());
    }

    let (idle50, idle99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    let (dur50, dur99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    println!("status, {calls} calls each, 50 workloads (release xnoded in a lab container)");
    println!("  idle agent                   p50 {idle50:.2} ms   p99 {idle99:.2} ms");
    println!("  during an apply's 50-unit gate p50 {dur50:.2} ms   p99 {dur99:.2} ms");
    println!(
        "  p99 during / idle: {:.2}x   (target <= 2x)",
        dur99 / idle99
    );
    Ok(())
}
