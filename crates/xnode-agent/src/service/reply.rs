//! What the loop answers a request with.

use serde::Serialize;
use serde_json::Value;

/// A request's answer from the loop: its data, or why it was refused (a sentence the
/// API hands on with the code `refused`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply(pub Result<Value, String>);

impl Reply {
    /// Carried out; `data` is the answer.
    pub fn ok(data: impl Serialize) -> Reply {
        Reply(serde_json::to_value(data).map_err(|e| format!("cannot encode the answer: {e}")))
    }

    /// Refused, with why.
    pub fn error(why: impl Into<String>) -> Reply {
        Reply(Err(why.into()))
    }
}
