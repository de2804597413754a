//! Nix store paths between the members of a fleet, so a fleet needs no binary cache
//! and a node taking over a workload fetches its closure from the members that hold
//! it. Each node serves its store's narinfos and NARs to members (`serve`), over one
//! libp2p protocol (`wire`), and runs a local binary cache (`cache`) that Nix uses as a
//! substituter and that answers from them. Nix checks every byte as it checks any
//! cache's: the narinfo's signature against its `trusted-public-keys`, the NAR against
//! the narinfo's hash.

pub mod cache;
pub mod serve;
pub mod store;
pub mod trust;
pub mod wire;

pub use cache::{Cache, Peers};
pub use serve::{Gate, Limits, Server};
pub use store::{LocalStore, StoreError};
pub use trust::Trust;
pub use wire::{HashPart, PROTOCOL};
