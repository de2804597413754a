//! The EIP-712 digest a wallet signs for an owner statement, computed as
//! `eth_signTypedData_v4` does for this typed data:
//!
//! ```json
//! {"types": {"EIP712Domain": [{"name": "name", "type": "string"},
//!                             {"name": "version", "type": "string"}],
//!            "Statement": [{"name": "kind", "type": "string"},
//!                          {"name": "subject", "type": "string"},
//!                          {"name": "text", "type": "string"}]},
//!  "primaryType": "Statement",
//!  "domain": {"name": "XnodeOS", "version": "1"},
//!  "message": {"kind": "<first line>", "subject": "<second line>", "text": "<the whole text>"}}
//! ```

use sha3::{Digest as _, Keccak256};

const DOMAIN: &str = "EIP712Domain(string name,string version)";
const STATEMENT: &str = "Statement(string kind,string subject,string text)";

/// The digest of `text`'s typed data: its first line is the kind, its second the
/// subject (the node or the fleet it is about).
pub(super) fn digest(text: &[u8]) -> [u8; 32] {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines();
    let kind = lines.next().unwrap_or_default();
    let subject = lines.next().unwrap_or_default();
    let domain = hash_struct(DOMAIN, &[string("XnodeOS"), string("1")]);
    let message = hash_struct(STATEMENT, &[string(kind), string(subject), string(&text)]);
    typed(&domain, &message)
}

/// `keccak256(0x19 0x01 ‖ domain separator ‖ hashStruct(message))`.
fn typed(domain: &[u8; 32], message: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update([0x19, 0x01]);
    hasher.update(domain);
    hasher.update(message);
    hasher.finalize().into()
}

/// `hashStruct`: the type's hash, then each member already encoded as one word.
fn hash_struct(encoded_type: &str, members: &[[u8; 32]]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(Keccak256::digest(encoded_type.as_bytes()));
    for member in members {
        hasher.update(member);
    }
    hasher.finalize().into()
}

/// A `string` member is encoded as the hash of its bytes.
fn string(s: &str) -> [u8; 32] {
    Keccak256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(hex: &str) -> [u8; 32] {
        super::super::decode_hex::<32>(hex).unwrap_or_default()
    }

    fn left_padded(bytes: &[u8]) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[32 - bytes.len()..].copy_from_slice(bytes);
        w
    }

    /// The example of the EIP-712 specification ("Ether Mail"), step by step.
    #[test]
    fn the_specifications_example_hashes_as_published() {
        let contract = super::super::decode_hex::<20>("cccccccccccccccccccccccccccccccccccccccc")
            .unwrap_or_default();
        let domain = hash_struct(
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
            &[
                string("Ether Mail"),
                string("1"),
                left_padded(&[1]),
                left_padded(&contract),
            ],
        );
        assert_eq!(
            domain,
            word("f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f")
        );
        let person = |name: &str, wallet: &str| {
            let wallet = super::super::decode_hex::<20>(wallet).unwrap_or_default();
            hash_struct(
                "Person(string name,address wallet)",
                &[string(name), left_padded(&wallet)],
            )
        };
        let mail = hash_struct(
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)",
            &[
                person("Cow", "cd2a3d9f938e13cd947ec05abc7fe734df8dd826"),
                person("Bob", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
                string("Hello, Bob!"),
            ],
        );
        assert_eq!(
            mail,
            word("c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e")
        );
        assert_eq!(
            typed(&domain, &mail),
            word("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2")
        );
    }

    #[test]
    fn kind_and_subject_are_bound_to_the_text() {
        let a = digest(b"xnode-push/2\npeer A\ngeneration 1\n");
        assert_ne!(a, digest(b"xnode-push/2\npeer B\ngeneration 1\n"));
        assert_ne!(a, digest(b"xnode-revoke/1\npeer A\ngeneration 1\n"));
        assert_eq!(a, digest(b"xnode-push/2\npeer A\ngeneration 1\n"));
    }
}
