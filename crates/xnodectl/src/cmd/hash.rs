//! `xnodectl hash FILE`

use anyhow::Result;

use crate::Outcome;
use crate::cli::HashArgs;
use crate::cmd;

pub fn run(args: &HashArgs) -> Result<Outcome> {
    let Some((v, _)) = cmd::load_valid(&args.file)? else {
        return Ok(Outcome::Failure);
    };
    cmd::print(&format!("{}\n", v.hash))?;
    Ok(Outcome::Success)
}
