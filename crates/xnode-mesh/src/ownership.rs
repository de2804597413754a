//! What the node keeps for placement: its quorum (with the voters saved in the state
//! directory with their certificates, so a restarted node remembers the fleet it
//! agreed on, and only those still members), the mesh workloads it offers and runs,
//! and the view every placement decision starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tracing::warn;

use serde::{Deserialize, Serialize};

use crate::fencing::Majority;
use crate::fleet::{Certificate, Fleet};
use crate::membership::{Membership, State};
use crate::placement::Candidate;
use crate::quorum::{Changed, Quorum};
use crate::report::Report;

/// The file the voters are kept in.
const VOTERS_FILE: &str = "mesh-voters.json";

/// The members as placement sees them, this node included.
#[derive(Debug, Clone)]
pub struct View {
    /// When it was taken: members' silences are as of then.
    pub at: Instant,
    /// This node.
    pub me: PeerId,
    /// Whether it sees a majority of its voters (if not, it is fenced).
    pub quorate: bool,
    /// How long it has been quorate.
    pub settled: Duration,
    /// How long a member must be settled before it owns workloads.
    pub hold_down: Duration,
    /// The last agreed membership's size, this node included.
    pub voters: usize,
    /// Every member that can take part, this node first.
    pub members: Vec<Placed>,
}

/// A member in the [`View`].
#[derive(Debug, Clone)]
pub struct Placed {
    /// Its node name.
    pub node: String,
    /// For placement.
    pub candidate: Candidate<PeerId>,
    /// What it last said of how it is doing (none from an older release), its
    /// `healthy_ms` as of when the view was taken.
    pub report: Option<Report>,
}

impl View {
    /// The view as it stands at `now`, if nothing was heard since it was taken: every
    /// other member silent for that much longer.
    pub fn aged(&self, now: Instant) -> View {
        let more = now.saturating_duration_since(self.at);
        let mut view = self.clone();
        view.at = now;
        for m in view.members.iter_mut() {
            if let Some(h) = m.report.as_mut().and_then(|r| r.fleet.healthy_ms.as_mut()) {
                *h = h.saturating_add(u64::try_from(more.as_millis()).unwrap_or(u64::MAX));
            }
            if m.candidate.peer != self.me {
                m.candidate.silent += more;
            }
        }
        view
    }
}

/// A voter as saved: with the certificate that made it one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Voter {
    peer: String,
    cert: Certificate,
}

#[derive(Debug, Serialize, Deserialize)]
struct Voters {
    voters: Vec<Voter>,
}

/// The voters saved by the last run that are members still: none on a new node or
/// without a fleet. A file from a release before fleets (a plain list of peer ids)
/// holds no member, so none of it is kept. A damaged file is an error, never a quietly
/// smaller electorate.
fn read_voters(file: &Path, fleet: Option<&Fleet>) -> Result<Vec<PeerId>, String> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    if let Ok(old) = serde_json::from_slice::<Vec<String>>(&bytes) {
        if !old.is_empty() {
            warn!(
                purged = old.len(),
                "the saved voters are from a release before fleets: none is a member, none is kept"
            );
        }
        return Ok(Vec::new());
    }
    let saved: Voters = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let Some(fleet) = fleet else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for v in saved.voters {
        let peer: PeerId = v
            .peer
            .parse()
            .map_err(|_| format!("{:?} is not a peer id", v.peer))?;
        // An expired certificate still counts here: the voter was a member, and has
        // likely renewed since (the file is saved only when the voters change). A
        // voter never heard again only makes a majority harder, never easier.
        match fleet.admits(&v.peer, &v.cert, None, 0) {
            Ok(()) => kept.push(peer),
            Err(e) => warn!(%peer, "a saved voter is no member, not kept: {e}"),
        }
    }
    Ok(kept)
}

/// Everything in a [`View`] that decisions depend on (of a report's time healthy,
/// only whether it is).
type Fingerprint = (bool, Vec<(Candidate<PeerId>, Option<Report>)>);

/// This node's part in placement.
#[derive(Debug)]
pub(crate) struct Ownership {
    me: PeerId,
    quorum: Quorum<PeerId>,
    file: PathBuf,
    hold_down: Duration,
    heartbeat: Duration,
    pub(crate) offers: BTreeMap<String, String>,
    pub(crate) running: BTreeSet<String>,
    /// The closures this node holds (their roots' hash parts).
    pub(crate) closures: BTreeSet<String>,
    /// What the agent last said of how this node is doing, and since when it has been
    /// healthy on its fleet generation.
    pub(crate) report: Option<(Report, Option<Instant>)>,
    last: Option<Fingerprint>,
    /// Whether this node holds a valid certificate: a node outside its fleet owns
    /// nothing, whatever it sees.
    member: bool,
}

