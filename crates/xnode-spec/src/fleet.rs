//! The owner's signed statements that make a fleet: a membership certificate (this peer
//! is in my fleet until then), a join key's delegation (this key may admit nodes until
//! then) and a revocation (this peer is out, for good). Pure: signing, reading and the
//! checks every statement passes before a node believes it.
//!
//! Each signature covers a short text naming what it is, so a signature made for one
//! kind of statement never passes as another (nor as a push).

use serde::{Deserialize, Serialize};

use crate::Owner;
use crate::keys::{self, KeyKind, OwnerKey};

/// The statements' format version.
pub const VERSION: u64 = 1;

/// How long a certificate a join key issues lives. A join key issues none after its
/// own expiry, so what it issued never outlives the key's expiry plus this: a node
/// admitted on a join key's last day stays a member this long, and is renewed before
/// then only while the join key is there and valid.
pub const JOIN_CERT_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// The longest text accepted in any field of a statement: a signature of either kind,
/// an owner or a peer id fits with room to spare.
const MAX_FIELD: usize = 256;

/// "This peer is in the owner's fleet until `expires`." Signed by the owner, or by a
/// join key the owner delegated to (then `delegation` says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Always [`VERSION`].
    pub v: u64,
    /// The fleet: its owner.
    pub owner: Owner,
    /// The member's peer id.
    pub peer: String,
    /// The member's node name: no other member may call itself so. (Absent only in
    /// certificates from before names were bound; those name nobody.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it was issued, seconds since the Unix epoch.
    pub issued: u64,
    /// Seconds since the Unix epoch.
    pub expires: u64,
    /// Present when a join key signed it: the owner's word that the key may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
    /// The owner's (or the join key's) signature over [`Certificate::payload`].
    pub signature: String,
}

/// "This key may admit nodes to my fleet until `expires`." Signed by the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The join key's public half (always ed25519).
    pub key: Owner,
    /// Seconds since the Unix epoch.
    pub expires: u64,
    /// The owner's signature over [`Delegation::payload`].
    pub signature: String,
}

/// "This peer is out of my fleet, for good." Signed by the owner. A peer id once
/// revoked is never a member again: a node the owner wants back makes a new identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Always [`VERSION`].
    pub v: u64,
    /// The fleet.
    pub owner: Owner,
    /// The peer revoked.
    pub peer: String,
    /// When it was signed, seconds since the Unix epoch (for the record only).
    pub at: u64,
    /// The owner's signature over [`Revocation::payload`].
    pub signature: String,
}

/// A join key as its file holds it: a fresh key pair and the owner's delegation to it.
/// Whoever holds the file can admit nodes until the delegation expires.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinKey {
    /// Always [`VERSION`].
    pub v: u64,
    /// The fleet.
    pub owner: Owner,
    /// The key's secret, as an owner key file holds one.
    pub secret: String,
    /// The owner's delegation to the key's public half.
    pub delegation: Delegation,
}

impl std::fmt::Debug for JoinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(
            f,
            "JoinKey({}, expires {})",
            self.owner, self.delegation.expires
        )
    }
}

/// Why a statement was not believed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Not a statement of this kind at all.
    #[error("not a {what}: {why}")]
    Malformed {
        /// Which kind was expected.
        what: &'static str,
        /// Why not.
        why: String,
    },
    /// A version this node does not know.
    #[error("format version {0} is not supported (this node speaks {VERSION})")]
    Version(u64),
    /// For another fleet.
    #[error("it is for the fleet of {got}, not of {fleet}")]
    WrongOwner {
        /// Whose it says it is.
        got: String,
        /// This fleet's owner.
        fleet: String,
    },
    /// For another peer than the one presenting it.
    #[error("it names peer {got}, but {sender} presented it")]
    WrongPeer {
        /// The peer it names.
        got: String,
        /// Who presented it.
        sender: String,
    },
    /// The signature is not the owner's (or the join key's).
    #[error("the signature is not {0}'s over it (forged or altered)")]
    Forged(String),
    /// A join key's certificate that names no node: it could stand for any.
    #[error("a join key signed it, and it names no node (a join key's certificates must)")]
    Unnamed,
    /// Past its expiry.
    #[error("it expired at {at} (now {now})")]
    Expired {
        /// Its expiry.
        at: u64,
        /// The clock.
        now: u64,
    },
    /// Issued by a join key after the key expired.
    #[error("its join key expired at {at}, before it was issued ({issued})")]
    JoinKeyExpired {
        /// The join key's expiry.
        at: u64,
        /// When it was issued (or, for a new one, now).
        issued: u64,
    },
    /// The join key's delegation is not the owner's.
    #[error("its join key's delegation is not signed by {0}")]
    JoinKeyForged(String),
    /// A join key's certificate that lives longer than a join key may give.
    #[error(
        "it expires at {at}, later than its join key allows ({limit}: {JOIN_CERT_LIFETIME_SECS} s after it was issued)"
    )]
    Outlives {
        /// Its expiry.
        at: u64,
        /// The latest the join key allows.
        limit: u64,
    },
    /// The owner revoked the peer.
    #[error("the owner revoked peer {0}")]
    Revoked(String),
}

