//! `xnodectl state list` and `xnodectl state prune`

use std::fmt::Write as _;

use anyhow::Result;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{Output, StateCommand};
use crate::cmd;

pub fn run(command: &StateCommand) -> Result<Outcome> {
    match command {
        StateCommand::List(args) => {
            let dirs = cmd::call(&args.socket, Request::StateList)?;
            if matches!(args.output, Output::Json) {
                cmd::print_json(&dirs)?;
                return Ok(Outcome::Success);
            }
            let mut out = format!("{:<24} {:>12}  {:<9} PATH\n", "WORKLOAD", "SIZE", "IN SPEC");
            for d in dirs.as_array().map(Vec::as_slice).unwrap_or_default() {
                let _ = writeln!(
                    out,
                    "{:<24} {:>12}  {:<9} {}",
                    d["workload"].as_str().unwrap_or("-"),
                    size(d["bytes"].as_u64().unwrap_or(0)),
                    if d["in_spec"] == true { "yes" } else { "no" },
                    d["path"].as_str().unwrap_or("-"),
                );
            }
            cmd::print(&out)?;
        }
        StateCommand::Prune { workload, agent } => {
            let done = cmd::call(
                &agent.socket,
                Request::StatePrune {
                    workload: workload.clone(),
                },
            )?;
            if matches!(agent.output, Output::Json) {
                cmd::print_json(&done)?;
            } else {
                let bytes = done["bytes"].as_u64().unwrap_or(0);
                cmd::print(&format!(
                    "deleted the state of {workload} ({})\n",
                    size(bytes)
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
