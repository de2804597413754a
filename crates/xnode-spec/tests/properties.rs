//! Properties over generated input: nothing panics the validator, and the hash sees
//! through key order and whitespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use xnode_spec::{hash_value, parse, parse_value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        // Strings close to the spec's own vocabulary reach deeper rules.
        prop::sample::select(vec![
            "/bin/sh",
            "local",
            "512M",
            "30s",
            "50%",
            "/ip4/1.2.3.4/tcp/1",
            "CAP_KILL",
            "on-failure",
            "ed25519:"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys from the spec's own field names, and some others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "version",
            "node",
            "name",
            "owner",
            "labels",
            "mesh",
            "listen",
            "bootstrap",
            "port",
            "workloads",
            "w",
            "command",
            "store_paths",
            "environment",
            "resources",
            "memory",
            "cpu",
            "tasks",
            "restart",
            "policy",
            "health",
            "http",
            "tcp",
            "expose",
            "service",
            "sandbox",
            "relax",
            "placement",
            "replicas",
            "reload",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,6}",
    ]
}

/// A valid spec with most of the schema in use.
fn rich_spec() -> Value {
    json!({
        "version": 1,
        "node": {"name": "n1", "labels": {"zone": "a"}, "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
        "mesh": {"listen": ["/ip4/0.0.0.0/tcp/7720"], "bootstrap": ["/ip4/10.0.0.1/tcp/7720"], "mdns": false, "port": 7720},
        "workloads": {
            "web": {
                "command": ["/bin/web", "-p", "80"], "environment": {"A": "b"}, "user": "web",
                "resources": {"cpu": "50%", "memory": "512M", "tasks": 10},
                "restart": {"policy": "always", "delay": "1s"}, "reload": ["/bin/kill", "-HUP", "$MAINPID"],
                "health": {"timeout": "10s", "http": {"port": 80, "path": "/"}},
                "expose": [{"service": "web", "port": 80}],
                "sandbox": {"relax": ["protect-home"], "capabilities": ["CAP_NET_BIND_SERVICE"]},
                "placement": {"mesh": {"replicas": 2, "labels": {"zone": "a"}}}
            }
        }
    })
}

/// Every JSON pointer into a value.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// A step of a linear congruential generator: enough to vary layouts, and repeatable.
fn next(seed: &mut u64) -> usize {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as usize
}

/// Writes JSON with keys in an order given by `seed` and whitespace between tokens.
fn shuffled(v: &Value, seed: &mut u64, out: &mut String) {
    let ws = [" ", "\n", "\t", "", "  \r\n"];
    match v {
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            for i in (1..entries.len()).rev() {
                entries.swap(i, next(seed) % (i + 1));
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws[next(seed) % ws.len()]);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(ws[next(seed) % ws.len()]);
                out.push(':');
                shuffled(v, seed, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                shuffled(v, seed, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        let _ = parse_value(&v);
        let _ = parse(v.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn any_subtree_of_a_valid_spec_replaced_never_panics(pick in any::<prop::sample::Index>(), replacement in any_json()) {
        let mut spec = rich_spec();
        let mut all = Vec::new();
        pointers(&spec, String::new(), &mut all);
        let at = pick.get(&all);
        *spec.pointer_mut(at).unwrap() = replacement;
        if let Err(invalid) = parse_value(&spec) {
            prop_assert!(!invalid.problems.is_empty());
        }
    }

    #[test]
    fn hash_ignores_key_order_and_whitespace(v in any_json(), seed in any::<u64>()) {
        let mut text = String::new();
        shuffled(&v, &mut { seed }, &mut text);
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(hash_value(&reparsed), hash_value(&v));
    }

    #[test]
    fn a_valid_spec_hashes_the_same_however_written(seed in any::<u64>()) {
        let spec = rich_spec();
        let mut text = String::new();
        shuffled(&spec, &mut { seed }, &mut text);
        let a = parse(text.as_bytes()).unwrap();
        let b = parse(spec.to_string().as_bytes()).unwrap();
        prop_assert_eq!(a.hash, b.hash);
        prop_assert_eq!(a.spec, b.spec);
    }
}

#[test]
fn a_change_of_content_changes_the_hash() {
    let a = parse_value(&rich_spec()).unwrap().hash;
    let mut other = rich_spec();
    other["workloads"]["web"]["command"][2] = json!("81");
    assert_ne!(a, parse_value(&other).unwrap().hash);
}

#[test]
fn hostile_shapes_are_rejected_without_panicking() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let deep_objects = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"   \n".to_vec(),
        b"null".to_vec(),
        b"\xff\xfe{}".to_vec(),
        b"{\"version\": 1, \"node\": {\"name\": \"\xc3\x28\"}}".to_vec(),
        deep.into_bytes(),
        deep_objects.into_bytes(),
        b"{\"version\": 1e400}".to_vec(),
        b"{\"version\": 1, \"version\": 1}".to_vec(),
    ];
    for bytes in cases {
        let invalid = parse(&bytes).expect_err("hostile input is rejected");
        assert!(!invalid.problems.is_empty());
    }
}

#[test]
fn a_huge_map_of_workloads_is_refused_by_count() {
    let workloads: Map<String, Value> = (0..xnode_spec::MAX_WORKLOADS + 1)
        .map(|i| (format!("w{i}"), json!({"command": ["/bin/true"]})))
        .collect();
    let invalid =
        parse_value(&json!({"version": 1, "node": {"name": "n"}, "workloads": workloads}))
            .unwrap_err();
    assert_eq!(invalid.problems.len(), 1);
    assert_eq!(invalid.problems[0].path, "workloads");
}

#[test]
fn mesh_workloads_are_bounded_by_what_a_heartbeat_carries() {
    let spec = |n: usize| {
        let workloads: Map<String, Value> = (0..n)
            .map(|i| {
                let w = json!({"command": ["/bin/true"], "placement": {"mesh": {}}});
                (format!("w{i}"), w)
            })
            .collect();
        json!({"version": 1, "node": {"name": "n", "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, "workloads": workloads})
    };
    assert!(parse_value(&spec(xnode_spec::MAX_MESH_WORKLOADS)).is_ok());
    let invalid = parse_value(&spec(xnode_spec::MAX_MESH_WORKLOADS + 1)).unwrap_err();
    assert_eq!(invalid.problems.len(), 1);
    assert!(
        invalid.problems[0].reason.contains("placed on the mesh"),
        "{invalid}"
    );
}
