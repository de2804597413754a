//! The idle agent: xnoded (release build, default settings) as a systemd service in a
//! lab container, a 50-workload spec applied, then watched for 60 s: its resident
//! memory and the CPU it used, beside the targets (RSS ≤ 25 MB, CPU < 0.5 % of a core).
//!
//! `cargo bench -p xnode-agent --bench idle` (as root; `-- --seconds N` to change the
//! window).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use xnode_lab::node::boot_node_with;

fn field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let workloads: Map<String, Value> = (0..50)
        .map(|i| {
            (
                format!("w{i:02}"),
                json!({"command": ["/bin/sleep", "infinity"]}),
            )
        })
        .collect();
    let spec = json!({"version": 1, "node": {"name": "idle"}, "workloads": workloads});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let bin_dir = bin.parent().ok_or("no bin dir")?;
    // Default settings (30 s reconcile interval, 1 s spec-file poll), but a free
    // metrics port.
    let c = boot_node_with(
        bin_dir,
        &serde_json::to_vec(&spec)?,
        "--metrics-address 127.0.0.1:0",
    )?;
    let socket = c.path("/run/xnode/api.sock");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status: serde_json::Value =
            xnode_api::call(&socket, xnode_api::Request::Status, Duration::from_secs(30))?;
        if status["converged"] == true {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("not converged: {status:#}").into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let pid = c
        .sh("systemctl show -p MainPID --value xnoded.service")?
        .trim()
        .to_owned();
    let ticks_per_second: f64 = c.sh("getconf CLK_TCK")?.trim().parse()?;
    let cpu_ticks = || -> Result<u64, Box<dyn std::error::Error>> {
        let stat = c.sh(&format!("cat /proc/{pid}/stat"))?;
        // Fields after the command name: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').ok_or("odd stat")?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
    };
    let before = cpu_ticks()?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let used = (cpu_ticks()? - before) as f64 / ticks_per_second;
    let wall = started.elapsed().as_secs_f64();
    let status = c.sh(&format!("cat /proc/{pid}/status"))?;
    let rss_kb = field(&status, "VmRSS:").ok_or("no VmRSS")?;
    let hwm_kb = field(&status, "VmHWM:").ok_or("no VmHWM")?;
    println!(
        "idle xnoded with 50 workloads applied, watched for {wall:.0} s (release build, default settings)"
    );
    println!(
        "  RSS now   {:>6.1} MB (target: at most 25 MB)",
        rss_kb as f64 / 1024.0
    );
    println!("  RSS peak  {:>6.1} MB", hwm_kb as f64 / 1024.0);
    println!(
        "  CPU       {:>6.3} % of one core ({used:.2} s of CPU; target: under 0.5 %)",
        used / wall * 100.0
    );
    Ok(())
}
