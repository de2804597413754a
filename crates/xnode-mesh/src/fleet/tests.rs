use xnode_spec::keys::{KeyKind, OwnerKey};

use super::*;
use crate::fleet::JOIN_CERT_LIFETIME_SECS;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 24 * 3600;

fn peer() -> String {
    libp2p::PeerId::random().to_string()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xnode-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn revocations_are_the_owners_and_survive_a_restart() {
    let owner = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let stranger = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let (me, other) = (peer(), peer());
    let d = dir("revoke");
    let config = FleetConfig {
        owner: owner.owner(),
        join_key: None,
    };
    let mut fleet = Fleet::load(&config, &me, "n", &d);
    let cert = Certificate::issue(&owner, &other, "n", NOW, NOW + DAY);
    assert_eq!(fleet.admits(&other, &cert, None, NOW), Ok(()));
    // A stranger's revocation, an altered one, or one of no peer changes nothing.
    let forged = Revocation::issue(&stranger, &other, NOW);
    assert!(fleet.revoke([forged]).is_err());
    let mut altered = Revocation::issue(&owner, &me, NOW);
    altered.peer = other.clone();
    let (news, why) = fleet.revoke([altered]).unwrap_err();
    assert!(news.is_empty() && why.contains("forged"), "{why}");
    let (_, why) = fleet
        .revoke([Revocation::issue(&owner, "typo", NOW)])
        .unwrap_err();
    assert!(why.contains("not a peer id"), "{why}");
    assert_eq!(fleet.admits(&other, &cert, Some(&cert), NOW), Ok(()));

    // A forged one beside a good one: the good one is taken, and the forgery named.
    let (news, why) = fleet
        .revoke([
            Revocation::issue(&stranger, &me, NOW),
            Revocation::issue(&owner, &other, NOW),
        ])
        .unwrap_err();
    assert_eq!(news, std::slice::from_ref(&other), "{why}");
    assert_eq!(
        fleet.revoke([Revocation::issue(&owner, &other, NOW + 1)]),
        Ok(vec![]),
        "already held"
    );
    // A newer format is passed over, not refused.
    let mut newer = Revocation::issue(&owner, &peer(), NOW);
    newer.v = 2;
    assert_eq!(fleet.revoke([newer]), Ok(vec![]));
    let err = fleet.admits(&other, &cert, Some(&cert), NOW).unwrap_err();
    assert_eq!(err, Refused::Revoked(other.clone()));
    // A fresh certificate for a revoked peer is no way back.
    let fresh = Certificate::issue(&owner, &other, "n", NOW + 5, NOW + 2 * DAY);
    assert!(fleet.admits(&other, &fresh, None, NOW + 5).is_err());

    let restarted = Fleet::load(&config, &me, "n", &d);
    assert!(restarted.is_revoked(&other), "kept across a restart");
    // Another owner's fleet starts from nothing.
    let other_fleet = Fleet::load(
        &FleetConfig {
            owner: stranger.owner(),
            join_key: None,
        },
        &me,
        "n",
        &d,
    );
    assert!(!other_fleet.is_revoked(&other));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_join_key_admits_renews_and_a_revocation_ends_it() {
    let owner = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let me = peer();
    let d = dir("join");
    let key = JoinKey::create(&owner, NOW + DAY).unwrap();
    let config = FleetConfig {
        owner: owner.owner(),
        join_key: Some(key),
    };
    let mut fleet = Fleet::load(&config, &me, "n", &d);
    let first = fleet.certificate(NOW).cloned().unwrap();
    assert_eq!(first.expires, NOW + JOIN_CERT_LIFETIME_SECS);
    assert!(matches!(
        fleet.standing(NOW),
        Standing::Member { warning: None, .. }
    ));
    // Not renewed while more than half its life is left; renewed after that.
    let half = JOIN_CERT_LIFETIME_SECS / 2;
    assert_eq!(
        fleet.certificate(NOW + DAY - 1).cloned(),
        Some(first.clone())
    );
    // The key has expired by then: the certificate stays, with a warning near its end.
    let late = NOW + half + 1;
    assert_eq!(fleet.certificate(late).cloned(), Some(first.clone()));
    let near_end = first.expires - DAY;
    match fleet.standing(near_end) {
        Standing::Member {
            warning: Some(w), ..
        } => assert!(w.contains("expires in 24 h"), "{w}"),
        other => panic!("{other:?}"),
    }
    // Kept in the state dir: a restart without the join key is still a member.
    let mut again = Fleet::load(
        &FleetConfig {
            owner: owner.owner(),
            join_key: None,
        },
        &me,
        "n",
        &d,
    );
    assert_eq!(again.certificate(NOW + 10).cloned(), Some(first.clone()));
    match again.standing(first.expires) {
        Standing::Outside { why } => assert!(why.contains("xnodectl fleet admit"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A fresh key renews a certificate past half its life.
    let mut renewing = Fleet::load(
        &FleetConfig {
            owner: owner.owner(),
            join_key: Some(JoinKey::create(&owner, NOW + 40 * DAY).unwrap()),
        },
        &me,
        "n",
        &d,
    );
    let renewed = renewing.certificate(late).cloned().unwrap();
    assert_eq!(renewed.expires, late + JOIN_CERT_LIFETIME_SECS);
    renewing
        .revoke([Revocation::issue(&owner, &me, late)])
        .unwrap();
    assert!(renewing.certificate(late + 1).is_none());
    match renewing.standing(late + 1) {
        Standing::Outside { why } => assert!(why.contains("revoked"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_node_takes_a_longer_certificate_never_a_shorter_one() {
    let owner = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let me = peer();
    let d = dir("take");
    let config = FleetConfig {
        owner: owner.owner(),
        join_key: None,
    };
    let mut fleet = Fleet::load(&config, &me, "n", &d);
    let year = Certificate::issue(&owner, &me, "n", NOW, NOW + 365 * DAY);
    assert_eq!(fleet.take(year.clone(), NOW), Ok(()));
    assert_eq!(fleet.take(year.clone(), NOW), Ok(()), "the same one again");
    let week = Certificate::issue(&owner, &me, "n", NOW - DAY, NOW + 7 * DAY);
    let err = fleet.take(week, NOW).unwrap_err();
    assert!(err.contains("lasts longer"), "{err}");
    // One that runs out within the margin would not make it a member: refused.
    let fresh_dir = dir("take-brief");
    let other = peer();
    let mut fresh = Fleet::load(&config, &other, "n", &fresh_dir);
    let brief = Certificate::issue(&owner, &other, "n", NOW, NOW + 10);
    assert!(fresh.take(brief, NOW).is_err());
    std::fs::remove_dir_all(&fresh_dir).unwrap();
    assert_eq!(fleet.certificate(NOW).cloned(), Some(year));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn who_keeps_a_name_two_members_claim() {
    let owner = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let join = JoinKey::create(&owner, NOW + 3600).unwrap();
    let (p, q) = (peer(), peer());
    let by_owner = |peer: &str, issued| Certificate::issue(&owner, peer, "b", issued, NOW + 3600);
    let by_key = |peer: &str, issued| join.admit(peer, "b", issued).unwrap();
    let (lo, hi) = if p < q { (&p, &q) } else { (&q, &p) };
    let (lo, hi) = (lo.as_bytes(), hi.as_bytes());
    // (holder, rival, the holder keeps it)
    let cases = [
        (
            "owner's against a join key's",
            by_owner(&p, NOW),
            by_key(&q, NOW - 29 * 86_400),
            true,
        ),
        (
            "a join key's against the owner's",
            by_key(&p, NOW - 29 * 86_400),
            by_owner(&q, NOW),
            false,
        ),
        (
            "the owner's earlier",
            by_owner(&p, NOW - 10),
            by_owner(&q, NOW),
            true,
        ),
        (
            "the owner's later",
            by_owner(&p, NOW),
            by_owner(&q, NOW - 10),
            false,
        ),
        (
            "a join key's, against one backdated",
            by_key(&p, NOW),
            by_key(&q, NOW - 29 * 86_400),
            true,
        ),
        (
            "a join key's, against a later one",
            by_key(&p, NOW - 10),
            by_key(&q, NOW),
            true,
        ),
    ];
    for (what, holder, rival, keeps) in cases {
        assert_eq!(keeps_name((&holder, b"x"), (&rival, b"y")), keeps, "{what}");
    }
    // The owner's, issued at once: the lower peer id.
    let (a, b) = (by_owner(&p, NOW), by_owner(&q, NOW));
    assert!(keeps_name((&a, lo), (&b, hi)));
    assert!(!keeps_name((&a, hi), (&b, lo)));
}
