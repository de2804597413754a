//! Sessions over the network: the node hands out a challenge that names it, a nonce
//! and an expiry; the owner signs it (with an ed25519 key, or `personal_sign` in a
//! browser wallet); the signed challenge buys a session for an hour. A challenge is
//! good once, at this node, until it expires. Pure: time and randomness come in.

use std::collections::BTreeMap;

use xnode_spec::Owner;

/// How long a challenge may wait to be signed.
pub const CHALLENGE_SECS: u64 = 120;

/// How long a session lasts.
pub const SESSION_SECS: u64 = 3600;

/// Challenges waiting at once; the oldest gives way to a new one.
const MOST_CHALLENGES: usize = 256;

/// Sessions at once; the one ending first gives way to a new one.
const MOST_SESSIONS: usize = 64;

/// The first line of every challenge: what it is, so no other signature passes for it.
const KIND: &str = "xnode-session/1";

/// Why a signed challenge buys no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a challenge of this form.
    #[error("not a session challenge")]
    Malformed,
    /// It names another node.
    #[error("the challenge names another node")]
    OtherNode,
    /// This node did not hand it out, or it was used already.
    #[error("the challenge is unknown here or was used already; ask for a new one")]
    Unknown,
    /// Its time ran out.
    #[error("the challenge expired; ask for a new one")]
    Expired,
    /// The spec in force names no owner, so nobody can sign in.
    #[error("this node's spec names no owner (node.owner), so nobody can sign in")]
    NoOwner,
    /// The signature is not the owner's.
    #[error("the challenge is not signed by the node's owner")]
    NotTheOwner,
}

/// A session bought with a signed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its token, for the cookie.
    pub token: String,
    /// When it ends, in seconds since the Unix epoch.
    pub expires: u64,
}

/// The challenges handed out and the sessions open.
#[derive(Debug)]
pub struct Sessions {
    node: String,
    challenges: BTreeMap<String, u64>,
    /// Open sessions by the SHA-256 of their token, so that looking one up takes the
    /// same time however much of a guess is right.
    sessions: BTreeMap<[u8; 32], u64>,
}

