//! The lab's fleets: one owner for every lab node, a second owner for tests of two
//! fleets in one mesh, and a join key of each in every container, so a lab mesh is a
//! fleet as a new user's first mesh is.

use xnode_spec::fleet::JoinKey;
use xnode_spec::keys::OwnerKey;

/// Where a lab node finds the join key of [`owner`].
pub const JOIN_KEY_PATH: &str = "/etc/xnode/join.key";

/// Where a lab node finds the join key of [`second_owner`].
pub const SECOND_JOIN_KEY_PATH: &str = "/etc/xnode/join-second.key";

/// xnoded's flag that admits a lab node to the lab owner's fleet.
pub const JOIN_FLAG: &str = "--join-key /etc/xnode/join.key";

fn fixed(secret: &str) -> OwnerKey {
    OwnerKey::parse(secret).unwrap_or_else(|_| unreachable!("a fixed, valid key"))
}

/// The lab's owner: a fixed key, for test hosts only.
pub fn owner() -> OwnerKey {
    fixed("ed25519-secret:McafWEPjy2bG3Q70AXQ0mkWOp1fCmM2xlBJd3zFDMpo=")
}

/// Another owner, whose fleet shares the lab's mesh.
pub fn second_owner() -> OwnerKey {
    fixed("ed25519-secret:yzZmS5vkVVXDz6fsSayU3FFz44UWYW/fe32SFsxca2A=")
}

/// A join key of `owner`, valid for a day: the text of its file.
pub fn join_key_text(owner: &OwnerKey) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let key = JoinKey::create(owner, now + 24 * 3600).map_err(|e| e.to_string())?;
    serde_json::to_string(&key).map_err(|e| e.to_string())
}
