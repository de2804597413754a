//! The Xnode mesh: every node a libp2p peer that knows the live members, their labels,
//! resources and services, and carries owners' signed specs to the nodes they are for.

pub mod membership;
pub mod message;
