//! `xnodectl hash FILE`

use anyhow::Result;

use crate::Outcome;
use crate::cli::HashArgs;
use crate::cmd;

pub fn run(args: &HashArgs) -> Result<Outcome> {
    match cmd::load(&args.file)? {
        Ok(v) => {
            cmd::print(&format!("{}\n", v.hash))?;
            Ok(Outcome::Success)
        }
        Err(invalid) => {
            cmd::report(&args.file, &invalid);
            Ok(Outcome::Failure)
        }
    }
}
