//! The command line, as clap sees it. Kept apart from `main` so that shell completions
//! and the man page are generated from the very same definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod args;
pub use args::*;

/// Manage XnodeOS nodes: check node specs and see what applying one would do.
#[derive(Debug, Parser)]
#[command(name = "xnodectl", version, about, propagate_version = true)]
#[command(after_help = "Examples:
  xnodectl validate examples/*.json
  xnodectl hash spec.json
  xnodectl plan --spec spec.json --observed observed.json
  xnodectl schema > xnode-spec.schema.json

The commands that talk to xnoded need root or its API group. Membership of that group
amounts to root: a member can apply a workload that runs as root.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check node specs; print every problem with its JSON path.
    #[command(
        after_help = "Exit status: 0 when every file is valid, 1 when any is not.

Examples:
  xnodectl validate spec.json
  xnodectl validate --output json examples/*.json
  cat spec.json | xnodectl validate -"
    )]
    Validate(ValidateArgs),
    /// Print a spec's content hash, the same whatever its key order or whitespace.
    #[command(after_help = "Example:
  xnodectl hash spec.json        # sha256:…")]
    Hash(HashArgs),
    /// Show the actions that would bring a node's units to a spec (a dry run).
    #[command(
        after_help = "The observed state is JSON: {\"units\": [{\"name\": \"xnode-web.service\",
\"active_state\": \"active\", \"file\": \"<unit file text>\"}]}. Without it the
node is taken to have no units.

Examples:
  xnodectl plan --spec spec.json
  xnodectl plan --spec spec.json --observed observed.json --output json
  xnodectl plan --spec spec.json --placed api   # as if mesh placement put api here"
    )]
    Plan(PlanArgs),
    /// Print the JSON Schema of the node spec, for editors.
    Schema,
    /// Show the node: its generation, whether it converged, every workload's state.
    #[command(after_help = "Examples:
  xnodectl status
  xnodectl status --output json
  xnodectl status --watch        # shown again every 2 s (on a terminal) or when it changes")]
    Status(StatusArgs),
    /// Wait until the node converged: the generation in force is healthy, no apply
    /// runs, and the units match it.
    #[command(
        after_help = "Exit status: 0 once the node converged (on generation N or later, with
--generation), 1 when that generation was rolled back or left unhealthy, or the
wait timed out. On a terminal or not, each change of the apply under way is shown as
a line.

Examples:
  xnodectl wait
  xnodectl wait --generation 7 --timeout 300"
    )]
    Wait(WaitArgs),
    /// Apply a spec on this node through xnoded: show the plan, apply, wait for health.
    #[command(
        after_help = "Without --no-rollback, an apply whose workloads do not become healthy
is rolled back to the last good generation. Its progress shows as it happens: a
spinner per workload the health gate waits on, on a terminal; a line at each change
otherwise. Exit status: 0 when the generation is healthy, 1 when it was rolled back
or left unhealthy; with --detach, 0 once it is recorded.

Examples:
  xnodectl apply spec.json
  xnodectl apply --detach spec.json && xnodectl wait --generation N"
    )]
    Apply(ApplyArgs),
    /// Make xnoded take in its spec file now, and wait for what became of it.
    #[command(
        after_help = "What `systemctl reload xnoded` runs, so that `nixos-rebuild switch` waits for the
node's apply and fails when it is rolled back. Exit status: 0 when the node is
healthy on the file's spec (or already was), 1 when the spec is invalid, the apply
was rolled back or left unhealthy, or the wait timed out.

Example:
  xnodectl reload --timeout 600"
    )]
    Reload(ReloadArgs),
    /// Go back to the previous healthy generation.
    Rollback(AgentArgs),
    /// List the kept generations.
    History(AgentArgs),
    /// Show a workload's last log lines, from the journal.
    #[command(after_help = "Example:
  xnodectl logs web -n 50")]
    Logs(LogsArgs),
    /// Show the node's changes as they happen: applies and their progress, workloads'
    /// states and health, mesh members, placement and the rollout.
    #[command(
        after_help = "Runs until interrupted. With --output json, one event per line.

Example:
  xnodectl events"
    )]
    Events(AgentArgs),
    /// The mesh as this node sees it, and signed pushes to other nodes.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// The owner's fleet: admit nodes (one by one or with a join key), revoke them,
    /// and see who is in.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Make and inspect owner keys, which sign the specs pushed to a node.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Encrypt secrets to nodes, for a workload's `credentials`.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Workloads' state directories: list them, and delete a removed workload's.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the spec owner's SSH key, for sshd's AuthorizedKeysCommand.
    #[command(
        after_help = "Prints an authorized_keys line when USER is root and the spec's owner is an
ed25519 key, and nothing otherwise (an Ethereum owner has no SSH key; a node
without a spec file yet has no owner).

Example (sshd_config):
  AuthorizedKeysCommand /run/current-system/sw/bin/xnodectl ssh-keys --user %u
  AuthorizedKeysCommandUser nobody"
    )]
    SshKeys(SshKeysArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:
  xnodectl completions bash > /etc/bash_completion.d/xnodectl")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:
  xnodectl man | man -l -")]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// The members of the mesh, with their state, labels and resources.
    Peers(AgentArgs),
    /// The live providers of a service (or of every service).
    #[command(after_help = "Examples:
  xnodectl mesh services
  xnodectl mesh services web --output json")]
    Services {
        /// The service; every service when left out.
        name: Option<String>,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Sign a spec with the owner's key and send it, through this node, to NODE.
    #[command(
        after_help = "The node accepts it only if KEYFILE is the key of its spec's owner, the
push is newer than the last one it accepted, and it was signed within the last
5 minutes (clocks may differ by as much). It answers at once, then applies the
spec, health-gated; `xnodectl fleet status` shows the outcome, and --wait waits
for it (exit status 1 when the node rolled it back or kept it unhealthy).

Example:
  xnodectl mesh push --key owner.key n2 spec.json
  xnodectl mesh push --wait --key owner.key n2 spec.json"
    )]
    Push {
        /// Wait for the apply's outcome, as the node's heartbeats tell it.
        #[arg(long)]
        wait: bool,
        /// The owner's secret key (see `xnodectl key generate`).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The push's number; it must be above the last the node accepted, and no more
        /// than the time in milliseconds 5 minutes ahead. Default: the time in
        /// milliseconds, which grows by itself.
        #[arg(long)]
        generation: Option<u64>,
        /// The node it is for: its peer id, or its node.name when one live member has
        /// it. The push is signed for that peer id, so no other node can take it.
        #[arg(value_name = "NODE")]
        node: String,
        /// The spec; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        agent: AgentArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Write a join key to FILE (mode 0600, never overwritten): it admits to the
    /// owner's fleet every node started with it, until it expires.
    #[command(
        after_help = "Give the file to new nodes: `xnoded --join-key FILE`, the NixOS option
services.xnode.joinKeyFile, or the install stick. A node admitted with it keeps
its certificate (valid 30 days, renewed while the key lasts), so the file may be
deleted once the nodes have joined. Whoever holds the file can admit nodes:
keep it as secret as the owner key, and short-lived.

Example:
  xnodectl fleet join-key --key owner.key --expires 1d join.key"
    )]
    JoinKey {
        /// The owner's secret key.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// How long it admits nodes: 30d, 12h, 90min.
        #[arg(long, value_name = "DURATION")]
        expires: String,
        /// Where to write it.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Sign a membership certificate for each node and deliver it through this node.
    #[command(
        after_help = "Each node is named NAME=PEER_ID: the certificate binds the name to the peer, and
no other member may go by it. A peer is this node or one connected to it (`xnodectl
status` shows a node's name and peer id). Example:
  xnodectl fleet admit --key owner.key n2=12D3KooW..."
    )]
    Admit {
        /// The owner's secret key.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// How long the certificates last.
        #[arg(long, value_name = "DURATION", default_value = "365d")]
        expires: String,
        /// The nodes to admit, each as its node name and peer id.
        #[arg(value_name = "NAME=PEER_ID", required = true)]
        peers: Vec<String>,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Revoke a member, for good: every member keeps the revocation.
    Revoke {
        /// The owner's secret key.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The peer to revoke.
        #[arg(value_name = "PEER_ID")]
        peer: String,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// The fleet's members as this node sees them.
    Members(AgentArgs),
    /// Sign a fleet spec with the owner's key and hand it to this node: every member
    /// fetches it and moves to it in turn, canaries first.
    #[command(
        after_help = "Every member accepts it only if KEYFILE is its fleet owner's key and the
generation is above the last fleet spec accepted; this node also wants it signed
within the last 5 minutes. The answer comes at once; `xnodectl fleet status` shows
the rollout.

Example:
  xnodectl fleet apply --key owner.key fleet.json"
    )]
    Apply {
        /// The owner's secret key.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The fleet spec's number; above the last accepted. Default: the time in
        /// milliseconds, which grows by itself.
        #[arg(long)]
        generation: Option<u64>,
        /// The fleet spec; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Show the newest fleet spec this node accepted: its generation, hash and content.
    Spec(AgentArgs),
    /// Show the whole fleet: every member's generations and health, the rollout, and
    /// where each mesh workload runs.
    #[command(after_help = "Examples:
  xnodectl fleet status
  xnodectl fleet status --watch
  xnodectl fleet status --output json")]
    Status {
        #[command(flatten)]
        agent: AgentArgs,
        /// Redraw every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Print the JSON Schema of the fleet spec, for editors.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new owner key in FILE (mode 0600) and print its public identity.
    #[command(after_help = "Put the printed identity in the spec's node.owner.

Examples:
  xnodectl key generate owner.key
  xnodectl key generate --type eth owner-eth.key")]
    Generate {
        /// Where to write the secret key; an existing file is never overwritten.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The kind of key: ed25519, or an Ethereum account (signs EIP-712 typed data).
        #[arg(long = "type", value_enum, default_value_t = KeyType::Ed25519)]
        kind: KeyType,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Print the public identity of the key in FILE, for a spec's node.owner.
    Show {
        /// The secret key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyType {
    /// An ed25519 key (also an SSH key for the node's root).
    Ed25519,
    /// A secp256k1 key, identified by its Ethereum address.
    Eth,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For programs.
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Encrypt a secret to one or more nodes and print it as an age file.
    #[command(after_help = "Put what it prints in a workload's credentials as
{\"age\": \"...\"} (with --json it prints that JSON string, ready to paste). Only the
nodes named can decrypt it; the workload reads it from $CREDENTIALS_DIRECTORY/<name>.

Examples:
  xnodectl secret encrypt --to 12D3KooW... db-password.txt
  printf %s \"$TOKEN\" | xnodectl secret encrypt --json --to 12D3KooWA... --to 12D3KooWB...")]
    Encrypt {
        /// A node's peer id (`xnodectl mesh members`, or `status` on the node);
        /// repeat for every node that runs the workload.
        #[arg(long, value_name = "PEER_ID", required = true)]
        to: Vec<String>,
        /// Print a JSON string rather than the armored text.
        #[arg(long)]
        json: bool,
        /// The file holding the secret; standard input when absent or `-`.
        #[arg(value_name = "FILE", default_value = "-")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every state directory on the node, its size, and whether its workload is in
    /// the spec.
    List(AgentArgs),
    /// Delete the state directory of a workload no longer in the spec, for good.
    Prune {
        /// The workload.
        workload: String,
        #[command(flatten)]
        agent: AgentArgs,
    },
}
