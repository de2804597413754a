//! Owner keys: the secret half of a spec's `node.owner`, for signing pushes.
//!
//! Both kinds an owner may be: an ed25519 key, or an Ethereum account whose key signs
//! EIP-712 typed data, so a wallet can sign a push without any other tool.
//!
//! Every statement an owner signs is a short text whose first line names its kind and
//! whose second names what it is about (the node's peer id, or the fleet's owner). An
//! ed25519 key signs the text. A wallet signs it as EIP-712 typed data in the
//! `XnodeOS` domain, with the kind and the subject as fields of their own, so the
//! wallet shows what it signs and for which node or fleet, and no `personal_sign`
//! request from a web page can be passed off as an XnodeOS statement.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use sha3::{Digest as _, Keccak256};

use crate::values::Owner;

mod eip712;

/// Why a key file or signature could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not a key of either kind.
    #[error(
        "not an owner key (expected \"ed25519-secret:<base64 of 32 bytes>\" or \"eth-secret:0x<64 hex digits>\")"
    )]
    Format,
    /// The bytes are not a valid secret of their kind.
    #[error("the secret is not a valid {0} key")]
    Invalid(&'static str),
    /// The system gave no randomness.
    #[error("cannot get randomness from the system: {0}")]
    Random(String),
}

/// An owner's secret key.
#[derive(Clone)]
pub enum OwnerKey {
    /// Signs pushes with ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// An Ethereum account: signs pushes as EIP-712 typed data.
    Eth(k256::ecdsa::SigningKey),
}

/// Which kind of key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ed25519.
    Ed25519,
    /// secp256k1, identified by its Ethereum address.
    Eth,
}

impl OwnerKey {
    /// A new random key from the system's randomness.
    pub fn generate(kind: KeyKind) -> Result<OwnerKey, KeyError> {
        loop {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
            // A secp256k1 secret must be below the group order; retry in the rare
            // case (about 2^-128) that it is not.
            if let Ok(key) = OwnerKey::from_secret(kind, &secret) {
                return Ok(key);
            }
        }
    }

    fn from_secret(kind: KeyKind, secret: &[u8; 32]) -> Result<OwnerKey, KeyError> {
        Ok(match kind {
            KeyKind::Ed25519 => OwnerKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(secret)),
            KeyKind::Eth => OwnerKey::Eth(
                k256::ecdsa::SigningKey::from_slice(secret)
                    .map_err(|_| KeyError::Invalid("secp256k1"))?,
            ),
        })
    }

    /// Reads a key file's text: `ed25519-secret:<base64>` or `eth-secret:0x<hex>`.
    pub fn parse(text: &str) -> Result<OwnerKey, KeyError> {
        let text = text.trim();
        if let Some(b64) = text.strip_prefix("ed25519-secret:") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| KeyError::Format)?;
            let secret: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Format)?;
            OwnerKey::from_secret(KeyKind::Ed25519, &secret)
        } else if let Some(hex) = text.strip_prefix("eth-secret:0x") {
            let secret = decode_hex::<32>(hex).ok_or(KeyError::Format)?;
            OwnerKey::from_secret(KeyKind::Eth, &secret)
        } else {
            Err(KeyError::Format)
        }
    }

    /// The key file's text (a secret: keep it so).
    pub fn to_secret_string(&self) -> String {
        match self {
            OwnerKey::Ed25519(k) => format!(
                "ed25519-secret:{}",
                base64::engine::general_purpose::STANDARD.encode(k.to_bytes())
            ),
            OwnerKey::Eth(k) => format!("eth-secret:0x{}", encode_hex(&k.to_bytes())),
        }
    }

    /// The public identity to put in a spec's `node.owner`.
    pub fn owner(&self) -> Owner {
        match self {
            OwnerKey::Ed25519(k) => Owner::Ed25519(k.verifying_key().to_bytes()),
            OwnerKey::Eth(k) => Owner::Eth(eth_address(k.verifying_key())),
        }
    }

    /// Signs `message`: `ed25519:<base64 signature>`, or `eth:0x<r s v>` over its
    /// EIP-712 digest (low S, as Ethereum requires).
    pub fn sign(&self, message: &[u8]) -> String {
        match self {
            OwnerKey::Ed25519(k) => format!(
                "ed25519:{}",
                base64::engine::general_purpose::STANDARD.encode(k.sign(message).to_bytes())
            ),
            OwnerKey::Eth(k) => {
                let (signature, recovery) = k.sign_prehash_recoverable(&eip712::digest(message));
                let mut rsv = signature.to_bytes().to_vec();
                rsv.push(27 + u8::from(recovery));
                format!("eth:0x{}", encode_hex(&rsv))
            }
        }
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret, not even in a log line.
        write!(f, "OwnerKey({})", self.owner())
    }
}

