//! Secrets a spec carries, encrypted to the nodes that may read them.
//!
//! A node's recipient is its ed25519 mesh identity, used the way age uses an
//! `ssh-ed25519` key: an owner needs nothing from a node but its peer id, which already
//! names its public key, and a node needs no key besides the one it already guards.
//! The files are standard ASCII-armored age files, so `age -d -i` with the same key
//! written in OpenSSH form reads them too.

use std::io::{Read as _, Write as _};
use std::iter;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::ssh::{Identity, Recipient};
use ssh_key::LineEnding;
use ssh_key::private::Ed25519Keypair;
use ssh_key::public::Ed25519PublicKey;
use zeroize::Zeroizing;

/// Largest plaintext a secret may hold; larger data belongs in a store path or a
/// state directory, not a spec.
pub const MAX_PLAINTEXT: usize = 32 * 1024;

/// Why a secret could not be encrypted or decrypted. Never holds plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A recipient is not a node this can encrypt to.
    #[error("{0}")]
    Recipient(String),
    /// No recipient was given.
    #[error("name at least one node to encrypt to")]
    NoRecipients,
    /// The secret is too large to travel in a spec.
    #[error("the secret is {0} bytes; at most {MAX_PLAINTEXT} fit in a spec")]
    TooLarge(usize),
    /// age could not encrypt.
    #[error("could not encrypt: {0}")]
    Encrypt(String),
    /// Not an age file, or one this node holds no key for, or one that was tampered
    /// with.
    #[error("{0}")]
    Decrypt(String),
}

/// A node's ed25519 public key as the OpenSSH line age reads as an `ssh-ed25519`
/// recipient.
fn recipient(public: &[u8; 32]) -> Result<Recipient, SecretError> {
    let key = ssh_key::PublicKey::from(Ed25519PublicKey(*public));
    let line = key
        .to_openssh()
        .map_err(|e| SecretError::Encrypt(e.to_string()))?;
    line.parse()
        .map_err(|e| SecretError::Encrypt(format!("not an ed25519 public key: {e:?}")))
}

/// The ed25519 public key a peer id names: an ed25519 peer id is its public key
/// itself, not a hash of it, so encrypting to a node needs nothing but its id.
pub fn peer_public_key(peer_id: &str) -> Result<[u8; 32], SecretError> {
    let bad = |why: &str| SecretError::Recipient(format!("{peer_id:?} {why}"));
    let peer: libp2p_identity::PeerId = peer_id
        .parse()
        .map_err(|_| bad("is not a peer id (xnodectl mesh members lists them)"))?;
    let multihash = peer.as_ref();
    // The identity multihash (code 0) carries the key; any other is a hash of one.
    if multihash.code() != 0 {
        return Err(bad("does not carry its public key (not an ed25519 node)"));
    }
    libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
        .ok()
        .and_then(|key| key.try_into_ed25519().ok())
        .map(|key| key.to_bytes())
        .ok_or_else(|| bad("does not name an ed25519 key"))
}

/// Encrypts `plaintext` to every node in `recipients` (their ed25519 public keys),
/// ASCII-armored, as a spec's `credentials.<name>.age` carries it.
pub fn encrypt(recipients: &[[u8; 32]], plaintext: &[u8]) -> Result<String, SecretError> {
    if recipients.is_empty() {
        return Err(SecretError::NoRecipients);
    }
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(SecretError::TooLarge(plaintext.len()));
    }
    let recipients = recipients
        .iter()
        .map(recipient)
        .collect::<Result<Vec<_>, _>>()?;
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SecretError::Encrypt(e.to_string()))?;
    let io = |e: std::io::Error| SecretError::Encrypt(e.to_string());
    let armor = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).map_err(io)?;
    let mut writer = encryptor.wrap_output(armor).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    let bytes = writer
        .finish()
        .and_then(ArmoredWriter::finish)
        .map_err(io)?;
    String::from_utf8(bytes).map_err(|e| SecretError::Encrypt(e.to_string()))
}

/// A node's key for reading the secrets sent to it.
pub struct NodeKey(Identity);

impl NodeKey {
    /// The key of the node whose mesh identity is `keypair`.
    pub fn from_keypair(keypair: &libp2p_identity::Keypair) -> Result<NodeKey, SecretError> {
        let pair = keypair.clone().try_into_ed25519().map_err(|_| {
            SecretError::Decrypt("the node's mesh key is not an ed25519 key".into())
        })?;
        let secret = pair.secret();
        let seed: &[u8; 32] = secret
            .as_ref()
            .try_into()
            .map_err(|_| SecretError::Decrypt("the node's mesh key is malformed".into()))?;
        NodeKey::new(seed)
    }

    /// The key of the node whose ed25519 key pair has the 32-byte secret `seed`.
    pub fn new(seed: &[u8; 32]) -> Result<NodeKey, SecretError> {
        let pair = Ed25519Keypair::from_seed(seed);
        let pem = ssh_key::PrivateKey::from(pair)
            .to_openssh(LineEnding::LF)
            .map_err(|e| SecretError::Decrypt(format!("the node key: {e}")))?;
        let identity = Identity::from_buffer(pem.as_bytes(), None)
            .map_err(|e| SecretError::Decrypt(format!("the node key: {e}")))?;
        Ok(NodeKey(identity))
    }

    /// Decrypts an armored age file sent to this node. The plaintext is wiped from
    /// memory when dropped.
    pub fn decrypt(&self, armored: &str) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let fail = |e: &dyn std::fmt::Display| SecretError::Decrypt(e.to_string());
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(armored.as_bytes()))
            .map_err(|e| fail(&e))?;
        let reader = decryptor
            .decrypt(iter::once(&self.0 as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => SecretError::Decrypt(
                    "it is not encrypted to this node; encrypt it with \
                     `xnodectl secret encrypt --to <this node's peer id>`"
                        .into(),
                ),
                e => fail(&e),
            })?;
        // Room for the largest secret at once: growing would free unwiped copies.
        let mut plaintext = Zeroizing::new(Vec::with_capacity(MAX_PLAINTEXT + 1));
        reader
            .take(MAX_PLAINTEXT as u64 + 1)
            .read_to_end(&mut plaintext)
            .map_err(|e| fail(&e))?;
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SecretError::TooLarge(plaintext.len()));
        }
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests;
