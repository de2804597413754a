//! A fleet spec as it travels: signed by the fleet's owner with a generation and a
//! timestamp, as a push is ([`crate::push`]), so any member can carry it and none can
//! forge it, replay an old one over a newer, or pass one fleet's spec to another.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ValidatedFleet;
use crate::keys::{self, OwnerKey};
use crate::push::{MAX_BYTES, WINDOW_SECS, generation_limit};
use crate::{Invalid, Owner, SpecHash};

/// The envelope's format version.
pub const VERSION: u64 = 1;

/// A fleet spec signed by the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedFleetSpec {
    /// Always [`VERSION`].
    pub v: u64,
    /// The fleet: its owner.
    pub owner: String,
    /// The owner's counter for the fleet: each must be above the last accepted.
    pub generation: u64,
    /// When it was signed, in seconds since the Unix epoch.
    pub timestamp: u64,
    /// The fleet spec.
    pub spec: Value,
    /// The owner's signature over [`payload`].
    pub signature: String,
}

/// What the owner signs. It names what it is, so no push or certificate signature
/// passes for it.
pub fn payload(owner: &str, generation: u64, timestamp: u64, spec: &SpecHash) -> Vec<u8> {
    format!(
        "xnode-fleet-spec/1\nowner {owner}\ngeneration {generation}\ntimestamp {timestamp}\nspec {spec}\n"
    )
    .into_bytes()
}

/// Signs `spec` (already validated) with the owner's `key`.
pub fn sign(key: &OwnerKey, generation: u64, timestamp: u64, spec: Value) -> SignedFleetSpec {
    let owner = key.owner().to_string();
    let hash = crate::hash_value(&spec);
    SignedFleetSpec {
        v: VERSION,
        signature: key.sign(&payload(&owner, generation, timestamp, &hash)),
        owner,
        generation,
        timestamp,
        spec,
    }
}

/// What the receiving member knows.
#[derive(Debug, Clone, Copy)]
pub struct Receiver<'a> {
    /// Its fleet's owner.
    pub owner: Option<&'a Owner>,
    /// The generation of the last fleet spec it accepted (0 if none).
    pub last_generation: u64,
    /// Its clock, in seconds since the Unix epoch.
    pub now: u64,
    /// Whether it is being published now (handed to the local agent), so must have
    /// been signed within [`WINDOW_SECS`]. A member that catches up from its peers
    /// takes older ones: it was away when they were published.
    pub fresh: bool,
}

/// Why a fleet spec was turned down.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// Not an envelope at all.
    #[error("not a signed fleet spec: {0}")]
    Malformed(String),
    /// A version this node does not know.
    #[error("fleet spec envelope version {0} is not supported (this node reads {VERSION})")]
    Version(u64),
    /// Larger than any node reads.
    #[error("the fleet spec is {0} bytes; at most {MAX_BYTES} are read")]
    TooLarge(usize),
    /// The node has no owner, so it is in no fleet.
    #[error("this node's spec names no owner, so it is in no fleet")]
    NoOwner,
    /// Signed for another fleet.
    #[error("the fleet spec is for the fleet of {got}, this node's owner is {owner}")]
    WrongFleet {
        /// The owner it names.
        got: String,
        /// This node's.
        owner: String,
    },
    /// The signature is not the owner's over it.
    #[error(
        "the signature is not {owner}'s over this fleet spec (forged, altered, or signed by another key)"
    )]
    NotOwner {
        /// The fleet's owner.
        owner: String,
    },
    /// Not newer than the one the node has.
    #[error(
        "generation {got} is not newer than {last}, the fleet spec in force (a replay or a stale spec)"
    )]
    Stale {
        /// Its generation.
        got: u64,
        /// The last accepted.
        last: u64,
    },
    /// A generation so far ahead that no later one could follow.
    #[error(
        "generation {got} is beyond {limit}, the clock's time in milliseconds {WINDOW_SECS} s ahead: it would lock out every later fleet spec"
    )]
    FarFuture {
        /// Its generation.
        got: u64,
        /// The highest taken now.
        limit: u64,
    },
    /// Signed too long ago (for a publication), or in the future.
    #[error("timestamp {got} is more than {WINDOW_SECS} s from this node's clock ({now})")]
    Clock {
        /// Its timestamp.
        got: u64,
        /// The node's clock.
        now: u64,
    },
    /// The fleet spec itself is not valid.
    #[error("the fleet spec is not valid: {0}")]
    Invalid(Invalid),
}

/// A fleet spec that passed every rule.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The envelope as it came.
    pub envelope: SignedFleetSpec,
    /// Its spec, validated.
    pub spec: ValidatedFleet,
}

/// Reads and checks a signed fleet spec, cheapest refusals first and the owner's
/// signature before anything that trusts the content.
pub fn accept(bytes: &[u8], receiver: &Receiver<'_>) -> Result<Accepted, Rejected> {
    if bytes.len() > MAX_BYTES {
        return Err(Rejected::TooLarge(bytes.len()));
    }
    let envelope: SignedFleetSpec =
        crate::json::from_slice(bytes).map_err(|e| Rejected::Malformed(e.to_string()))?;
    if envelope.v != VERSION {
        return Err(Rejected::Version(envelope.v));
    }
    let owner = receiver.owner.ok_or(Rejected::NoOwner)?;
    if envelope.owner != owner.to_string() {
        return Err(Rejected::WrongFleet {
            got: envelope.owner.chars().take(100).collect(),
            owner: owner.to_string(),
        });
    }
    let hash = crate::hash_value(&envelope.spec);
    let signed = payload(
        &envelope.owner,
        envelope.generation,
        envelope.timestamp,
        &hash,
    );
    if !keys::verify(owner, &signed, &envelope.signature) {
        return Err(Rejected::NotOwner {
            owner: owner.to_string(),
        });
    }
    if envelope.generation <= receiver.last_generation {
        return Err(Rejected::Stale {
            got: envelope.generation,
            last: receiver.last_generation,
        });
    }
    let limit = generation_limit(receiver.now);
    if envelope.generation > limit {
        return Err(Rejected::FarFuture {
            got: envelope.generation,
            limit,
        });
    }
    let future = envelope.timestamp > receiver.now.saturating_add(WINDOW_SECS);
    let old = receiver.fresh && envelope.timestamp < receiver.now.saturating_sub(WINDOW_SECS);
    if future || old {
        return Err(Rejected::Clock {
            got: envelope.timestamp,
            now: receiver.now,
        });
    }
    let spec = super::parse_value(&envelope.spec).map_err(Rejected::Invalid)?;
    Ok(Accepted { envelope, spec })
}
