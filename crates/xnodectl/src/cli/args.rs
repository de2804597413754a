//! The arguments the commands share or take alone, apart from the command tree.

use std::path::PathBuf;

use clap::Args;

use super::Output;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// xnoded's API socket.
    #[arg(long, env = "XNODE_SOCKET", default_value = xnode_api::DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Keep showing it: every `--every` seconds on a terminal, and otherwise each
    /// time it changes. Ctrl-C ends it.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between looks, with --watch.
    #[arg(long, default_value_t = 2, value_name = "SECONDS", requires = "watch")]
    pub every: u64,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait for this generation (or a later one) to be in force, converged.
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,
    /// Give up after this long.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The spec file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Keep the result even if it is unhealthy.
    #[arg(long)]
    pub no_rollback: bool,
    /// Return once the apply is recorded as a generation, and leave it to run.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// How long to wait for the apply, health gate included.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The workload.
    pub workload: String,
    /// How many lines.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub lines: usize,
    /// Then each new line as it is written, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct SshKeysArgs {
    /// The user logging in; only root gets the owner's key.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// Where xnoded publishes the owner of the spec in force (which a push or an API
    /// apply may have changed). Read first; the spec file only while it is missing
    /// (xnoded has not started).
    #[arg(long, default_value = "/run/xnode/owner", value_name = "FILE")]
    pub owner_file: PathBuf,
    /// The node's spec file.
    #[arg(default_value = "/etc/xnode/spec.json", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Spec file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The desired spec.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// The node's units as JSON; none when left out.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Treat this mesh workload as placed on this node (repeatable).
    #[arg(long, value_name = "WORKLOAD")]
    pub placed: Vec<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}