/// What a token is kept as.
fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Sessions for the node named `node` in its challenges (its certificate's
    /// fingerprint: what a client reached).
    pub fn new(node: String) -> Sessions {
        Sessions {
            node,
            challenges: BTreeMap::new(),
            sessions: BTreeMap::new(),
        }
    }

    /// A new challenge, its nonce made of `nonce`, as the text to sign.
    pub fn challenge(&mut self, nonce: [u8; 16], now: u64) -> String {
        self.challenges.retain(|_, expires| *expires > now);
        while self.challenges.len() >= MOST_CHALLENGES {
            let oldest = self
                .challenges
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                self.challenges.remove(&n);
            }
        }
        let nonce = hex(&nonce);
        let expires = now + CHALLENGE_SECS;
        self.challenges.insert(nonce.clone(), expires);
        format!(
            "{KIND}\nnode {}\nnonce {nonce}\nexpires {expires}\n",
            self.node
        )
    }

    /// The nonce of `text` if it is a challenge of this node that waits, unexpired.
    fn waiting<'t>(&self, text: &'t str, now: u64) -> Result<&'t str, Refused> {
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let (Some(KIND), Some(node), Some(nonce), Some(expires), None) = (
            lines.next(),
            lines.next().and_then(|l| l.strip_prefix("node ")),
            lines.next().and_then(|l| l.strip_prefix("nonce ")),
            lines.next().and_then(|l| l.strip_prefix("expires ")),
            lines.next(),
        ) else {
            return Err(Refused::Malformed);
        };
        if node != self.node {
            return Err(Refused::OtherNode);
        }
        let Some(issued) = self.challenges.get(nonce) else {
            return Err(Refused::Unknown);
        };
        if expires.parse::<u64>().ok() != Some(*issued) {
            return Err(Refused::Malformed);
        }
        if *issued <= now {
            return Err(Refused::Expired);
        }
        Ok(nonce)
    }

    /// Whether `text` is a challenge of this node that waits, unexpired: what is
    /// checked before anything costlier (the owner, the signature).
    pub fn pending(&self, text: &str, now: u64) -> Result<(), Refused> {
        self.waiting(text, now).map(drop)
    }

    /// A session for a challenge this node handed out, signed by `owner`; its token is
    /// made of `token`. The challenge is used up whatever the outcome.
    pub fn redeem(
        &mut self,
        text: &str,
        signature: &str,
        owner: Option<&Owner>,
        token: [u8; 32],
        now: u64,
    ) -> Result<Session, Refused> {
        let checked = self.waiting(text, now);
        if let Some(nonce) = text.lines().nth(2).and_then(|l| l.strip_prefix("nonce ")) {
            self.challenges.remove(nonce);
        }
        checked?;
        let owner = owner.ok_or(Refused::NoOwner)?;
        if !xnode_spec::keys::verify_personal(owner, text.as_bytes(), signature) {
            return Err(Refused::NotTheOwner);
        }
        self.sessions.retain(|_, e| *e > now);
        while self.sessions.len() >= MOST_SESSIONS {
            let first = self
                .sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(t, _)| *t);
            if let Some(t) = first {
                self.sessions.remove(&t);
            }
        }
        let session = Session {
            token: hex(&token),
            expires: now + SESSION_SECS,
        };
        self.sessions
            .insert(digest(&session.token), session.expires);
        Ok(session)
    }

    /// Whether `token` is a session open at `now`.
    pub fn check(&self, token: &str, now: u64) -> bool {
        self.sessions.get(&digest(token)).is_some_and(|e| *e > now)
    }

    /// Ends a session.
    pub fn end(&mut self, token: &str) {
        self.sessions.remove(&digest(token));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use xnode_spec::keys::{KeyKind, OwnerKey};

    use super::*;

    #[test]
    fn a_challenge_signed_by_the_owner_buys_one_session_once() {
        let key = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let owner = key.owner();
        let stranger = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let mut s = Sessions::new("sha256:aa".into());
        let now = 1_000;
        let text = s.challenge([1; 16], now);
        assert!(text.starts_with("xnode-session/1\nnode sha256:aa\nnonce 0101"));
        // Not the owner's signature: refused, and the challenge is used up.
        let wrong = stranger.sign(text.as_bytes());
        assert_eq!(
            s.redeem(&text, &wrong, Some(&owner), [2; 32], now + 1),
            Err(Refused::NotTheOwner)
        );
        let signed = key.sign(text.as_bytes());
        assert_eq!(
            s.redeem(&text, &signed, Some(&owner), [2; 32], now + 1),
            Err(Refused::Unknown)
        );
        // A fresh one, signed by the owner: a session, once.
        let text = s.challenge([3; 16], now);
        let signed = key.sign(text.as_bytes());
        let session = s
            .redeem(&text, &signed, Some(&owner), [4; 32], now + 1)
            .unwrap();
        assert_eq!(session.expires, now + 1 + SESSION_SECS);
        assert!(s.check(&session.token, now + 2));
        assert!(!s.check(&session.token, session.expires));
        assert!(!s.check("not a token", now + 2));
        // Replayed: refused.
        assert_eq!(
            s.redeem(&text, &signed, Some(&owner), [5; 32], now + 2),
            Err(Refused::Unknown)
        );
        s.end(&session.token);
        assert!(!s.check(&session.token, now + 2));
    }

    #[test]
    fn expired_foreign_forged_and_ownerless_challenges_are_refused() {
        let key = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let owner = key.owner();
        let now = 1_000;
        let mut here = Sessions::new("sha256:aa".into());
        let mut there = Sessions::new("sha256:bb".into());
        // (the challenge, the time it is redeemed, the owner, the refusal)
        let expired = here.challenge([1; 16], now);
        let foreign = there.challenge([2; 16], now);
        let ownerless = here.challenge([3; 16], now);
        let stretched = here.challenge([4; 16], now).replace(
            &format!("expires {}", now + CHALLENGE_SECS),
            "expires 99999999",
        );
        let made_up = "xnode-session/1\nnode sha256:aa\nnonce 00\nexpires 99999999\n".to_owned();
        let table = [
            (
                expired,
                now + CHALLENGE_SECS,
                Some(&owner),
                Refused::Expired,
            ),
            (foreign, now + 1, Some(&owner), Refused::OtherNode),
            (ownerless, now + 1, None, Refused::NoOwner),
            (stretched, now + 1, Some(&owner), Refused::Malformed),
            (made_up, now + 1, Some(&owner), Refused::Unknown),
            ("hello".to_owned(), now, Some(&owner), Refused::Malformed),
        ];
        for (text, at, owner, refused) in table {
            let signed = key.sign(text.as_bytes());
            assert_eq!(
                here.redeem(&text, &signed, owner, [9; 32], at),
                Err(refused.clone()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn challenges_and_sessions_are_bounded() {
        let key = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let mut s = Sessions::new("n".into());
        for i in 0..1000u32 {
            let mut nonce = [0; 16];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            s.challenge(nonce, 1_000);
        }
        assert_eq!(s.challenges.len(), MOST_CHALLENGES);
        for i in 0..100u32 {
            let mut nonce = [0; 16];
            nonce[..4].copy_from_slice(&(5000 + i).to_be_bytes());
            let text = s.challenge(nonce, 1_000 + u64::from(i));
            let mut token = [0; 32];
            token[..4].copy_from_slice(&i.to_be_bytes());
            s.redeem(
                &text,
                &key.sign(text.as_bytes()),
                Some(&key.owner()),
                token,
                1_000 + u64::from(i),
            )
            .unwrap();
        }
        assert_eq!(s.sessions.len(), MOST_SESSIONS);
    }
}
