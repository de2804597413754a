use super::*;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 24 * 3600;

fn peer() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    format!(
        "12D3KooW{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[test]
fn certificates_are_refused_with_their_reasons() {
    for kind in [KeyKind::Ed25519, KeyKind::Eth] {
        let owner = OwnerKey::generate(kind).unwrap();
        let stranger = OwnerKey::generate(kind).unwrap();
        let fleet = owner.owner();
        let (p, q) = (peer(), peer());
        let good = Certificate::issue(&owner, &p, "n", NOW, NOW + DAY);
        assert_eq!(good.check(&fleet, &p, NOW), Ok(()));
        assert_eq!(good.admitted_by(), "owner");

        let join = JoinKey::create(&owner, NOW + DAY).unwrap();
        let joined = join.admit(&p, "n", NOW).unwrap();
        assert_eq!(joined.check(&fleet, &p, NOW), Ok(()));
        assert!(joined.admitted_by().starts_with("join key ed25519:"));
        // What an expired key would issue, signed with its secret all the same.
        let late_key = JoinKey::create(&owner, NOW - 1).unwrap();
        let secret = OwnerKey::parse(&late_key.secret).unwrap();
        let backdated = |issued: u64, expires: u64| Certificate {
            issued,
            expires,
            signature: secret.sign(&Certificate::payload(
                &fleet,
                &p,
                Some("n"),
                issued,
                expires,
            )),
            ..late_key.admit(&p, "n", NOW - 2).unwrap()
        };
        let mut forged_delegation = joined.clone();
        if let Some(d) = &mut forged_delegation.delegation {
            d.expires += DAY;
        }
        let mut self_delegated = joined.clone();
        if let Some(d) = &mut self_delegated.delegation {
            let rogue = JoinKey::create(&stranger, NOW + DAY).unwrap();
            *d = rogue.delegation;
        }
        // A join key's certificate with its name left out, signed as such.
        let join_secret = OwnerKey::parse(&join.secret).unwrap();
        let unnamed = Certificate {
            node: None,
            signature: join_secret.sign(&Certificate::payload(&fleet, &p, None, NOW, NOW + DAY)),
            ..joined.clone()
        };
        let mut altered = good.clone();
        altered.expires += DAY;
        let mut version = good.clone();
        version.v = 2;
        let mut huge = good.clone();
        huge.signature = "x".repeat(10_000);

        let cases: Vec<(&str, Certificate, &str, u64, &str)> = vec![
            (
                "forged",
                Certificate {
                    owner: fleet,
                    ..Certificate::issue(&stranger, &p, "n", NOW, NOW + DAY)
                },
                &p,
                NOW,
                "forged or altered",
            ),
            ("altered", altered, &p, NOW, "forged or altered"),
            ("expired", good.clone(), &p, NOW + DAY, "expired at"),
            ("wrong peer", good.clone(), &q, NOW, "presented it"),
            (
                "wrong owner",
                Certificate::issue(&stranger, &p, "n", NOW, NOW + DAY),
                &p,
                NOW,
                "is for the fleet of",
            ),
            ("version", version, &p, NOW, "version 2"),
            ("huge", huge, &p, NOW, "at most"),
            (
                "delegation forged",
                forged_delegation,
                &p,
                NOW,
                "delegation is not signed",
            ),
            (
                "delegated by a stranger",
                self_delegated,
                &p,
                NOW,
                "delegation is not signed",
            ),
            (
                "issued by an expired join key",
                backdated(NOW, NOW + DAY),
                &p,
                NOW,
                "its join key expired",
            ),
            (
                "outlives its join key",
                backdated(NOW - 2, NOW + JOIN_CERT_LIFETIME_SECS),
                &p,
                NOW,
                "later than its join key allows",
            ),
            (
                "a join key's, naming no node",
                unnamed,
                &p,
                NOW,
                "names no node",
            ),
            (
                "join key cert expired",
                joined.clone(),
                &p,
                NOW + JOIN_CERT_LIFETIME_SECS,
                "expired at",
            ),
        ];
        for (what, cert, sender, now, why) in cases {
            let err = cert.check(&fleet, sender, now).expect_err(what).to_string();
            assert!(err.contains(why), "{kind:?} {what}: {err}");
        }
        // The stranger's own certificate names the wrong fleet.
        let err = Certificate::issue(&stranger, &p, "n", NOW, NOW + DAY)
            .check(&fleet, &p, NOW)
            .unwrap_err();
        assert!(matches!(err, Refused::WrongOwner { .. }), "{err}");
        // An expired join key issues nothing.
        let err = late_key.admit(&p, "n", NOW).unwrap_err().to_string();
        assert!(err.contains("its join key expired"), "{err}");
    }
}

#[test]
fn a_join_key_file_round_trips_and_a_damaged_one_is_named() {
    let owner = OwnerKey::generate(KeyKind::Eth).unwrap();
    let key = JoinKey::create(&owner, NOW + DAY).unwrap();
    let text = serde_json::to_string(&key).unwrap();
    let again = JoinKey::parse(&text).unwrap();
    assert_eq!(again.delegation, key.delegation);
    assert!(!format!("{key:?}").contains(&key.secret));
    let mut swapped = key.clone();
    swapped.secret = OwnerKey::generate(KeyKind::Ed25519)
        .unwrap()
        .to_secret_string();
    let err = JoinKey::parse(&serde_json::to_string(&swapped).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("not the key its delegation names"),
        "{err}"
    );
    let mut forged = key.clone();
    forged.delegation.expires += 1;
    let err = JoinKey::parse(&serde_json::to_string(&forged).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("delegation is not signed"),
        "{err}"
    );
    assert!(
        JoinKey::parse("{}")
            .unwrap_err()
            .to_string()
            .contains("not a join key")
    );
}
