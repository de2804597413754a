//! Fleets: the nodes an owner admitted. A node is a member only while it holds a valid
//! certificate from its owner ([`xnode_spec::fleet`]); only members' heartbeats are believed, so
//! only members vote, run the fleet's mesh workloads and publish its services.
//!
//! [`Fleet`] is what one node knows of its fleet: its own certificate (renewed with a
//! join key while one is there), and the owner's revocations, kept in the state
//! directory so a restart forgets neither.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tracing::warn;
use xnode_spec::Owner;

pub use xnode_api::mesh::Standing;

pub use xnode_spec::fleet::{
    Certificate, Delegation, JOIN_CERT_LIFETIME_SECS, JoinKey, Refused, Revocation,
};

/// The file a node keeps its fleet state in.
const FLEET_FILE: &str = "fleet.json";

/// At most this many revocations are kept; the oldest go first. Only the owner can
/// make one, so the bound guards against a careless owner, not a stranger.
pub const MAX_REVOCATIONS: usize = 4096;

/// A node stops counting itself a member this long before its certificate expires.
pub const EXPIRY_MARGIN_SECS: u64 = 60;

/// `status` warns this long before the node's certificate expires, when nothing will
/// renew it.
pub const WARN_BEFORE_SECS: u64 = 7 * 24 * 3600;

/// How a node takes part in its owner's fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The fleet: the node's `node.owner`.
    pub owner: Owner,
    /// A join key to admit (and renew) this node with.
    pub join_key: Option<JoinKey>,
}

