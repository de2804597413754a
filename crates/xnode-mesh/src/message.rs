//! What members tell each other on their fleet's topic, and the checks every message
//! passes before anything believes it. Messages arrive from anyone in a permissionless
//! mesh, so each is bounded and validated field by field.
//!
//! The format evolves without breaking a rolling upgrade: a field a newer node adds is
//! optional and ignored by an older one (no message refuses unknown fields), and a
//! message type an older node does not know is passed on and otherwise ignored. A
//! change an older node could not live with gets a new topic (the version at the end
//! of [`crate::fleet::topic`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::fleet::{Certificate, Revocation};

pub use xnode_api::mesh::{Resources, Service};

/// The largest message accepted: a heartbeat with every field at its limit fits.
pub const MAX_MESSAGE: usize = 64 * 1024;
const MAX_SERVICES: usize = 256;
const MAX_ADDRESSES: usize = 16;
const MAX_LABELS: usize = 64;
/// Closures a member says it holds: its workloads' roots, with room to spare.
pub const MAX_CLOSURES: usize = 512;
/// Revocations in one message.
pub const MAX_REVOCATIONS_PER_MESSAGE: usize = 64;

/// One message on a fleet's topic. The sender is the gossip message's signed source,
/// never a field, so no member can speak for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// "I am alive, and this is me."
    Heartbeat(Box<Heartbeat>),
    /// "This member's heartbeat `seq` is the last I saw, and it no longer answers."
    Gone {
        /// The member, as a peer id.
        peer: String,
        /// Its incarnation and last heartbeat seen.
        incarnation: u64,
        /// The heartbeat's number.
        seq: u64,
    },
    /// The owner's revocations, passed on by members so that one that was away hears
    /// of them too. Each carries the owner's signature: it matters not who sends it.
    Revocations {
        /// At most [`MAX_REVOCATIONS_PER_MESSAGE`].
        revocations: Vec<Revocation>,
    },
    /// A message type from a newer release: passed on, otherwise ignored.
    #[serde(other)]
    Unknown,
}

/// What a member says about itself, several times a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Its certificate: the owner's word that it is a member.
    pub cert: Certificate,
    /// Its `node.name`.
    pub node: String,
    /// When its process started (ms since the epoch): a restarted member is newer.
    pub incarnation: u64,
    /// Counts up within an incarnation; a heartbeat not above the last is old news.
    pub seq: u64,
    /// Its `node.labels`, for placement.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What it has.
    pub resources: Resources,
    /// The services of its workloads (`expose`).
    #[serde(default)]
    pub services: Vec<Service>,
    /// Where it listens (multiaddrs).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// How long it has been quorate without a break, in ms: a member owns mesh
    /// workloads only once this passes the hold-down.
    #[serde(default)]
    pub settled_ms: u64,
    /// The mesh workloads it can run: name → hash of the definition.
    #[serde(default)]
    pub offers: BTreeMap<String, String>,
    /// The mesh workloads it runs now.
    #[serde(default)]
    pub running: BTreeSet<String>,
    /// How it is doing: its place in the fleet spec's rollout, and its health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::Report>,
    /// The closures it holds and serves to members: the hash parts of their roots'
    /// store paths (a Nix store holds a valid path's whole closure).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub closures: BTreeSet<String>,
}