fn bounded(what: &'static str, fields: &[&str]) -> Result<(), Refused> {
    match fields.iter().find(|f| f.len() > MAX_FIELD) {
        Some(f) => Err(Refused::Malformed {
            what,
            why: format!("a field of {} bytes (at most {MAX_FIELD})", f.len()),
        }),
        None => Ok(()),
    }
}

impl Certificate {
    /// What the issuer signs. A certificate that names its node says so in its kind
    /// (`xnode-member/2`), so no signature over the one passes for the other.
    pub fn payload(
        owner: &Owner,
        peer: &str,
        node: Option<&str>,
        issued: u64,
        expires: u64,
    ) -> Vec<u8> {
        match node {
            Some(node) => format!(
                "xnode-member/2\nowner {owner}\npeer {peer}\nnode {node}\nissued {issued}\nexpires {expires}\n"
            ),
            None => format!(
                "xnode-member/1\nowner {owner}\npeer {peer}\nissued {issued}\nexpires {expires}\n"
            ),
        }
        .into_bytes()
    }

    /// The owner admits `peer`, called `node`, from `issued` until `expires`.
    pub fn issue(
        owner: &OwnerKey,
        peer: &str,
        node: &str,
        issued: u64,
        expires: u64,
    ) -> Certificate {
        let fleet = owner.owner();
        Certificate {
            v: VERSION,
            owner: fleet,
            peer: peer.to_owned(),
            node: Some(node.to_owned()),
            issued,
            expires,
            delegation: None,
            signature: owner.sign(&Certificate::payload(
                &fleet,
                peer,
                Some(node),
                issued,
                expires,
            )),
        }
    }

    /// Checks it for the fleet of `owner`, presented by `sender`, at `now`: every rule
    /// must hold. (Revocations are the caller's: see [`Refused::Revoked`].)
    pub fn check(&self, owner: &Owner, sender: &str, now: u64) -> Result<(), Refused> {
        if self.v != VERSION {
            return Err(Refused::Version(self.v));
        }
        bounded("certificate", &[&self.peer, &self.signature])?;
        if let Some(node) = &self.node {
            crate::rules::dns_label(node).map_err(|why| Refused::Malformed {
                what: "certificate",
                why,
            })?;
        }
        if self.owner != *owner {
            return Err(Refused::WrongOwner {
                got: self.owner.to_string(),
                fleet: owner.to_string(),
            });
        }
        if self.peer != sender {
            return Err(Refused::WrongPeer {
                got: self.peer.clone(),
                sender: sender.to_owned(),
            });
        }
        let payload = Certificate::payload(
            owner,
            &self.peer,
            self.node.as_deref(),
            self.issued,
            self.expires,
        );
        let signer = match &self.delegation {
            None => *owner,
            Some(d) => {
                d.check(owner)?;
                if self.node.is_none() {
                    return Err(Refused::Unnamed);
                }
                if self.issued > d.expires {
                    return Err(Refused::JoinKeyExpired {
                        at: d.expires,
                        issued: self.issued,
                    });
                }
                let limit = self.issued.saturating_add(JOIN_CERT_LIFETIME_SECS);
                if self.expires > limit {
                    return Err(Refused::Outlives {
                        at: self.expires,
                        limit,
                    });
                }
                d.key
            }
        };
        if !keys::verify(&signer, &payload, &self.signature) {
            return Err(Refused::Forged(signer.to_string()));
        }
        if self.expires <= now {
            return Err(Refused::Expired {
                at: self.expires,
                now,
            });
        }
        Ok(())
    }