/// The gossip topic of `owner`'s fleet: each fleet hears only its own members.
pub fn topic(owner: &Owner) -> String {
    let digest = sha2::Sha256::digest(owner.to_string().as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("xnode/fleet/{short}/members/1")
}

/// Of two live members that claim one name, whether the one that holds it here keeps
/// it against `rival` (each with its peer id's bytes). The owner's own admission
/// outranks a join key's. Of two the owner admitted, the earlier (then the lower peer
/// id) keeps it, the same on every node. Of two a join key admitted, the holder keeps
/// it: a join key's holder chooses every field it signs, `issued` too, so nothing in
/// them can rank it; a node holds its own name in its own view.
pub fn keeps_name(holder: (&Certificate, &[u8]), rival: (&Certificate, &[u8])) -> bool {
    match (holder.0.delegation.is_none(), rival.0.delegation.is_none()) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => (holder.0.issued, holder.1) < (rival.0.issued, rival.1),
        (false, false) => true,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    owner: Option<Owner>,
    certificate: Option<Certificate>,
    #[serde(default)]
    revocations: Vec<Revocation>,
}

/// What one node knows of its fleet.
#[derive(Debug)]
pub struct Fleet {
    owner: Owner,
    me: String,
    /// This node's name: its certificate must name it (or, from before names were
    /// bound, name none).
    name: String,
    join_key: Option<JoinKey>,
    own: Option<Certificate>,
    revoked: BTreeMap<String, Revocation>,
    file: PathBuf,
    /// Why the join key last failed, if it did.
    join_error: Option<String>,
}

impl Fleet {
    /// The fleet state of peer `me`, called `name`, as saved in `state_dir` (for this
    /// owner only).
    pub fn load(config: &FleetConfig, me: &str, name: &str, state_dir: &Path) -> Fleet {
        let file = state_dir.join(FLEET_FILE);
        let saved: Saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(file = %file.display(), "the saved fleet state is unusable, starting afresh: {e}");
                Saved::default()
            }),
            Err(_) => Saved::default(),
        };
        let mut fleet = Fleet {
            owner: config.owner,
            me: me.to_owned(),
            name: name.to_owned(),
            join_key: config.join_key.clone(),
            own: None,
            revoked: BTreeMap::new(),
            file,
            join_error: None,
        };
        if saved.owner == Some(config.owner) {
            for r in saved.revocations {
                if r.check(&fleet.owner).is_ok() {
                    fleet.revoked.insert(r.peer.clone(), r);
                }
            }
            // Only if it is still this node's: the state may have been restored
            // beside a new identity.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            fleet.own = saved
                .certificate
                .filter(|c| fleet.admits(me, c, None, now).is_ok() && fleet.names_me(c));
        }
        fleet
    }

    /// The fleet's owner.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Checks `peer`'s certificate. `known` is the one last believed from it: the same
    /// one again needs only its expiry looked at, not its signatures.
    pub fn admits(
        &self,
        peer: &str,
        cert: &Certificate,
        known: Option<&Certificate>,
        now: u64,
    ) -> Result<(), Refused> {
        if self.revoked.contains_key(peer) {
            return Err(Refused::Revoked(peer.to_owned()));
        }
        if known == Some(cert) {
            return match cert.expires > now {
                true => Ok(()),
                false => Err(Refused::Expired {
                    at: cert.expires,
                    now,
                }),
            };
        }
        cert.check(&self.owner, peer, now)
    }

    /// Whether `peer` is revoked.
    pub fn is_revoked(&self, peer: &str) -> bool {
        self.revoked.contains_key(peer)
    }

    /// Takes in the owner's revocations: the peers revoked that were news, or why one
    /// was refused (the valid ones are kept all the same). One already held costs no
    /// signature check, and one of a newer format is passed over; the state is saved
    /// once for the lot. Past [`MAX_REVOCATIONS`] no more are taken (a warning, not a
    /// refusal: which ones a node holds is its own view).
    pub fn revoke(
        &mut self,
        batch: impl IntoIterator<Item = Revocation>,
    ) -> Result<Vec<String>, (Vec<String>, String)> {
        let (mut news, mut refused) = (Vec::new(), None);
        for r in batch {
            if self.revoked.contains_key(&r.peer) {
                continue;
            }
            match r.check(&self.owner) {
                Ok(()) => {}
                Err(Refused::Version(_)) => continue,
                Err(e) => {
                    refused.get_or_insert(e.to_string());
                    continue;
                }
            }
            if r.peer.parse::<libp2p::PeerId>().is_err() {
                refused.get_or_insert(format!("{:?} is not a peer id", r.peer));
                continue;
            }
            if self.revoked.len() >= MAX_REVOCATIONS {
                // Which ones a full node holds is its own view: the sender is not to
                // blame, so this is no refusal, only a loud warning.
                warn!(
                    peer = r.peer,
                    "the fleet holds {MAX_REVOCATIONS} revocations, the most a node keeps: this one is not taken"
                );
                break;
            }
            if r.peer == self.me {
                warn!("the owner revoked this node: it is no longer a member of its fleet");
                self.own = None;
                self.join_key = None;
            }
            news.push(r.peer.clone());
            self.revoked.insert(r.peer.clone(), r);
        }
        if !news.is_empty() {
            self.save();
        }
        match refused {
            None => Ok(news),
            Some(why) => Err((news, why)),
        }
    }

    /// The revocations this node keeps, to pass on.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> {
        self.revoked.values()
    }

    /// Takes a certificate for this node (delivered by the owner). One that expires
    /// before the one held is refused: old certificates are public (every heartbeat
    /// carries one), and nobody may swap a node's for a shorter one. The one held,
    /// delivered again, is taken as it is.
    pub fn take(&mut self, cert: Certificate, now: u64) -> Result<(), String> {
        if !self.names_me(&cert) {
            return Err(format!(
                "the certificate names node {:?}, and this node is {:?}",
                cert.node.as_deref().unwrap_or_default(),
                self.name
            ));
        }
        let me = self.me.clone();
        self.admits(&me, &cert, None, now.saturating_add(EXPIRY_MARGIN_SECS))
            .map_err(|e| e.to_string())?;
        let held = self
            .own
            .as_ref()
            .filter(|c| self.admits(&me, c, Some(c), now).is_ok());
        if held == Some(&cert) {
            return Ok(());
        }
        if let Some(held) = held
            && held.expires > cert.expires
        {
            return Err(format!(
                "this node holds a certificate that lasts longer (until {})",
                held.expires
            ));
        }
        self.own = Some(cert);
        self.save();
        Ok(())
    }

    /// Whether `cert` is for this node's name (a certificate from before names were
    /// bound names none, and is taken while it lasts).
    fn names_me(&self, cert: &Certificate) -> bool {
        cert.node.as_ref().is_none_or(|n| *n == self.name)
    }

    /// This node's certificate while it is valid, renewed first through the join key
    /// when less than half its life is left, or when it names no node.
    pub fn certificate(&mut self, now: u64) -> Option<&Certificate> {
        let due = self.own.as_ref().is_none_or(|c| {
            c.node.is_none() || c.expires.saturating_sub(now) < JOIN_CERT_LIFETIME_SECS / 2
        });
        if due && let Some(key) = &self.join_key {
            let renewed = key
                .admit(&self.me, &self.name, now)
                .and_then(|c| c.check(&self.owner, &self.me, now).map(|()| c));
            match renewed {
                Ok(c) => {
                    self.own = Some(c);
                    self.join_error = None;
                    self.save();
                }
                Err(e) => {
                    if self.join_error.is_none() {
                        warn!("the join key cannot admit this node: {e}");
                    }
                    self.join_error = Some(e.to_string());
                }
            }
        }
        // A node stops counting itself a member a little before its certificate
        // expires, so a clock a little behind the others' never has it run a workload
        // they no longer count it for.
        let me = self.me.clone();
        self.own.as_ref().filter(|c| {
            self.admits(&me, c, Some(c), now.saturating_add(EXPIRY_MARGIN_SECS))
                .is_ok()
        })
    }

    /// Whether this node is a member now, and for how long.
    pub fn standing(&mut self, now: u64) -> Standing {
        let renewable = self
            .join_key
            .as_ref()
            .is_some_and(|k| k.delegation.expires > now);
        let owner = self.owner;
        match self.certificate(now).cloned() {
            Some(c) => Standing::Member {
                warning: (!renewable && c.expires.saturating_sub(now) < WARN_BEFORE_SECS).then(
                    || {
                        format!(
                            "this node's fleet certificate expires in {} h and nothing renews it: admit it again (xnodectl fleet admit) or give it a join key",
                            c.expires.saturating_sub(now) / 3600
                        )
                    },
                ),
                expires: c.expires,
                admitted_by: c.admitted_by(),
            },
            None => Standing::Outside {
                why: if self.is_revoked(&self.me) {
                    format!(
                        "the owner revoked this node's peer id; it holds no mesh workload. To join {owner}'s fleet again it needs a new identity (move mesh.key away) and a new admission"
                    )
                } else if let Some(e) = &self.join_error {
                    format!(
                        "the join key did not admit this node ({e}); it holds no mesh workload until {owner} admits it: xnodectl fleet admit --key OWNER_KEY {}={}",
                        self.name, self.me
                    )
                } else {
                    format!(
                        "{owner} has not admitted this node (or its certificate expired); it holds no mesh workload until then: xnodectl fleet admit --key OWNER_KEY {}={}, or start xnoded with --join-key",
                        self.name, self.me
                    )
                },
            },
        }
    }

    fn save(&self) {
        let saved = Saved {
            owner: Some(self.owner),
            certificate: self.own.clone(),
            revocations: self.revoked.values().cloned().collect(),
        };
        if let Err(e) = crate::state_file::replace(&self.file, &saved) {
            warn!(file = %self.file.display(), "cannot save the fleet state: {e}");
        }
    }
}

/// Statements for the wire tests, from a fixed owner key.
#[cfg(test)]
pub(crate) mod testing {
    use xnode_spec::keys::OwnerKey;

    use super::{Certificate, Revocation};

    fn key() -> OwnerKey {
        OwnerKey::parse("ed25519-secret:nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=").unwrap()
    }

    /// A certificate for peer "p".
    pub(crate) fn example() -> Certificate {
        Certificate::issue(&key(), "p", "n", 1, 2)
    }

    /// A revocation of peer "p".
    pub(crate) fn example_revocation() -> Revocation {
        Revocation::issue(&key(), "p", 1)
    }
}

#[cfg(test)]
mod tests;
