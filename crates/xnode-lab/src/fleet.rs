//! The lab's fleet: one owner for every lab node, and a join key in every container,
//! so a lab mesh is a fleet as a new user's first mesh is.

use xnode_spec::fleet::JoinKey;
use xnode_spec::keys::OwnerKey;

/// Where a lab node finds its join key.
pub const JOIN_KEY_PATH: &str = "/etc/xnode/join.key";

/// xnoded's flag that admits a lab node to the lab owner's fleet.
pub const JOIN_FLAG: &str = "--join-key /etc/xnode/join.key";

/// The lab's owner: a fixed key, for test hosts only.
pub fn owner() -> OwnerKey {
    OwnerKey::parse("ed25519-secret:McafWEPjy2bG3Q70AXQ0mkWOp1fCmM2xlBJd3zFDMpo=")
        .unwrap_or_else(|_| unreachable!("a fixed, valid key"))
}

/// A join key of [`owner`], valid for a day: the text of its file.
pub fn join_key_text() -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let key = JoinKey::create(&owner(), now + 24 * 3600).map_err(|e| e.to_string())?;
    serde_json::to_string(&key).map_err(|e| e.to_string())
}