    /// Who admitted it, for people: the owner, or a join key.
    pub fn admitted_by(&self) -> String {
        match &self.delegation {
            None => "owner".into(),
            Some(d) => format!("join key {}", d.key),
        }
    }
}

impl Delegation {
    /// What the owner signs.
    pub fn payload(owner: &Owner, key: &Owner, expires: u64) -> Vec<u8> {
        format!("xnode-join-key/1\nowner {owner}\nkey {key}\nexpires {expires}\n").into_bytes()
    }

    fn check(&self, owner: &Owner) -> Result<(), Refused> {
        bounded("join key", &[&self.signature])?;
        if !keys::verify(
            owner,
            &Delegation::payload(owner, &self.key, self.expires),
            &self.signature,
        ) {
            return Err(Refused::JoinKeyForged(owner.to_string()));
        }
        Ok(())
    }
}

impl JoinKey {
    /// A fresh key that may admit nodes to `owner`'s fleet until `expires`.
    pub fn create(owner: &OwnerKey, expires: u64) -> Result<JoinKey, keys::KeyError> {
        let key = OwnerKey::generate(KeyKind::Ed25519)?;
        let fleet = owner.owner();
        let public = key.owner();
        Ok(JoinKey {
            v: VERSION,
            owner: fleet,
            secret: key.to_secret_string(),
            delegation: Delegation {
                key: public,
                expires,
                signature: owner.sign(&Delegation::payload(&fleet, &public, expires)),
            },
        })
    }

    /// Reads a join key file's text, and checks the delegation is the owner's.
    pub fn parse(text: &str) -> Result<JoinKey, Refused> {
        let malformed = |why: String| Refused::Malformed {
            what: "join key",
            why,
        };
        let key: JoinKey =
            crate::json::from_slice(text.as_bytes()).map_err(|e| malformed(e.to_string()))?;
        if key.v != VERSION {
            return Err(Refused::Version(key.v));
        }
        let secret = OwnerKey::parse(&key.secret).map_err(|e| malformed(e.to_string()))?;
        if secret.owner() != key.delegation.key {
            return Err(malformed(
                "its secret is not the key its delegation names".into(),
            ));
        }
        key.delegation.check(&key.owner)?;
        Ok(key)
    }

    /// Admits `peer`, called `node`, until [`JOIN_CERT_LIFETIME_SECS`] from `now`, or
    /// refuses when the key has expired.
    pub fn admit(&self, peer: &str, node: &str, now: u64) -> Result<Certificate, Refused> {
        if self.delegation.expires <= now {
            return Err(Refused::JoinKeyExpired {
                at: self.delegation.expires,
                issued: now,
            });
        }
        let key = OwnerKey::parse(&self.secret).map_err(|e| Refused::Malformed {
            what: "join key",
            why: e.to_string(),
        })?;
        let expires = now.saturating_add(JOIN_CERT_LIFETIME_SECS);
        Ok(Certificate {
            v: VERSION,
            owner: self.owner,
            peer: peer.to_owned(),
            node: Some(node.to_owned()),
            issued: now,
            expires,
            delegation: Some(self.delegation.clone()),
            signature: key.sign(&Certificate::payload(
                &self.owner,
                peer,
                Some(node),
                now,
                expires,
            )),
        })
    }
}

impl Revocation {
    /// What the owner signs.
    pub fn payload(owner: &Owner, peer: &str) -> Vec<u8> {
        format!("xnode-revoke/1\nowner {owner}\npeer {peer}\n").into_bytes()
    }

    /// The owner revokes `peer`.
    pub fn issue(owner: &OwnerKey, peer: &str, at: u64) -> Revocation {
        let fleet = owner.owner();
        Revocation {
            v: VERSION,
            owner: fleet,
            peer: peer.to_owned(),
            at,
            signature: owner.sign(&Revocation::payload(&fleet, peer)),
        }
    }

    /// Checks it is `owner`'s.
    pub fn check(&self, owner: &Owner) -> Result<(), Refused> {
        if self.v != VERSION {
            return Err(Refused::Version(self.v));
        }
        bounded("revocation", &[&self.peer, &self.signature])?;
        if self.owner != *owner {
            return Err(Refused::WrongOwner {
                got: self.owner.to_string(),
                fleet: owner.to_string(),
            });
        }
        if !keys::verify(
            owner,
            &Revocation::payload(owner, &self.peer),
            &self.signature,
        ) {
            return Err(Refused::Forged(owner.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