/// Whether `signature` (as [`OwnerKey::sign`] writes it) is `owner`'s over `message`.
pub fn verify(owner: &Owner, message: &[u8], signature: &str) -> bool {
    match owner {
        Owner::Ed25519(public) => {
            let Some(b64) = signature.strip_prefix("ed25519:") else {
                return false;
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                return false;
            };
            let Ok(bytes) = <[u8; 64]>::try_from(bytes) else {
                return false;
            };
            let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
                return false;
            };
            key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                .is_ok()
        }
        Owner::Eth(address) => eth_signer(message, signature).is_some_and(|a| a == *address),
    }
}

/// Whether `signature` is `owner`'s over `message` as a browser wallet signs text: an
/// ed25519 signature as [`verify`] takes it, or for an `eth:` owner an EIP-191
/// `personal_sign` (`0x<r s v>`, with or without the `eth:` prefix). For what a person
/// reads and signs in a wallet, such as a session's challenge; never for a spec, which
/// is signed as EIP-712 typed data so that no text can pass for it.
pub fn verify_personal(owner: &Owner, message: &[u8], signature: &str) -> bool {
    match owner {
        Owner::Ed25519(_) => verify(owner, message, signature),
        Owner::Eth(address) => {
            let hex = signature.strip_prefix("eth:").unwrap_or(signature);
            let mut prefixed =
                format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
            prefixed.extend_from_slice(message);
            let digest: [u8; 32] = Keccak256::digest(&prefixed).into();
            hex.strip_prefix("0x")
                .and_then(|rsv| eth_recover(&digest, rsv))
                .is_some_and(|a| a == *address)
        }
    }
}

/// The address that made an EIP-712 signature `0x<r s v>` over `message`.
fn eth_signer(message: &[u8], signature: &str) -> Option<[u8; 20]> {
    eth_recover(&eip712::digest(message), signature.strip_prefix("eth:0x")?)
}

/// The address that signed `digest` with `<r s v>` (hex). A high S is refused: with
/// it, anyone could make a second valid signature from the owner's.
fn eth_recover(digest: &[u8; 32], rsv: &str) -> Option<[u8; 20]> {
    let rsv = decode_hex::<65>(rsv)?;
    let recovery = match rsv[64] {
        v @ (27 | 28) => v - 27,
        v @ (0 | 1) => v,
        _ => return None,
    };
    let signature = k256::ecdsa::Signature::from_slice(&rsv[..64]).ok()?;
    if signature.normalize_s() != signature {
        return None;
    }
    let key = k256::ecdsa::VerifyingKey::recover_from_prehash(
        digest,
        &signature,
        k256::ecdsa::RecoveryId::from_byte(recovery)?,
    )
    .ok()?;
    Some(eth_address(&key))
}