impl Ownership {
    /// Loads the voters saved by the last run, if any.
    pub(crate) fn load(
        me: PeerId,
        state_dir: &Path,
        hold_down: Duration,
        heartbeat: Duration,
        fleet: Option<&Fleet>,
    ) -> Ownership {
        let file = state_dir.join(VOTERS_FILE);
        let remembered = read_voters(&file, fleet).unwrap_or_else(|e| {
            warn!(file = %file.display(), "the saved mesh voters are unusable, starting afresh: {e}");
            Vec::new()
        });
        Ownership {
            me,
            quorum: Quorum::new(me, remembered),
            file,
            hold_down,
            heartbeat,
            offers: BTreeMap::new(),
            running: BTreeSet::new(),
            closures: BTreeSet::new(),
            report: None,
            last: None,
            member: false,
        }
    }

    /// Applies the fencing rule to the membership (only members are in it); saves the
    /// voters when they change. `member`: whether this node is one.
    pub(crate) fn update(
        &mut self,
        membership: &Membership<PeerId>,
        member: bool,
        now: Instant,
    ) -> Changed {
        let mut changed = self
            .quorum
            .update(membership.members().map(|(p, m)| (p, m.state)), now);
        if member != self.member {
            self.member = member;
            changed.quorate = true;
            if member {
                // Newly admitted: it owns nothing before a hold-down of its own.
                self.quorum.interrupt();
            }
        }
        if changed.voters {
            self.save(membership);
        }
        changed
    }

    /// Whether this node may own anything: quorate, and a member.
    fn quorate(&self) -> bool {
        self.member && self.quorum.quorate()
    }

    fn save(&self, membership: &Membership<PeerId>) {
        // This node is always a voter of its own: only the others are saved.
        let voters: Vec<Voter> = self
            .quorum
            .voters()
            .iter()
            .filter_map(|p| {
                membership.get(p).map(|m| Voter {
                    peer: p.to_string(),
                    cert: m.info.cert.clone(),
                })
            })
            .collect();
        if let Err(e) = crate::state_file::replace(&self.file, &Voters { voters }) {
            warn!(file = %self.file.display(), "cannot save the mesh voters: {e}");
        }
    }

    /// How long this node has been quorate, as its heartbeats say.
    pub(crate) fn settled(&self, now: Instant) -> Duration {
        self.quorum.settled(now)
    }

    /// This node missed its own clock (frozen, or starved of CPU): what it knows of the
    /// others is stale, and they may have given it up. It counts as not quorate until
    /// the next look, and owns nothing until a new hold-down has passed.
    pub(crate) fn interrupt(&mut self) {
        self.quorum.interrupt();
    }

    /// What the lease is renewed on: from when this node may own workloads, and since
    /// when a majority of the voters was heard (alive members only).
    pub(crate) fn majority(&self, membership: &Membership<PeerId>, now: Instant) -> Majority {
        let others: Vec<Option<Instant>> = self
            .quorum
            .voters()
            .iter()
            .filter(|p| **p != self.me)
            .map(|p| {
                membership
                    .get(p)
                    .filter(|m| m.state == State::Alive)
                    .map(|m| m.heard)
            })
            .collect();
        let owns_from = self.quorate().then(|| {
            let settled = self.quorum.settled(now);
            now.checked_sub(settled).unwrap_or(now) + self.hold_down
        });
        Majority::heard_since_of(owns_from, &others, now)
    }

    /// This node's report as of `now`.
    pub(crate) fn report(&self, now: Instant) -> Option<Report> {
        let (report, since) = self.report.as_ref()?;
        let mut report = report.clone();
        report.fleet.healthy_ms = since.map(|t| {
            u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
        });
        Some(report)
    }

