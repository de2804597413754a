//! Signing in over the network (xnoded's TCP listener): a challenge the owner signs
//! buys a session, kept in an `HttpOnly` cookie.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a challenge is asked for (`POST`).
pub const CHALLENGE_PATH: &str = "/v1/session/challenge";

/// Where a signed challenge is sent (`POST`), and a session ended (`DELETE`).
pub const PATH: &str = "/v1/session";

/// The cookie that carries a session. `__Host-` makes browsers keep it to this host
/// (no `Domain`, `Path=/`, `Secure`), so no other site's cookie can stand in for it.
pub const COOKIE: &str = "__Host-xnode_session";

/// A challenge to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Challenge {
    /// The text to sign as it is: it names the node (its certificate's fingerprint),
    /// a nonce and when it expires.
    pub challenge: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expires: u64,
}

/// A challenge signed by the node's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The challenge, as it was handed out.
    pub challenge: String,
    /// The owner's signature over it: `ed25519:<base64>`, or for an `eth:` owner a
    /// wallet's `personal_sign` (`0x<r s v>`).
    pub signature: String,
}

/// A session opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SignedIn {
    /// When it ends, in seconds since the Unix epoch.
    pub expires: u64,
}
