//! Value types of the spec that have a textual form: sizes, durations, percentages,
//! owner keys and capabilities. Each parses from what a person writes and prints back
//! in a form that parses to the same value.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};
use sha3::{Digest as _, Keccak256};

/// Implements `Serialize` through `Display`, and a JSON Schema from its arguments
/// (a string with a pattern unless the caller gives the schema).
macro_rules! string_form {
    ($ty:ty, $name:literal, $pattern:literal, $description:literal) => {
        string_form!($ty, $name, {
            "type": "string",
            "pattern": $pattern,
            "description": $description,
        });
    };
    ($ty:ty, $name:literal, $schema:tt) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

/// A byte count, written as bytes or with a K/M/G/T/P suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

const SIZE_UNITS: [(char, u32); 5] = [('K', 10), ('M', 20), ('G', 30), ('T', 40), ('P', 50)];

impl Size {
    /// Parses "512M", "2G", "1048576".
    pub fn parse(s: &str) -> Result<Size, String> {
        let not_a_size = || format!("{s:?} is not a size (use e.g. \"512M\")");
        let (digits, shift) = match s.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = SIZE_UNITS
                    .iter()
                    .find(|(u, _)| *u == c)
                    .map(|(_, sh)| *sh)
                    .ok_or_else(not_a_size)?;
                (&s[..i], shift)
            }
            _ => (s, 0),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_a_size());
        }
        let n: u64 = digits.parse().map_err(|_| not_a_size())?;
        n.checked_mul(1 << shift)
            .map(Size)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let largest = SIZE_UNITS
            .iter()
            .rev()
            .find(|(_, shift)| self.0 != 0 && self.0.is_multiple_of(1 << shift));
        match largest {
            Some((unit, shift)) => write!(f, "{}{unit}", self.0 >> shift),
            None => write!(f, "{}", self.0),
        }
    }
}

string_form!(Size, "Size", {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]+[KMGTP]?$"},
        {"type": "integer", "minimum": 0},
    ],
    "description": "Bytes, or a number with K, M, G, T or P (powers of 1024), e.g. \"512M\".",
});

/// A span of time, kept in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(u64);

const DURATION_UNITS: [(&str, u64); 4] =
    [("h", 3_600_000), ("min", 60_000), ("s", 1000), ("ms", 1)];

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(ms)
    }

    /// Its length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Parses "250ms", "5s", "2min", "1h".
    pub fn parse(s: &str) -> Result<Duration, String> {
        let not_a_duration =
            || format!("{s:?} is not a duration (use e.g. \"30s\", \"500ms\", \"2min\")");
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(not_a_duration)?;
        let (digits, unit) = s.split_at(split);
        let scale = DURATION_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(not_a_duration)?;
        let n: u64 = digits.parse().map_err(|_| not_a_duration())?;
        n.checked_mul(scale)
            .map(Duration)
            .ok_or_else(|| format!("{s:?} is too long"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = DURATION_UNITS
            .iter()
            .find(|(_, scale)| self.0.is_multiple_of(*scale) && self.0 != 0)
            .copied()
            .unwrap_or(("ms", 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

string_form!(
    Duration,
    "Duration",
    "^[0-9]+(ms|s|min|h)$",
    "A whole number with a unit: ms, s, min or h, e.g. \"30s\"."
);

/// A CPU quota in percent of one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub u32);

impl Percent {
    /// The largest quota: a thousand cores.
    pub const MAX: u32 = 100_000;

    /// Parses "50%" or "250%".
    pub fn parse(s: &str) -> Result<Percent, String> {
        let bad = || {
            format!(
                "{s:?} is not a CPU quota (use a percentage of one core, e.g. \"50%\" or \"200%\")"
            )
        };
        let digits = s.strip_suffix('%').ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match digits.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Percent(n)),
            _ => Err(format!("{s:?} is out of range (1% to {}%)", Self::MAX)),
        }
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

string_form!(
    Percent,
    "Percent",
    "^[0-9]+%$",
    "A percentage of one CPU core, e.g. \"50%\"; \"200%\" is two cores."
);

/// The identity that may change a node's spec from the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An ed25519 public key.
    Ed25519([u8; 32]),
    /// An Ethereum address; its key signs EIP-712 typed data.
    Eth([u8; 20]),
}

impl Owner {
    /// Parses `ed25519:<base64>` or `eth:0x<40 hex>`.
    pub fn parse(s: &str) -> Result<Owner, String> {
        if let Some(b64) = s.strip_prefix("ed25519:") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| format!("{s:?}: the key after \"ed25519:\" is not base64"))?;
            let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                format!(
                    "{s:?}: an ed25519 public key is 32 bytes, this one is {}",
                    b.len()
                )
            })?;
            ed25519_dalek::VerifyingKey::from_bytes(&key)
                .map_err(|_| format!("{s:?} is not a valid ed25519 public key"))?;
            Ok(Owner::Ed25519(key))
        } else if let Some(addr) = s.strip_prefix("eth:") {
            parse_eth_address(addr)
                .map(Owner::Eth)
                .map_err(|why| format!("{s:?}: {why}"))
        } else {
            Err(format!(
                "{s:?} is not an owner (use \"ed25519:<base64 public key>\" or \"eth:0x<40 hex digits>\")"
            ))
        }
    }
}

