use serde_json::{Value, json};

use super::signed::{Receiver, SignedFleetSpec, accept, sign};
use super::*;
use crate::keys::{KeyKind, OwnerKey};

const NOW: u64 = 1_800_000_000;

fn web(extra: Value) -> Value {
    let mut w = json!({"command": ["/bin/sleep", "infinity"],
                       "placement": {"mesh": {"replicas": 2}}});
    if let (Some(w), Some(extra)) = (w.as_object_mut(), extra.as_object()) {
        w.extend(extra.clone());
    }
    json!({"version": 1, "workloads": {"web": w}})
}

#[test]
fn a_fleet_spec_is_read_with_its_rollout_policy() {
    let f = parse_value(&web(json!({"rollout": {"max_parallel": 3, "canary": 0,
        "min_healthy_time": "2s", "auto_revert": false}})))
    .unwrap();
    let r = f.spec.workloads["web"].rollout;
    assert_eq!(
        (
            r.max_parallel,
            r.canary,
            r.min_healthy_time.as_millis(),
            r.auto_revert
        ),
        (3, 0, 2000, false)
    );
    let d = parse_value(&web(json!({}))).unwrap().spec.rollout();
    assert_eq!(d, Rollout::default());
    assert_eq!(
        (
            d.max_parallel,
            d.canary,
            d.min_healthy_time.as_millis(),
            d.auto_revert
        ),
        (1, 1, 10_000, true),
        "the defaults are the issue's: Nomad's update block"
    );
    // Serialized and read again, it is the same spec: the schema's names are the
    // validator's.
    let again = parse_value(&serde_json::to_value(&f.spec).unwrap()).unwrap();
    assert_eq!(again.spec, f.spec);
}

#[test]
fn bad_fleet_specs_say_where_and_why() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([]), "", "expected an object"),
        (json!({"workloads": {}}), "version", "missing"),
        (json!({"version": 2}), "version", "not supported"),
        (json!({"version": 1, "node": {}}), "node", "unknown field"),
        (
            json!({"version": 1, "workloads": {"web": {"command": ["/bin/true"]}}}),
            "workloads.web.placement",
            "run on the mesh",
        ),
        (
            web(json!({"rollout": {"max_parallel": 0}})),
            "workloads.web.rollout.max_parallel",
            "",
        ),
        (
            web(json!({"rollout": {"canary": -1}})),
            "workloads.web.rollout.canary",
            "",
        ),
        (
            web(json!({"rollout": {"min_healthy_time": "2d"}})),
            "workloads.web.rollout.min_healthy_time",
            "not a duration",
        ),
        (
            web(json!({"rollout": {"min_healthy_time": "2h"}})),
            "workloads.web.rollout.min_healthy_time",
            "out of range",
        ),
        (
            web(json!({"rollout": {"auto_revert": "yes"}})),
            "workloads.web.rollout.auto_revert",
            "true or false",
        ),
        (
            web(json!({"rollout": {"maxParallel": 2}})),
            "workloads.web.rollout.maxParallel",
            "did you mean \"max_parallel\"",
        ),
        (
            web(json!({"comand": []})),
            "workloads.web.comand",
            "did you mean \"command\"",
        ),
        (
            json!({"version": 1, "workloads": {"no such": {"command": ["/bin/true"],
                   "placement": {"mesh": {}}}}}),
            "workloads[\"no such\"]",
            "",
        ),
    ];
    for (doc, path, why) in cases {
        let err = parse_value(&doc).expect_err(path);
        assert!(
            err.problems
                .iter()
                .any(|p| p.path == path && p.reason.contains(why)),
            "{path}: {err}"
        );
    }
    assert!(parse(b"\xff").is_err());
    assert!(parse(b"{\"version\": 1, \"version\": 1}").is_err());
}

#[test]
fn the_careful_policy_rules_a_generation() {
    let f = parse_value(&json!({"version": 1, "workloads": {
        "a": {"command": ["/bin/true"], "placement": {"mesh": {}},
              "rollout": {"max_parallel": 4, "canary": 0, "min_healthy_time": "1s", "auto_revert": false}},
        "b": {"command": ["/bin/true"], "placement": {"mesh": {}},
              "rollout": {"max_parallel": 2, "canary": 2, "min_healthy_time": "0s", "auto_revert": true}}
    }}))
    .unwrap();
    let r = f.spec.rollout();
    assert_eq!(
        (
            r.max_parallel,
            r.canary,
            r.min_healthy_time.as_millis(),
            r.auto_revert
        ),
        (2, 2, 1000, true)
    );
}

