//! The shipped examples are valid, and the typed spec, its serialization, the JSON
//! Schema and the validator all agree on the format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;

use xnode_spec::{Placement, parse, parse_value, schema};

fn examples() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 2, "examples/ holds a small and a large spec");
    out
}

#[test]
fn every_example_is_valid() {
    for (path, bytes) in examples() {
        if let Err(invalid) = parse(&bytes) {
            panic!("{}: {invalid}", path.display());
        }
    }
}

#[test]
fn the_large_example_is_realistic() {
    let (_, bytes) = examples()
        .into_iter()
        .find(|(p, _)| p.ends_with("large.json"))
        .unwrap();
    let spec = parse(&bytes).unwrap().spec;
    assert!(spec.workloads.len() >= 12);
    assert!(
        spec.workloads
            .values()
            .any(|w| matches!(&w.placement, Placement::Mesh(m) if m.replicas > 1))
    );
    assert!(
        spec.workloads
            .values()
            .filter(|w| w.health.http.is_some() || w.health.tcp.is_some())
            .count()
            >= 10
    );
    assert!(
        spec.workloads
            .values()
            .filter(|w| w.resources.memory.is_some())
            .count()
            >= 10
    );
}

/// Serializing a validated spec and validating that again gives the same spec: the
/// serde names (which the schema is derived from) are the names the validator reads.
#[test]
fn serialized_specs_validate_to_themselves() {
    for (path, bytes) in examples() {
        let spec = parse(&bytes).unwrap().spec;
        let again = parse_value(&serde_json::to_value(&spec).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .spec;
        assert_eq!(again, spec, "{}", path.display());
    }
}

#[test]
fn the_schema_describes_every_field_and_forbids_others() {
    let schema = schema();
    assert_eq!(schema["title"], "XnodeOS node spec");
    assert_eq!(schema["additionalProperties"], false);
    let required: Vec<_> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["version", "node"]);
    let workload = &schema["$defs"]["Workload"];
    assert_eq!(workload["additionalProperties"], false);
    let fields = workload["properties"].as_object().unwrap();
    // Every field the large example uses is in the schema.
    let (_, bytes) = examples()
        .into_iter()
        .find(|(p, _)| p.ends_with("large.json"))
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for w in doc["workloads"].as_object().unwrap().values() {
        for key in w.as_object().unwrap().keys() {
            assert!(
                fields.contains_key(key),
                "schema lacks workload field {key}"
            );
        }
    }
    assert_eq!(schema["$defs"]["Duration"]["type"], "string");
    assert_eq!(schema["$defs"]["Size"]["anyOf"][1]["type"], "integer");
}

/// A real JSON Schema validator, not the spec's own, accepts every example under the
/// schema, and refuses what the schema forbids: editors and other tools that check
/// specs with the schema agree with xnoded.
#[test]
fn a_json_schema_validator_accepts_every_example() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    for (path, bytes) in examples() {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    for bad in [
        serde_json::json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {"command": ["/bin/x"], "kind": "daemon"}}}),
        serde_json::json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {"command": ["/bin/x"], "stop": {"signal": "SIGSTOP"}}}}),
        serde_json::json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {"command": ["/bin/x"], "credentials": {"k": {"vault": "x"}}}}}),
        serde_json::json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {"command": ["/bin/x"], "state": "yes"}}}),
    ] {
        assert!(!validator.is_valid(&bad), "the schema allows {bad}");
    }
}