impl Owner {
    /// The owner's key as an OpenSSH `authorized_keys` line, so the key that signs a
    /// node's specs also opens an SSH session to it. An Ethereum address is not a
    /// public key, so it has none.
    pub fn openssh_key(&self) -> Option<String> {
        let Owner::Ed25519(key) = self else {
            return None;
        };
        // RFC 8709 §4: string "ssh-ed25519", string key; each with a u32 length first.
        let mut blob = Vec::with_capacity(51);
        for part in [b"ssh-ed25519".as_slice(), key.as_slice()] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        Some(format!(
            "ssh-ed25519 {} xnode-owner",
            base64::engine::general_purpose::STANDARD.encode(blob)
        ))
    }
}

/// An Ethereum address; mixed case must carry a valid EIP-55 checksum.
fn parse_eth_address(addr: &str) -> Result<[u8; 20], String> {
    let hex = addr
        .strip_prefix("0x")
        .ok_or("an Ethereum address starts with 0x")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an Ethereum address is 0x and 40 hex digits".into());
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && eip55(&out) != hex {
        return Err("the address's mixed case is not a valid EIP-55 checksum (check for a typo, or write it in lower case)".into());
    }
    Ok(out)
}

/// The EIP-55 spelling of an address (without 0x).
fn eip55(addr: &[u8; 20]) -> String {
    let lower: String = addr.iter().map(|b| format!("{b:02x}")).collect();
    let hash = Keccak256::digest(lower.as_bytes());
    lower
        .char_indices()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Ed25519(key) => write!(
                f,
                "ed25519:{}",
                base64::engine::general_purpose::STANDARD.encode(key)
            ),
            Owner::Eth(addr) => write!(f, "eth:0x{}", eip55(addr)),
        }
    }
}

/// Read back as it is written: owners travel in the mesh's signed statements.
impl<'de> serde::Deserialize<'de> for Owner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Owner, D::Error> {
        let text = String::deserialize(d)?;
        Owner::parse(&text).map_err(serde::de::Error::custom)
    }
}

string_form!(
    Owner,
    "Owner",
    "^(ed25519:[A-Za-z0-9+/]{43}=|eth:0x[0-9a-fA-F]{40})$",
    "The owner's public identity: \"ed25519:<base64 public key>\" or \"eth:0x<address>\"."
);

/// A Linux capability, e.g. `CAP_NET_BIND_SERVICE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capability(&'static str);

/// The capabilities Linux knows (capability.h, through CAP_CHECKPOINT_RESTORE).
const CAPABILITIES: [&str; 41] = [
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

impl Capability {
    /// Parses a capability name as capabilities(7) spells it.
    pub fn parse(s: &str) -> Result<Capability, String> {
        CAPABILITIES
            .iter()
            .find(|c| **c == s)
            .map(|c| Capability(c))
            .ok_or_else(|| format!("{s:?} is not a Linux capability (e.g. \"CAP_NET_BIND_SERVICE\"; see capabilities(7))"))
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

string_form!(
    Capability,
    "Capability",
    "^CAP_[A-Z_]+$",
    "A Linux capability as capabilities(7) names it."
);

#[cfg(test)]
mod tests;