    /// The view placement decides from.
    pub(crate) fn view(
        &self,
        me: PeerId,
        node: &str,
        labels: &BTreeMap<String, String>,
        membership: &Membership<PeerId>,
        now: Instant,
    ) -> View {
        let settled = self.quorum.settled(now);
        let mine = Placed {
            node: node.to_owned(),
            candidate: Candidate {
                peer: me,
                live: true,
                eligible: self.quorate() && settled >= self.hold_down,
                labels: labels.clone(),
                offers: self.offers.clone(),
                running: self.running.clone(),
                closures: self.closures.clone(),
                silent: Duration::ZERO,
            },
            report: self.report(now),
        };
        let others = membership.members().map(|(peer, m)| {
            let live = m.state != State::Dead;
            let silent = now.saturating_duration_since(m.heard);
            // What it said, aged by the time since — but no more than one heartbeat:
            // a member that falls silent does not become eligible by its silence —
            // and never more than this node saw itself: a claim alone makes nobody an
            // owner sooner.
            let claimed =
                Duration::from_millis(m.info.settled_ms).saturating_add(silent.min(self.heartbeat));
            let seen = m
                .settled_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let settled = claimed.min(seen);
            Placed {
                node: m.info.node.clone(),
                candidate: Candidate {
                    peer: *peer,
                    live,
                    eligible: live && m.info.settled_ms > 0 && settled >= self.hold_down,
                    labels: m.info.labels.clone(),
                    offers: m.info.offers.clone(),
                    running: m.info.running.clone(),
                    closures: m.info.closures.clone(),
                    silent,
                },
                report: m.info.report.clone().map(|mut r| {
                    if let Some(h) = r.fleet.healthy_ms.as_mut() {
                        *h = h.saturating_add(u64::try_from(silent.as_millis()).unwrap_or(0));
                    }
                    r
                }),
            }
        });
        View {
            at: now,
            me,
            quorate: self.quorate(),
            settled,
            hold_down: self.hold_down,
            voters: self.quorum.voters().len(),
            members: std::iter::once(mine).chain(others).collect(),
        }
    }

    /// Whether anything placement depends on changed since the last call. Silences
    /// grow all the time: the agent ages a view itself ([`View::aged`]).
    pub(crate) fn moved(&mut self, view: &View) -> bool {
        let members = view
            .members
            .iter()
            .map(|p| {
                let candidate = Candidate {
                    silent: Duration::ZERO,
                    ..p.candidate.clone()
                };
                let report = p.report.clone().map(|mut r| {
                    r.fleet.healthy_ms = r.fleet.healthy_ms.map(|_| 0);
                    r
                });
                (candidate, report)
            })
            .collect();
        let now = (view.quorate, members);
        let moved = self.last.as_ref() != Some(&now);
        self.last = Some(now);
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_voters_are_kept_only_if_the_owner_made_them_members() {
        use crate::fleet::{FleetConfig, Revocation};
        use xnode_spec::keys::{KeyKind, OwnerKey};
        let dir = std::env::temp_dir().join(format!("xnode-voters-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(VOTERS_FILE);
        let owner = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let stranger = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let config = FleetConfig {
            owner: owner.owner(),
            join_key: None,
        };
        let mut fleet = Fleet::load(&config, &PeerId::random().to_string(), "n", &dir);
        let now = 1_800_000_000;
        let fleet_of = |f: &Fleet| read_voters(&file, Some(f));
        assert_eq!(fleet_of(&fleet), Ok(Vec::new()), "a new node has none");
        // From a release before fleets: nobody in it is a member.
        let ids = [
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        ];
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        std::fs::write(&file, serde_json::to_vec(&text).unwrap()).unwrap();
        assert_eq!(fleet_of(&fleet), Ok(Vec::new()));
        let voter = |i: usize, key: &OwnerKey, expires: u64| Voter {
            peer: ids[i].to_string(),
            cert: Certificate::issue(key, &ids[i].to_string(), "n", now - 10, expires),
        };
        let voters = Voters {
            voters: vec![
                voter(0, &owner, now + 100),
                voter(1, &owner, now - 1),
                voter(2, &stranger, now + 100),
                voter(3, &owner, now + 100),
            ],
        };
        std::fs::write(&file, serde_json::to_vec(&voters).unwrap()).unwrap();
        assert_eq!(
            fleet_of(&fleet),
            Ok(vec![ids[0], ids[1], ids[3]]),
            "the foreign one goes; the expired one was a member, and stays"
        );
        fleet
            .revoke([Revocation::issue(&owner, &ids[3].to_string(), now)])
            .unwrap();
        assert_eq!(fleet_of(&fleet), Ok(vec![ids[0], ids[1]]), "revoked goes");
        assert_eq!(
            read_voters(&file, None),
            Ok(Vec::new()),
            "no fleet, no voters"
        );
        std::fs::write(&file, b"{").unwrap();
        assert!(fleet_of(&fleet).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
