//! The Xnode mesh: every node a libp2p peer that knows the live members, their labels,
//! resources and services, and carries owners' signed specs to the nodes they are for.
//!
//! The pure parts ([`membership`], [`message`], [`quorum`], [`placement`],
//! [`fencing`]) decide;
//! [`node`] is the network shell around them.

mod credibility;
pub mod fencing;
pub mod fleet;
mod handle;
pub mod identity;
pub mod membership;
pub mod message;
mod metrics;
pub mod node;
mod ownership;
pub mod placement;
pub mod quorum;
mod rate;
pub mod report;
pub mod resources;
pub mod rollout;
mod state_file;

pub use metrics::Metrics;
