//! The local API between `xnoded` and its clients (`xnodectl`, `curl`, the console):
//! HTTP/1.1 and JSON on a unix socket, one request per connection. Every operation is
//! a [`Request`] with a route under `/v1` ([`ROUTES`]); a refusal is a status with
//! `{"error": {"code", "message"}}`. See `docs/api.md`.

mod client;
pub mod events;
pub mod fleet;
pub mod mesh;
pub mod node;
pub mod openapi;
mod request;
pub mod session;

pub use client::{ClientError, call, follow};
pub use node::{Generation, Outcome, Source};
pub use request::{Access, Method, ROUTES, Request, Route};

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xnode/api.sock";

/// Largest body either side reads: a spec of 10,000 workloads fits easily.
pub const MAX_MESSAGE: u64 = 64 << 20;

/// The body of every refusal: a stable code for programs and a sentence for people.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ErrorBody {
    /// The refusal.
    pub error: ErrorDetail,
}

/// A refusal.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ErrorDetail {
    /// `bad_request`, `forbidden`, `not_found`, `method_not_allowed`, `refused`,
    /// `too_large`, `invalid_spec` or `unavailable` (docs/api.md).
    pub code: String,
    /// Why, for a person.
    pub message: String,
}

/// What ends a stream that failed (its `error` event's data).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct StreamError {
    /// Why, for a person.
    pub message: String,
}
