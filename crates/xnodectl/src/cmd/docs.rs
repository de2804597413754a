//! `xnodectl completions SHELL` and `xnodectl man`: generated from the clap definition,
//! so they never drift from the real command line.

use anyhow::Result;
use clap::CommandFactory;

use crate::Outcome;
use crate::cli::Cli;
use crate::cmd;

pub fn completions(shell: clap_complete::Shell) -> Result<Outcome> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "xnodectl", &mut out);
    cmd::print(&String::from_utf8_lossy(&out))?;
    Ok(Outcome::Success)
}

pub fn man() -> Result<Outcome> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    cmd::print(&String::from_utf8_lossy(&out))?;
    Ok(Outcome::Success)
}
