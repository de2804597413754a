//! `xnode-lab`: run a real Xnode in a container, for the demo and for poking at by hand.
//!
//! `xnode-lab node --bin-dir target/release --spec examples/small.json [--keep]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!("usage: xnode-lab node --bin-dir DIR --spec FILE [--keep]");
    eprintln!("  boots a container running xnoded (from DIR) on FILE, waits until it converged,");
    eprintln!("  shows `xnodectl status`, and powers it off (with --keep: on Ctrl-C)");
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
    let (Some("node"), Some(bin_dir), Some(spec)) = (
        args.first().map(String::as_str),
        value("--bin-dir"),
        value("--spec"),
    ) else {
        return usage();
    };
    match run(&bin_dir, &spec, args.iter().any(|a| a == "--keep")) {
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
    let c = xnode_lab::node::boot_node(&bin_dir, &bytes)?;
    println!(
        "   container {} is up (systemd as PID 1; xnoded is a Type=notify service)",
        c.name()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = c.exec(&["xnodectl", "status", "--output", "json"])?;
        if String::from_utf8_lossy(&out.stdout).contains("\"converged\": true") {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the node did not converge in 120 s:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("\n== xnodectl status");
    print!("{}", c.sh("xnodectl status")?);
    println!("\n== xnodectl history");
    print!("{}", c.sh("xnodectl history")?);
    println!("\n== systemctl list-units 'xnode-*'");
    print!(
        "{}",
        c.sh("systemctl list-units --no-pager 'xnode-*' 'xnoded*'")?
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
