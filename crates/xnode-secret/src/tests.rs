#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use super::*;

/// A node's ed25519 seed and public key.
fn node(seed_byte: u8) -> ([u8; 32], [u8; 32]) {
    let seed = [seed_byte; 32];
    (seed, public_of(&seed))
}

fn public_of(seed: &[u8; 32]) -> [u8; 32] {
    use ed25519_dalek::SigningKey;
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

#[test]
fn a_node_reads_what_was_sent_to_it() {
    let (seed, public) = node(7);
    let armored = encrypt(&[public], b"hunter2").unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!armored.contains("hunter2"));
    let plain = NodeKey::new(&seed).unwrap().decrypt(&armored).unwrap();
    assert_eq!(plain.as_slice(), b"hunter2");
}

#[test]
fn every_recipient_reads_it_and_no_one_else() {
    let (a, b, c) = (node(1), node(2), node(3));
    let armored = encrypt(&[a.1, b.1], b"s3cret").unwrap();
    for (seed, _) in [a, b] {
        let plain = NodeKey::new(&seed).unwrap().decrypt(&armored).unwrap();
        assert_eq!(plain.as_slice(), b"s3cret");
    }
    let err = NodeKey::new(&c.0).unwrap().decrypt(&armored).unwrap_err();
    assert!(
        err.to_string().contains("not encrypted to this node"),
        "{err}"
    );
}

#[test]
fn tampering_and_garbage_are_refused_without_the_plaintext() {
    let (seed, public) = node(9);
    let key = NodeKey::new(&seed).unwrap();
    let armored = encrypt(&[public], b"topsecret").unwrap();
    // Flip one character of the body (inside the base64, away from the header).
    let mut lines: Vec<String> = armored.lines().map(str::to_owned).collect();
    let last_body = lines.len() - 2;
    let flipped: String = lines[last_body]
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i == 0 {
                if ch == 'A' { 'B' } else { 'A' }
            } else {
                ch
            }
        })
        .collect();
    lines[last_body] = flipped;
    let tampered = lines.join("\n");
    for bad in [tampered.as_str(), "not age at all", ""] {
        let err = key.decrypt(bad).unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}

#[test]
fn bounds_are_kept() {
    let (_, public) = node(4);
    assert!(matches!(encrypt(&[], b"x"), Err(SecretError::NoRecipients)));
    assert!(matches!(
        encrypt(&[public], &vec![0; MAX_PLAINTEXT + 1]),
        Err(SecretError::TooLarge(_))
    ));
    // The largest secret, armored, stays within what a spec accepts for it.
    let big = encrypt(&[public; 16], &vec![0; MAX_PLAINTEXT]).unwrap();
    assert!(big.len() < 64 * 1024, "{}", big.len());
}

#[test]
fn a_peer_id_names_the_key_its_node_decrypts_with() {
    let keypair = libp2p_identity::Keypair::ed25519_from_bytes([5u8; 32]).unwrap();
    let peer = keypair.public().to_peer_id().to_base58();
    let public = peer_public_key(&peer).unwrap();
    let armored = encrypt(&[public], b"for that node").unwrap();
    let plain = NodeKey::from_keypair(&keypair)
        .unwrap()
        .decrypt(&armored)
        .unwrap();
    assert_eq!(plain.as_slice(), b"for that node");
    for bad in [
        "",
        "12D3KooW",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    ] {
        let err = peer_public_key(bad).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{bad:?}")), "{err}");
    }
}
