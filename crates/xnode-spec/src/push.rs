//! Signed pushes: a new spec for one node, signed by that node's owner, so that any mesh
//! member can carry it and none can forge, replay or redirect it.
//!
//! The signature covers a short text naming the node by its peer id (node names are
//! chosen by the nodes themselves; a peer id is a key only that node holds), the push's
//! generation, its timestamp and the spec's content hash (not its JSON bytes, so
//! re-encoding on the way does not matter). A node accepts a push only if every rule of
//! [`accept`] holds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::{self, OwnerKey};
use crate::{Invalid, SpecHash, Validated};

/// The envelope's format version.
pub const VERSION: u64 = 2;

/// The largest push a node reads: a hundred times the largest example spec. A spec
/// larger than this is applied on the node itself, not carried by the mesh.
pub const MAX_BYTES: usize = 1 << 20;

/// How far a push's timestamp may lie from the node's clock, either way, in seconds.
/// Long enough for clocks a little apart and a slow mesh; short enough that a push
/// captured today cannot be replayed to a node that has lost its state next week.
pub const WINDOW_SECS: u64 = 300;

/// A spec pushed to one node, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// Always [`VERSION`].
    pub v: u64,
    /// The node it is for: its peer id.
    pub peer: String,
    /// The owner's counter for this node: each push must be above the last accepted,
    /// and not beyond [`generation_limit`].
    pub generation: u64,
    /// When it was signed, in seconds since the Unix epoch.
    pub timestamp: u64,
    /// The new spec.
    pub spec: Value,
    /// The owner's signature over [`payload`]: `ed25519:…` or `eth:0x…` (EIP-712).
    pub signature: String,
}

/// What the owner signs.
pub fn payload(peer: &str, generation: u64, timestamp: u64, spec: &SpecHash) -> Vec<u8> {
    format!(
        "xnode-push/2\npeer {peer}\ngeneration {generation}\ntimestamp {timestamp}\nspec {spec}\n"
    )
    .into_bytes()
}

/// The highest generation a node takes at `now` (seconds since the Unix epoch): the
/// time in milliseconds (what `xnodectl` counts in by default) a window ahead. A
/// generation beyond it would lock out every later push, so it is refused; a small
/// counter (1, 2, 3…) is always below it.
pub fn generation_limit(now: u64) -> u64 {
    now.saturating_add(WINDOW_SECS).saturating_mul(1000)
}

/// Signs `spec` (already validated) for the node with peer id `peer` with the owner's
/// `key`.
pub fn sign(key: &OwnerKey, peer: &str, generation: u64, timestamp: u64, spec: Value) -> Push {
    let hash = crate::hash_value(&spec);
    Push {
        v: VERSION,
        peer: peer.to_owned(),
        generation,
        timestamp,
        signature: key.sign(&payload(peer, generation, timestamp, &hash)),
        spec,
    }
}

/// What the receiving node knows when a push arrives.
#[derive(Debug, Clone)]
pub struct Receiver<'a> {
    /// The node's peer id: a push names it.
    pub peer: &'a str,
    /// The node's current spec: its name and owner decide.
    pub current: &'a crate::Spec,
    /// The generation of the last push it accepted (0 if none).
    pub last_generation: u64,
    /// Its clock, in seconds since the Unix epoch.
    pub now: u64,
}

/// Why a push was turned down: each is logged with the push's origin.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// Not a push envelope at all.
    #[error("not a push: {0}")]
    Malformed(String),
    /// A version this node does not know.
    #[error("push format version {0} is not supported (this node speaks {VERSION})")]
    Version(u64),
    /// Larger than any node reads.
    #[error("the push is {0} bytes; at most {MAX_BYTES} are read")]
    TooLarge(usize),
    /// Meant for another node.
    #[error("the push is for peer {got}, this node is {this}")]
    WrongNode {
        /// The peer id named in the push.
        got: String,
        /// This node's.
        this: String,
    },
    /// The node has no owner, so nobody may push to it.
    #[error("this node's spec names no owner, so it accepts no pushes")]
    NoOwner,
    /// The signature is not the owner's over this push.
    #[error(
        "the signature is not {owner}'s over this push (forged, altered, or signed by another key)"
    )]
    NotOwner {
        /// The node's owner.
        owner: String,
    },
    /// Not newer than what the node has: a replay or an old push.
    #[error(
        "generation {got} is not newer than {last}, the last accepted (a replay or a stale push)"
    )]
    Stale {
        /// The push's generation.
        got: u64,
        /// The last accepted.
        last: u64,
    },
    /// A generation so far ahead that no later push could follow it.
    #[error(
        "generation {got} is beyond {limit}, the clock's time in milliseconds {WINDOW_SECS} s ahead: it would lock out every later push"
    )]
    FarFuture {
        /// The push's generation.
        got: u64,
        /// The highest this node takes now.
        limit: u64,
    },
    /// Signed too long ago, or in the future.
    #[error("timestamp {got} is more than {WINDOW_SECS} s from this node's clock ({now})")]
    Clock {
        /// The push's timestamp.
        got: u64,
        /// The node's clock.
        now: u64,
    },
    /// The spec itself is not valid.
    #[error("the pushed spec is not valid: {0}")]
    InvalidSpec(Invalid),
    /// The spec describes another node.
    #[error("the pushed spec is for node {0:?}, not this one")]
    SpecForAnotherNode(String),
}

