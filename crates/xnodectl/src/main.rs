//! `xnodectl`: the XnodeOS command-line tool.

mod cli;
mod cmd;
mod input;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// What a command reports besides errors: whether everything it checked was fine.
pub enum Outcome {
    /// All is well.
    Success,
    /// The command ran, and found something wrong (an invalid spec); already reported.
    Failure,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Hash(args) => cmd::hash::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Schema => cmd::schema::run(),
        Command::Status(args) => cmd::status::run(&args),
        Command::Wait(args) => cmd::wait::run(&args),
        Command::Apply(args) => cmd::apply::run(&args),
        Command::Reload(args) => cmd::apply::reload(&args),
        Command::Rollback(args) => cmd::history::rollback(&args),
        Command::History(args) => cmd::history::run(&args),
        Command::Logs(args) => cmd::logs::run(&args),
        Command::Events(args) => cmd::events::run(&args),
        Command::Mesh(command) => cmd::mesh::run(&command),
        Command::Fleet(command) => cmd::fleet::run(&command),
        Command::Key(command) => cmd::key::run(&command),
        Command::Secret(command) => cmd::secret::run(&command),
        Command::State(command) => cmd::state::run(&command),
        Command::SshKeys(args) => cmd::ssh_keys::run(&args),
        Command::Completions { shell } => cmd::docs::completions(shell),
        Command::Man => cmd::docs::man(),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::FAILURE,
        // The reader went away (`xnodectl schema | head`): nothing left to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xnodectl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
