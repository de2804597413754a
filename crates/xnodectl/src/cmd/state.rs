//! `xnodectl state list` and `xnodectl state prune`

use std::fmt::Write as _;

use anyhow::Result;
use xnode_api::Request;
use xnode_api::node::{Pruned, StateDir};

use crate::Outcome;
use crate::cli::{Output, StateCommand};
use crate::cmd;

pub fn run(command: &StateCommand) -> Result<Outcome> {
    match command {
        StateCommand::List(args) => {
            let dirs: Vec<StateDir> = cmd::call(&args.socket, Request::StateList)?;
            if matches!(args.output, Output::Json) {
                cmd::print_json(&dirs)?;
                return Ok(Outcome::Success);
            }
            let mut out = format!("{:<24} {:>12}  {:<9} PATH\n", "WORKLOAD", "SIZE", "IN SPEC");
            for d in &dirs {
                let _ = writeln!(
                    out,
                    "{:<24} {:>12}  {:<9} {}",
                    d.workload,
                    size(d.bytes),
                    if d.in_spec { "yes" } else { "no" },
                    d.path,
                );
            }
            cmd::print(&out)?;
        }
        StateCommand::Prune { workload, agent } => {
            let done: Pruned = cmd::call(
                &agent.socket,
                Request::StatePrune {
                    workload: workload.clone(),
                },
            )?;
            if matches!(agent.output, Output::Json) {
                cmd::print_json(&done)?;
            } else {
                cmd::print(&format!(
                    "deleted the state of {workload} ({})\n",
                    size(done.bytes)
                ))?;
            }
        }
    }
    Ok(Outcome::Success)
}

/// Bytes for people: 1.5 MiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(1023), "1023 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(5 << 30), "5.0 GiB");
    }
}
