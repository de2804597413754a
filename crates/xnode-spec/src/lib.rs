//! The XnodeOS node spec: the one document that says what a node is and runs.
//!
//! Everything that changes a node goes through here first. [`parse`] turns bytes into a
//! [`Validated`] spec or an [`Invalid`] listing every problem with its JSON path;
//! [`SpecHash`] tells two nodes whether they hold the same spec; [`schema`] gives
//! editors the JSON Schema; [`plan::plan`] turns a spec and the units observed on a
//! node into the actions that reconcile them.

pub mod calendar;
mod error;
pub mod fleet;
pub mod fleet_spec;
mod hash;
pub mod json;
pub mod keys;
mod model;
mod path;
pub mod plan;
pub mod push;
mod read;
pub mod rules;
pub mod unit;
mod validate;
mod values;

use serde_json::Value;

pub use error::{Invalid, Problem};
pub use hash::{SpecHash, canonical_json, hash_value};
pub use model::*;
pub use validate::{
    MAX_AGE_CIPHERTEXT, MAX_CREDENTIALS, MAX_MESH_WORKLOADS, MAX_REPLICAS, MAX_WORKLOADS,
};
pub use values::{Capability, Duration, Owner, Percent, Size};

/// A spec that passed validation, with the hash of its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The spec.
    pub spec: Spec,
    /// Its content hash.
    pub hash: SpecHash,
}

/// Parses and validates a spec document.
///
/// ```
/// let ok = xnode_spec::parse(br#"{"version": 1, "node": {"name": "n1"}}"#).unwrap();
/// assert_eq!(ok.spec.node.name, "n1");
///
/// let bad = xnode_spec::parse(br#"{"version": 1, "node": {"name": "n 1"}}"#).unwrap_err();
/// assert_eq!(bad.problems[0].path, "node.name");
/// ```
///
/// Never panics, whatever the input: bytes that are not UTF-8, not JSON, nested
/// deeper than serde_json's limit of 128, naming a key twice in one object, or of any
/// size give an [`Invalid`].
pub fn parse(bytes: &[u8]) -> Result<Validated, Invalid> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Invalid::whole_document(format!(
            "is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )));
    }
    let value: Value = json::from_slice(bytes).map_err(|e| {
        Invalid::whole_document(if bytes.iter().all(u8::is_ascii_whitespace) {
            "is empty; a spec is a JSON object such as {\"version\": 1, \"node\": {\"name\": \"n1\"}}".to_owned()
        } else {
            format!("is not valid JSON: {e}")
        })
    })?;
    parse_value(&value)
}

/// Validates an already parsed document.
pub fn parse_value(value: &Value) -> Result<Validated, Invalid> {
    let spec = validate::spec(value).map_err(|problems| Invalid { problems })?;
    Ok(Validated {
        spec,
        hash: hash_value(value),
    })
}

/// The JSON Schema of the spec, for editors and for other tools that write specs.
pub fn schema() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<Spec>();
    schema.to_value()
}
