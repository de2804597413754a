//! What a workload is handed besides its command: credentials and state.

use schemars::JsonSchema;
use serde::Serialize;

/// Where a credential comes from. The workload reads it as the file
/// `$CREDENTIALS_DIRECTORY/<name>`, never from its environment, so it stays out of
/// `/proc/<pid>/environ`, unit files and replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Credential {
    /// A file on the node, read by systemd as root when the workload starts
    /// (`LoadCredential=`), e.g. "/run/keys/db-password".
    File(String),
    /// A secret carried in the spec, encrypted with age (ASCII-armored) to the node's
    /// mesh identity: `xnodectl secret encrypt --to <peer id>` makes one. xnoded
    /// decrypts it into a root-only directory under /run, a tmpfs, and systemd hands
    /// it over.
    Age(String),
}