/// A push that passed every rule: the envelope, and its spec validated.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The push as it came.
    pub push: Push,
    /// Its spec.
    pub spec: Validated,
}

/// Reads and checks a push. Every rule must hold, checked in this order so that the
/// cheapest refusals come first and the owner's signature before anything that trusts
/// the content.
pub fn accept(bytes: &[u8], receiver: &Receiver<'_>) -> Result<Accepted, Rejected> {
    if bytes.len() > MAX_BYTES {
        return Err(Rejected::TooLarge(bytes.len()));
    }
    let push: Push =
        crate::json::from_slice(bytes).map_err(|e| Rejected::Malformed(e.to_string()))?;
    if push.v != VERSION {
        return Err(Rejected::Version(push.v));
    }
    if push.peer != receiver.peer {
        return Err(Rejected::WrongNode {
            got: push.peer,
            this: receiver.peer.to_owned(),
        });
    }
    let owner = receiver.current.node.owner.ok_or(Rejected::NoOwner)?;
    let hash = crate::hash_value(&push.spec);
    let signed = payload(&push.peer, push.generation, push.timestamp, &hash);
    if !keys::verify(&owner, &signed, &push.signature) {
        return Err(Rejected::NotOwner {
            owner: owner.to_string(),
        });
    }
    if push.generation <= receiver.last_generation {
        return Err(Rejected::Stale {
            got: push.generation,
            last: receiver.last_generation,
        });
    }
    let limit = generation_limit(receiver.now);
    if push.generation > limit {
        return Err(Rejected::FarFuture {
            got: push.generation,
            limit,
        });
    }
    if push.timestamp.abs_diff(receiver.now) > WINDOW_SECS {
        return Err(Rejected::Clock {
            got: push.timestamp,
            now: receiver.now,
        });
    }
    let validated = crate::parse_value(&push.spec).map_err(Rejected::InvalidSpec)?;
    let this = &receiver.current.node.name;
    if &validated.spec.node.name != this {
        return Err(Rejected::SpecForAnotherNode(validated.spec.node.name));
    }
    Ok(Accepted {
        push,
        spec: validated,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::keys::KeyKind;

    const NOW: u64 = 1_800_000_000;
    const N1: &str = "12D3KooWN1";

    fn spec_for(node: &str, owner: &OwnerKey) -> Value {
        json!({"version": 1, "node": {"name": node, "owner": owner.owner().to_string()},
               "workloads": {"web": {"command": ["/bin/sleep", "infinity"]}}})
    }

    fn current(owner: Option<&OwnerKey>) -> crate::Spec {
        let mut spec = json!({"version": 1, "node": {"name": "n1"}});
        if let Some(key) = owner {
            spec["node"]["owner"] = json!(key.owner().to_string());
        }
        crate::parse_value(&spec).unwrap().spec
    }

    fn bytes(push: &Push) -> Vec<u8> {
        serde_json::to_vec(push).unwrap()
    }

    #[test]
    fn the_owners_push_is_accepted_and_everything_else_is_rejected_with_its_reason() {
        for kind in [KeyKind::Ed25519, KeyKind::Eth] {
            let owner = OwnerKey::generate(kind).unwrap();
            let stranger = OwnerKey::generate(kind).unwrap();
            let now = current(Some(&owner));
            let ownerless = current(None);
            let receiver = Receiver {
                peer: N1,
                current: &now,
                last_generation: 4,
                now: NOW,
            };
            let good = sign(&owner, N1, 5, NOW - 10, spec_for("n1", &owner));

            let accepted = accept(&bytes(&good), &receiver).unwrap();
            assert_eq!(accepted.spec.hash, crate::hash_value(&good.spec));
            assert_eq!(accepted.push, good);

            let mut altered = good.clone();
            altered.spec["workloads"]["web"]["command"][0] = json!("/bin/evil");
            let mut renumbered = good.clone();
            renumbered.generation = 9;
            let mut redated = good.clone();
            redated.timestamp = NOW;
            let mut redirected = good.clone();
            redirected.peer = "12D3KooWN2".into();
            let mut version = good.clone();
            version.v = 3;
            let signed = |key: &OwnerKey, timestamp: u64, spec: Value| {
                bytes(&sign(key, N1, 5, timestamp, spec))
            };
            let far = generation_limit(NOW) + 1;
            let far_future = bytes(&sign(&owner, N1, far, NOW, spec_for("n1", &owner)));
            let max = bytes(&sign(&owner, N1, u64::MAX, NOW, spec_for("n1", &owner)));
            let mut twice = bytes(&good);
            twice.pop();
            twice.extend_from_slice(br#","generation":99}"#);
            let mut huge = good.clone();
            huge.spec["padding"] = json!("x".repeat(MAX_BYTES));
            let late = NOW + WINDOW_SECS + 1;
            let invalid = json!({"version": 1, "node": {"name": "n1"}, "workloads": {"w": {}}});
            let extra = br#"{"v":2,"peer":"12D3KooWN1","generation":5,"timestamp":1,"spec":{},
                            "signature":"","extra":1}"#;
            let r = || receiver.clone();
            let cases: Vec<(&str, Vec<u8>, Receiver<'_>, &str)> = vec![
                ("forged: spec", bytes(&altered), r(), "not"),
                ("forged: generation", bytes(&renumbered), r(), "not"),
                ("forged: timestamp", bytes(&redated), r(), "not"),
                (
                    "another key",
                    signed(&stranger, NOW, spec_for("n1", &owner)),
                    r(),
                    "not",
                ),
                (
                    "replayed",
                    bytes(&good),
                    Receiver {
                        last_generation: 5,
                        ..r()
                    },
                    "not newer",
                ),
                (
                    "stale",
                    bytes(&good),
                    Receiver {
                        last_generation: 7,
                        ..r()
                    },
                    "not newer",
                ),
                (
                    "too old",
                    bytes(&good),
                    Receiver { now: late, ..r() },
                    "node's clock",
                ),
                (
                    "future",
                    signed(&owner, late, spec_for("n1", &owner)),
                    r(),
                    "node's clock",
                ),
                (
                    "elsewhere",
                    bytes(&redirected),
                    r(),
                    "is for peer 12D3KooWN2",
                ),
                ("far future", far_future, r(), "lock out"),
                ("u64::MAX", max, r(), "lock out"),
                ("a key twice", twice, r(), "appears twice"),
                ("too large", bytes(&huge), r(), "at most 1048576"),
                (
                    "other spec",
                    signed(&owner, NOW, spec_for("n2", &owner)),
                    r(),
                    "not this one",
                ),
                (
                    "invalid spec",
                    signed(&owner, NOW, invalid),
                    r(),
                    "not valid",
                ),
                (
                    "no owner",
                    bytes(&good),
                    Receiver {
                        current: &ownerless,
                        ..r()
                    },
                    "no owner",
                ),
                ("version", bytes(&version), r(), "version 3"),
                ("not JSON", b"\xff\xfe".to_vec(), r(), "not a push"),
                ("unknown field", extra.to_vec(), r(), "unknown field"),
            ];
            for (what, push, receiver, reason) in cases {
                let err = accept(&push, &receiver).expect_err(what).to_string();
                assert!(err.contains(reason), "{kind:?} {what}: {err}");
            }
        }
    }

    proptest! {
        #[test]
        fn a_push_damaged_anywhere_is_never_taken_for_another_spec(
            at in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let owner = OwnerKey::parse(
                "ed25519-secret:nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
            ).unwrap();
            let now = current(Some(&owner));
            let receiver = Receiver { peer: N1, current: &now, last_generation: 0, now: NOW };
            let good = sign(&owner, N1, 1, NOW, spec_for("n1", &owner));
            let mut damaged = bytes(&good);
            let i = at.index(damaged.len());
            damaged[i] = byte;
            if let Ok(accepted) = accept(&damaged, &receiver) {
                prop_assert_eq!(accepted.spec.hash, crate::hash_value(&good.spec));
            }
        }

        #[test]
        fn arbitrary_bytes_are_rejected_without_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let now = current(None);
            let receiver = Receiver { peer: N1, current: &now, last_generation: 0, now: NOW };
            prop_assert!(accept(&data, &receiver).is_err());
        }
    }
}
