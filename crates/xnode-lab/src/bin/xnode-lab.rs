//! `xnode-lab`: run a real Xnode in a container, for the demo and for poking at by hand.
//!
//! `xnode-lab node --bin-dir target/release --spec examples/small.json [--keep]`
//! `xnode-lab failover --bin-dir target/release` (then one fleet spec for the rest)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!("usage: xnode-lab node --bin-dir DIR --spec FILE [--keep]");
    eprintln!("  boots a container running xnoded (from DIR) on FILE, waits until it converged,");
    eprintln!("  shows `xnodectl status`, and powers it off (with --keep: on Ctrl-C)");
    eprintln!("usage: xnode-lab failover --bin-dir DIR");
    eprintln!("  boots five nodes in their own network namespaces running one mesh workload,");
    eprintln!("  kills the node that runs it, and shows another take it over; then deploys a");
    eprintln!("  workload to every live member with one fleet spec");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let result = match (
        args.first().map(String::as_str),
        value("--bin-dir"),
        value("--spec"),
    ) {
        (Some("node"), Some(bin_dir), Some(spec)) => {
            run(&bin_dir, &spec, args.iter().any(|a| a == "--keep"))
        }
        (Some("failover"), Some(bin_dir), None) => failover(&bin_dir),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xnode-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    bin_dir: &std::path::Path,
    spec: &std::path::Path,
    keep: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let bin_dir = bin_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    let bytes = std::fs::read(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    println!(
        "== booting a container and starting xnoded on {}",
        spec.display()
    );
    // The console too, on a port of the host's loopback (the container shares it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let flags = format!(
        "{} --http-listen 127.0.0.1:{port}",
        xnode_lab::node::TEST_FLAGS
    );
    let c = xnode_lab::node::boot_node_with(&bin_dir, &bytes, &flags)?;
    println!(
        "   container {} is up (systemd as PID 1; xnoded is a Type=notify service)",
        c.name()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let out = c.exec(&["xnodectl", "status", "--output", "json"])?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if status["converged"] == true {
            break status;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the node did not converge in 120 s:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("\n== xnodectl status");
    print!("{}", c.sh("xnodectl status")?);
    println!("\n== xnodectl history");
    print!("{}", c.sh("xnodectl history")?);
    println!("\n== systemctl list-units 'xnode-*'");
    print!(
        "{}",
        c.sh("systemctl list-units --no-pager 'xnode-*' 'xnoded*'")?
    );
    println!(
        "\n== the console: {}/ (certificate {}); sign in as the spec's node.owner",
        status["remote"]["address"].as_str().unwrap_or("-"),
        status["remote"]["fingerprint"].as_str().unwrap_or("-")
    );
    if keep {
        println!(
            "\nkept running: nsenter -t {} -a xnodectl status (Ctrl-C powers it off)",
            c.leader()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    println!("\n== powering the container off");
    Ok(())
}

/// Five nodes, one mesh workload; its node dies and another takes it over.
fn failover(bin_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use xnode_lab::Cluster;
    const N: usize = 5;
    let unit = "xnode-web.service";
    let bin_dir = bin_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    let workloads = serde_json::json!({"web": {
        "command": ["/bin/sleep", "infinity"],
        "placement": {"mesh": {"replicas": 1}}
    }});
    println!(
        "== booting {N} nodes, each in its own network namespace, with one mesh workload: web;\n   \
         each is given a join key of its owner's (xnoded --join-key) and admits itself to the fleet"
    );
    let flags = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";
    let cluster = Cluster::boot(&bin_dir, N, flags, |i, net| {
        Cluster::spec(N, i, net, &workloads)
    })?;
    let all: Vec<usize> = (0..N).collect();
    cluster.wait_settled(&all, &["web"], Duration::from_secs(120))?;
    let owner = cluster.running(unit)[0];
    let witness = (owner + 1) % N;
    println!("\n== xnodectl fleet members on n{witness}");
    print!("{}", cluster.nodes[witness].sh("xnodectl fleet members")?);
    println!("\n== xnodectl status on n{witness}");
    print!("{}", cluster.nodes[witness].sh("xnodectl status")?);
    println!("\n== n{owner} dies: web stopped, then xnoded killed with SIGKILL");
    let killed = cluster.kill(owner, &[unit])?;
    xnode_lab::cluster::wait_until(Duration::from_secs(60), || {
        cluster.running(unit).iter().any(|i| *i != owner)
    })
    .map_err(|_| "no failover within 60 s")?;
    let heir = cluster.running(unit)[0];
    let started = xnode_lab::runs::runs(&cluster.nodes[heir], unit)?
        .iter()
        .map(|r| r.from_us)
        .filter(|t| *t > killed)
        .min()
        .unwrap_or(killed);
    println!(
        "   web runs on n{heir}, {:.2} s after the kill",
        (started - killed) as f64 / 1e6
    );
    println!("\n== xnodectl status on n{witness}");
    print!("{}", cluster.nodes[witness].sh("xnodectl status")?);
    let live: Vec<usize> = all.into_iter().filter(|i| *i != owner).collect();
    deploy_to_fleet(&cluster, witness, &live)?;
    println!("\n== powering the nodes off");
    Ok(())
}

/// One command deploys a workload to every live member: a fleet spec.
fn deploy_to_fleet(
    cluster: &xnode_lab::Cluster,
    witness: usize,
    live: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    let unit = "xnode-hello.service";
    let fleet = serde_json::json!({"version": 1, "workloads": {"hello": {
        "command": ["/bin/sh", "-c", "echo hello from the fleet; exec sleep infinity"],
        "placement": {"mesh": {"replicas": live.len()}},
        "rollout": {"canary": 1, "max_parallel": 2, "min_healthy_time": "2s"}
    }}});
    let c = &cluster.nodes[witness];
    std::fs::write(
        c.path("/root/fleet.json"),
        serde_json::to_vec_pretty(&fleet)?,
    )?;
    let key = xnode_lab::fleet::owner().to_secret_string();
    c.sh(&format!("umask 077; echo '{key}' > /root/owner.key"))?;
    println!("\n== one fleet spec deploys `hello` to every member: on n{witness},");
    println!("   xnodectl fleet apply --key owner.key fleet.json");
    print!(
        "   {}",
        c.sh("xnodectl fleet apply --key /root/owner.key /root/fleet.json")?
    );
    xnode_lab::cluster::wait_until(Duration::from_secs(120), || {
        let running = cluster.running(unit);
        live.iter().all(|i| running.contains(i))
            && c.sh("xnodectl fleet status --output json")
                .is_ok_and(|s| s.contains("\"state\": \"done\""))
    })
    .map_err(|_| "the fleet spec did not reach every member within 120 s")?;
    println!("\n== xnodectl fleet status on n{witness}");
    print!("{}", c.sh("xnodectl fleet status")?);
    Ok(())
}