#[test]
fn merging_adds_the_fleets_workloads_and_refuses_a_name_both_define() {
    let node = json!({"version": 1, "node": {"name": "n1", "owner":
        "ed25519:kaeWrQkO8LDUU3c7ytQ+wxvKfy81FaGVfAQXVSGMUeI="},
        "workloads": {"local": {"command": ["/bin/true"],
                                "expose": [{"port": 80, "service": "local"}]}}});
    let fleet = parse_value(&web(json!({}))).unwrap().spec;
    let (_, merged) = merge(&node, &fleet).unwrap();
    assert_eq!(
        merged.spec.workloads.keys().collect::<Vec<_>>(),
        ["local", "web"]
    );
    let back = node_part(&serde_json::to_value(&merged.spec).unwrap(), Some(&fleet));
    assert_eq!(
        crate::parse_value(&back).unwrap().spec,
        crate::parse_value(&node).unwrap().spec
    );
    let both = parse_value(&json!({"version": 1, "workloads": {"local": {
        "command": ["/bin/true"], "placement": {"mesh": {}}}}}))
    .unwrap()
    .spec;
    assert_eq!(
        merge(&node, &both),
        Err(Conflict::Names {
            names: vec!["local".into()]
        })
    );
    let port = parse_value(&web(json!({"expose": [{"port": 80, "service": "web"}]})))
        .unwrap()
        .spec;
    let err = merge(&node, &port).unwrap_err().to_string();
    assert!(err.contains("together") && err.contains("port 80"), "{err}");
    let ownerless = json!({"version": 1, "node": {"name": "n1"}});
    let err = merge(&ownerless, &fleet).unwrap_err().to_string();
    assert!(err.contains("node.owner"), "{err}");
    assert_eq!(
        merge(
            &ownerless,
            &parse_value(&json!({"version": 1})).unwrap().spec
        )
        .unwrap()
        .1
        .hash,
        crate::hash_value(&ownerless),
        "an empty fleet spec leaves the node spec as it is"
    );
}

fn bytes(s: &SignedFleetSpec) -> Vec<u8> {
    serde_json::to_vec(s).unwrap()
}

#[test]
fn the_owners_fleet_spec_is_accepted_and_everything_else_is_refused_with_its_reason() {
    for kind in [KeyKind::Ed25519, KeyKind::Eth] {
        let owner = OwnerKey::generate(kind).unwrap();
        let stranger = OwnerKey::generate(kind).unwrap();
        let fleet_owner = owner.owner();
        let r = Receiver {
            owner: Some(&fleet_owner),
            last_generation: 4,
            now: NOW,
            fresh: true,
        };
        let good = sign(&owner, 5, NOW - 10, web(json!({})));
        let accepted = accept(&bytes(&good), &r).unwrap();
        assert_eq!(accepted.spec.hash, crate::hash_value(&good.spec));
        // A member catching up takes one signed long ago.
        let old = sign(&owner, 5, NOW - 86_400, web(json!({})));
        assert!(accept(&bytes(&old), &Receiver { fresh: false, ..r }).is_ok());

        let mut altered = good.clone();
        altered.spec["workloads"]["web"]["command"][0] = json!("/bin/evil");
        let mut renumbered = good.clone();
        renumbered.generation = 9;
        let mut other_fleet = sign(&stranger, 5, NOW, web(json!({})));
        let mut relabelled = other_fleet.clone();
        relabelled.owner = fleet_owner.to_string();
        other_fleet.v = VERSION;
        let mut unknown = serde_json::to_value(&good).unwrap();
        unknown["from_a_newer_release"] = json!(1);
        let cases: Vec<(&str, Vec<u8>, Receiver<'_>, &str)> = vec![
            ("forged spec", bytes(&altered), r, "not"),
            ("forged generation", bytes(&renumbered), r, "not"),
            ("another fleet", bytes(&other_fleet), r, "for the fleet of"),
            ("another key", bytes(&relabelled), r, "signature is not"),
            (
                "replayed",
                bytes(&good),
                Receiver {
                    last_generation: 5,
                    ..r
                },
                "not newer",
            ),
            ("old, published now", bytes(&old), r, "node's clock"),
            (
                "future",
                bytes(&sign(&owner, 5, NOW + 301, web(json!({})))),
                Receiver { fresh: false, ..r },
                "node's clock",
            ),
            (
                "far future",
                bytes(&sign(&owner, u64::MAX, NOW, web(json!({})))),
                r,
                "lock out",
            ),
            (
                "invalid",
                bytes(&sign(
                    &owner,
                    5,
                    NOW,
                    json!({"version": 1, "workloads": {"w": {}}}),
                )),
                r,
                "not valid",
            ),
            (
                "no owner",
                bytes(&good),
                Receiver { owner: None, ..r },
                "no owner",
            ),
            ("not JSON", b"{".to_vec(), r, "not a signed fleet spec"),
            (
                "too large",
                vec![b' '; crate::push::MAX_BYTES + 1],
                r,
                "at most",
            ),
        ];
        for (what, b, receiver, why) in cases {
            let err = accept(&b, &receiver).expect_err(what).to_string();
            assert!(err.contains(why), "{kind:?} {what}: {err}");
        }
        assert!(
            accept(unknown.to_string().as_bytes(), &r).is_ok(),
            "a field from a newer release is not a reason to refuse"
        );
    }
}

#[test]
fn the_schema_is_the_fleet_specs() {
    let s = schema();
    assert_eq!(s["title"], "XnodeOS fleet spec");
    let w = &s["$defs"]["FleetWorkload"]["properties"];
    assert!(
        w.get("command").is_some() && w.get("rollout").is_some(),
        "{s:#}"
    );
}