/// The last 20 bytes of the Keccak-256 of the uncompressed public key.
fn eth_address(key: &k256::ecdsa::VerifyingKey) -> [u8; 20] {
    let point = key.to_sec1_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != 2 * N || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keccak_and_ethereum_addresses_match_the_published_vectors() {
        assert_eq!(
            encode_hex(&Keccak256::digest(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        // web3.js's documented example key, and the EIP-712 specification's "Cow".
        let key = OwnerKey::parse(
            "eth-secret:0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        )
        .unwrap();
        assert_eq!(
            key.owner().to_string(),
            "eth:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
        );
        let cow = Keccak256::digest(b"cow");
        let cow = OwnerKey::parse(&format!("eth-secret:0x{}", encode_hex(&cow))).unwrap();
        assert_eq!(
            cow.owner().to_string(),
            "eth:0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
        );
        let signature = key.sign(b"xnode-push/2\npeer A\n");
        assert_eq!(signature, key.sign(b"xnode-push/2\npeer A\n"), "RFC 6979");
        assert!(verify(&key.owner(), b"xnode-push/2\npeer A\n", &signature));
        assert!(!verify(&key.owner(), b"xnode-push/2\npeer B\n", &signature));
    }

    #[test]
    fn personal_sign_matches_the_published_vector_and_nothing_else() {
        // web3.js's documented example: accounts.sign("Some data", key).
        let owner = Owner::parse("eth:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23").unwrap();
        let signature = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";
        assert!(verify_personal(&owner, b"Some data", signature));
        assert!(verify_personal(
            &owner,
            b"Some data",
            &format!("eth:{signature}")
        ));
        assert!(!verify_personal(&owner, b"Some datb", signature));
        // Nor does it pass as the typed-data signature a spec needs.
        assert!(!verify(&owner, b"Some data", &format!("eth:{signature}")));
        // An ed25519 owner's signature is the same either way.
        let key = OwnerKey::generate(KeyKind::Ed25519).unwrap();
        let signed = key.sign(b"challenge");
        assert!(verify_personal(&key.owner(), b"challenge", &signed));
        assert!(!verify_personal(&key.owner(), b"challengf", &signed));
    }

    #[test]
    fn a_high_s_twin_of_a_valid_signature_is_refused() {
        let key = OwnerKey::generate(KeyKind::Eth).unwrap();
        for i in 0..16u8 {
            let message = [b'm', i];
            let signature = key.sign(&message);
            assert!(verify(&key.owner(), &message, &signature));
            // (r, n - s) with the other recovery id recovers the same key.
            let rsv = decode_hex::<65>(&signature["eth:0x".len()..]).unwrap();
            let low = k256::ecdsa::Signature::from_slice(&rsv[..64]).unwrap();
            let high = k256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
            let mut twin = high.to_bytes().to_vec();
            twin.push(rsv[64] ^ 1);
            let twin = format!("eth:0x{}", encode_hex(&twin));
            assert!(!verify(&key.owner(), &message, &twin), "{twin}");
        }
    }

    #[test]
    fn keys_of_both_kinds_round_trip_and_sign() {
        for kind in [KeyKind::Ed25519, KeyKind::Eth] {
            let key = OwnerKey::generate(kind).unwrap();
            let again = OwnerKey::parse(&key.to_secret_string()).unwrap();
            assert_eq!(again.owner(), key.owner());
            let owner = Owner::parse(&key.owner().to_string()).unwrap();
            let signature = key.sign(b"payload");
            assert!(verify(&owner, b"payload", &signature));
            assert!(!verify(&owner, b"payloaD", &signature));
            let other = OwnerKey::generate(kind).unwrap();
            assert!(!verify(&other.owner(), b"payload", &signature));
            assert!(!format!("{key:?}").contains(&key.to_secret_string()));
        }
    }

    #[test]
    fn malformed_keys_and_signatures_are_refused() {
        for bad in [
            "",
            "ed25519-secret:AAAA",
            "ed25519-secret:not base64",
            "eth-secret:0x12",
            "eth-secret:0x0000000000000000000000000000000000000000000000000000000000000000",
            "rsa-secret:AAAA",
        ] {
            assert!(OwnerKey::parse(bad).is_err(), "{bad}");
        }
        let ed = OwnerKey::generate(KeyKind::Ed25519).unwrap().owner();
        let eth = OwnerKey::generate(KeyKind::Eth).unwrap().owner();
        for bad in [
            "",
            "ed25519:",
            "ed25519:AAAA",
            "eth:0x",
            "eth:0xzz",
            &"f".repeat(200),
        ] {
            assert!(!verify(&ed, b"m", bad), "{bad}");
            assert!(!verify(&eth, b"m", bad), "{bad}");
        }
        // A signature of the other kind never passes.
        let ed_sig = OwnerKey::generate(KeyKind::Ed25519).unwrap().sign(b"m");
        assert!(!verify(&eth, b"m", &ed_sig));
    }
}