/// Why a message was not believed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadMessage {
    /// Over [`MAX_MESSAGE`].
    #[error("{0} bytes is over the limit of {MAX_MESSAGE}")]
    TooLarge(usize),
    /// Not a message at all.
    #[error("not a membership message: {0}")]
    Malformed(String),
    /// A field out of bounds.
    #[error("{field}: {why}")]
    Field {
        /// Which.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl Message {
    /// Parses and checks a message from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Message, BadMessage> {
        if bytes.len() > MAX_MESSAGE {
            return Err(BadMessage::TooLarge(bytes.len()));
        }
        let message: Message =
            serde_json::from_slice(bytes).map_err(|e| BadMessage::Malformed(e.to_string()))?;
        match &message {
            Message::Heartbeat(hb) => hb.check()?,
            Message::Revocations { revocations } => at_most(
                "revocations",
                revocations.len(),
                MAX_REVOCATIONS_PER_MESSAGE,
            )?,
            Message::Gone { .. } | Message::Unknown => {}
        }
        Ok(message)
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn field(field: &'static str, result: Result<(), String>) -> Result<(), BadMessage> {
    result.map_err(|why| BadMessage::Field { field, why })
}

fn at_most(field_name: &'static str, n: usize, max: usize) -> Result<(), BadMessage> {
    field(
        field_name,
        if n > max {
            Err(format!("{n} entries, at most {max}"))
        } else {
            Ok(())
        },
    )
}

/// A workload's definition hash, as [`crate::placement::definition_hash`] makes it.
fn definition_hash(h: &str) -> Result<(), String> {
    if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{h:?} is not a definition hash (16 hex digits)"))
    }
}

impl Heartbeat {
    fn check(&self) -> Result<(), BadMessage> {
        use xnode_spec::rules;
        field("node", rules::dns_label(&self.node))?;
        at_most("labels", self.labels.len(), MAX_LABELS)?;
        for (k, v) in &self.labels {
            field("labels", rules::label_key(k))?;
            field("labels", rules::label_value(v))?;
        }
        at_most("services", self.services.len(), MAX_SERVICES)?;
        for s in &self.services {
            field("services", rules::dns_label(&s.name))?;
            let known = matches!(s.protocol.as_str(), "tcp" | "udp");
            field(
                "services",
                if known {
                    Ok(())
                } else {
                    Err(format!("protocol {:?} is not tcp or udp", s.protocol))
                },
            )?;
        }
        at_most("offers", self.offers.len(), xnode_spec::MAX_MESH_WORKLOADS)?;
        for (name, hash) in &self.offers {
            field("offers", rules::workload_name(name))?;
            field("offers", definition_hash(hash))?;
        }
        at_most(
            "running",
            self.running.len(),
            xnode_spec::MAX_MESH_WORKLOADS,
        )?;
        for name in &self.running {
            field("running", rules::workload_name(name))?;
        }
        at_most("closures", self.closures.len(), MAX_CLOSURES)?;
        for hash in &self.closures {
            field("closures", rules::hash_part(hash))?;
        }
        if let Some(r) = &self.report {
            field("report", crate::report::check(r))?;
        }
        at_most("addresses", self.addresses.len(), MAX_ADDRESSES)?;
        for a in &self.addresses {
            field(
                "addresses",
                a.parse::<multiaddr::Multiaddr>()
                    .map(|_| ())
                    .map_err(|e| format!("{a:?}: {e}")),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn heartbeat(node: &str, seq: u64) -> Heartbeat {
        Heartbeat {
            cert: crate::fleet::testing::example(),
            node: node.into(),
            incarnation: 1,
            seq,
            labels: BTreeMap::from([("region".into(), "eu".into())]),
            resources: Resources {
                cpus: 2,
                memory: 1 << 30,
                memory_free: 1 << 29,
                disk: 1 << 34,
                disk_free: 1 << 33,
            },
            services: vec![Service {
                name: "web".into(),
                port: 8080,
                protocol: "tcp".into(),
            }],
            addresses: vec!["/ip4/127.0.0.1/tcp/7720".into()],
            settled_ms: 12_000,
            offers: BTreeMap::from([("db".into(), "ab".repeat(8))]),
            running: BTreeSet::from(["db".into()]),
            report: Some(crate::report::Report::default()),
            closures: Default::default(),
        }
    }

    #[test]
    fn a_heartbeat_with_every_field_at_its_limit_is_accepted() {
        let mut h = heartbeat("n".repeat(63).as_str(), 1);
        let name = |i: usize, len: usize| format!("{i:0>len$}");
        h.labels = (0..MAX_LABELS)
            .map(|i| (name(i, 63), "v".repeat(63)))
            .collect();
        h.services = (0..MAX_SERVICES)
            .map(|i| Service {
                name: format!("s{}", name(i, 62)),
                port: 65535,
                protocol: "udp".into(),
            })
            .collect();
        h.addresses = (0..MAX_ADDRESSES)
            .map(|i| format!("/ip6/2001:db8::{i:x}/tcp/65535"))
            .collect();
        let workloads = xnode_spec::MAX_MESH_WORKLOADS;
        let w = |i: usize| format!("w{}", name(i, xnode_spec::rules::MAX_WORKLOAD_NAME - 1));
        h.offers = (0..workloads).map(|i| (w(i), "ab".repeat(8))).collect();
        h.running = (0..workloads).map(w).collect();
        h.closures = (0..MAX_CLOSURES).map(|i| name(i, 32)).collect();
        let bytes = Message::Heartbeat(Box::new(h)).encode();
        assert!(bytes.len() <= MAX_MESSAGE, "{} bytes", bytes.len());
        assert!(matches!(Message::decode(&bytes), Ok(Message::Heartbeat(_))));
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Heartbeat(Box::new(heartbeat("n1", 7))),
            Message::Gone {
                peer: "12D3KooW".into(),
                incarnation: 1,
                seq: 3,
            },
        ] {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn a_newer_nodes_messages_are_understood() {
        let hb = Message::Heartbeat(Box::new(heartbeat("n1", 7)));
        let mut hb = serde_json::to_value(hb).unwrap();
        hb["zone"] = "new field".into();
        hb["resources"]["gpus"] = 2.into();
        let decoded = Message::decode(hb.to_string().as_bytes()).unwrap();
        assert_eq!(decoded, Message::Heartbeat(Box::new(heartbeat("n1", 7))));
        let newer = br#"{"type":"takeover","workload":"db"}"#;
        assert_eq!(Message::decode(newer), Ok(Message::Unknown));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let with = |f: fn(&mut Heartbeat)| {
            let mut hb = heartbeat("n1", 1);
            f(&mut hb);
            Message::Heartbeat(Box::new(hb)).encode()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not a membership message"),
            (b"{\"type\":\"heartbeat\"}".to_vec(), "missing field"),
            (vec![b' '; MAX_MESSAGE + 1], "over the limit"),
            (with(|h| h.node = "-x-".into()), "node:"),
            (
                with(|h| h.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect()),
                "labels: 65 entries",
            ),
            (with(|h| h.services[0].protocol = "sctp".into()), "sctp"),
            (with(|h| h.services[0].name = "no such".into()), "services:"),
            (
                with(|h| h.addresses = vec!["not an address".into()]),
                "addresses:",
            ),
            (
                with(|h| {
                    h.offers.insert("db".into(), "zz".into());
                }),
                "not a definition hash",
            ),
            (
                with(|h| {
                    h.running.insert("Not A Name".into());
                }),
                "running:",
            ),
            (
                with(|h| {
                    h.offers = (0..=xnode_spec::MAX_MESH_WORKLOADS)
                        .map(|i| (format!("w{i}"), "ab".repeat(8)))
                        .collect();
                }),
                "offers:",
            ),
            (
                with(|h| {
                    if let Some(r) = &mut h.report {
                        r.node.version = "v".repeat(100);
                    }
                }),
                "report: version",
            ),
            (
                with(|h| h.addresses = vec!["/ip4/127.0.0.1/tcp/1".into(); 17]),
                "17 entries",
            ),
            (
                Message::Revocations {
                    revocations: vec![crate::fleet::testing::example_revocation(); 65],
                }
                .encode(),
                "revocations: 65 entries",
            ),
        ];
        for (bytes, why) in cases {
            let err = Message::decode(&bytes).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
