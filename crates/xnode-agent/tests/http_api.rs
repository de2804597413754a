//! The HTTP API on xnoded's socket, against xnoded under systemd: reads, a plan, a
//! refused and a healthy apply, logs, a rollback, refusals with their codes, and the
//! client library reading the same socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_lab::node::{api, boot_node, http, wait_status};

fn spec(workloads: Value) -> Value {
    json!({"version": 1, "node": {"name": "web-api"}, "workloads": workloads})
}

#[test]
fn every_kind_of_route_answers_over_http() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let first = spec(json!({"a": {"command": ["/bin/sleep", "infinity"]}}));
    let c = boot_node(bin.parent().unwrap(), &serde_json::to_vec(&first).unwrap()).unwrap();
    wait_status(&c, "convergence", Duration::from_secs(60), |s| {
        s["converged"] == true
    })
    .unwrap();
    let socket = c.path("/run/xnode/api.sock");
    let call = |method: &str, path: &str, body: Option<Value>| {
        http(&socket, method, path, body.as_ref()).unwrap()
    };

    let (code, status) = call("GET", "/v1/status", None);
    assert_eq!(
        (code, &status["converged"]),
        (200, &json!(true)),
        "{status}"
    );
    let (code, history) = call("GET", "/v1/history", None);
    assert_eq!(code, 200);
    assert_eq!(history["generations"].as_array().map(Vec::len), Some(1));

    let second = spec(json!({
        "a": {"command": ["/bin/sleep", "infinity"]},
        "b": {"command": ["/bin/sh", "-c", "echo hello from b; exec sleep infinity"]},
        "ticker": {"command": ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.3; done"]}
    }));
    let (code, plan) = call("POST", "/v1/plan", Some(json!({"spec": second})));
    assert_eq!(code, 200, "{plan}");
    assert!(plan.to_string().contains("xnode-b.service"), "{plan}");

    // An invalid spec: 422, with the spec's own problems, and nothing changes.
    let (code, refused_spec) = call("POST", "/v1/apply", Some(json!({"spec": {"version": 1}})));
    assert_eq!(code, 422, "{refused_spec}");
    assert_eq!(refused_spec["error"]["code"], "invalid_spec");
    let message = refused_spec["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("node: missing"), "{message}");
    // A body that is not a request: 400.
    let (code, refused) = call("POST", "/v1/apply", Some(json!([1])));
    assert_eq!(
        (code, &refused["error"]["code"]),
        (400, &json!("bad_request"))
    );

    let (code, applied) = call("POST", "/v1/apply", Some(json!({"spec": second})));
    assert_eq!(code, 200, "{applied}");
    assert_eq!(applied["outcome"]["state"], "healthy", "{applied}");
    let (code, logs) = call("GET", "/v1/workloads/b/logs?lines=5", None);
    assert_eq!(code, 200);
    assert!(logs.to_string().contains("hello from b"), "{logs}");

    // The OpenAPI document names every route, and the real replies fit its schemas.
    let (code, doc) = call("GET", "/v1/openapi.json", None);
    assert_eq!(code, 200, "{doc}");
    for route in xnode_api::ROUTES {
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(
            doc["paths"][route.path][&method].is_object(),
            "{} {} is not in the document",
            route.method.as_str(),
            route.path
        );
    }
    let (_, status) = call("GET", "/v1/status", None);
    let (_, history) = call("GET", "/v1/history", None);
    let (_, state) = call("GET", "/v1/state", None);
    for (method, path, reply) in [
        ("post", "/v1/plan", &plan),
        ("post", "/v1/apply", &applied),
        ("get", "/v1/status", &status),
        ("get", "/v1/history", &history),
        ("get", "/v1/state", &state),
        ("get", "/v1/workloads/{workload}/logs", &logs),
    ] {
        conforms(&doc, method, path, "200", reply);
    }
    conforms(&doc, "post", "/v1/apply", "422", &refused_spec);
    // The metrics, on the same socket as on the loopback port.
    let (code, page) = xnode_lab::node::http_text(&socket, "GET", "/metrics", None).unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("xnode_build_info"), "{page}");

    // A log followed: the last line, then each new one, in order and none twice.
    let mut ticks = Vec::new();
    let stopped = xnode_api::follow(
        &socket,
        "/v1/workloads/ticker/logs?lines=1&follow=true",
        |line: xnode_api::node::LogLine| {
            let n = line
                .message
                .strip_prefix("tick ")
                .and_then(|n| n.parse::<u64>().ok());
            ticks.push(n.unwrap_or(0));
            ticks.len() < 6
        },
    )
    .unwrap();
    assert!(stopped, "the stream ended before six lines");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1) && ticks[0] > 0,
        "{ticks:?}"
    );
    let err = xnode_api::follow(
        &socket,
        "/v1/workloads/nope/logs?follow=true",
        |_: Value| true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no workload \"nope\""), "{err}");
    // And through xnodectl, until it is stopped.
    let out = c
        .sh("timeout 3 /opt/xnode/xnodectl logs -f ticker -n 1; true")
        .unwrap();
    assert!(
        out.lines().filter(|l| l.starts_with("tick ")).count() >= 3,
        "{out}"
    );

    // The agent says no: 409, with its reason. (The path names the workload, whatever
    // the query says.)
    let (code, refused) = call("DELETE", "/v1/state/a?workload=zzz", None);
    assert_eq!(
        (code, &refused["error"]["code"]),
        (409, &json!("refused")),
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("workload a is in the spec"), "{message}");
    let (code, wrong) = call("POST", "/v1/status", None);
    assert_eq!(
        (code, &wrong["error"]["code"]),
        (405, &json!("method_not_allowed"))
    );
    let (code, missing) = call("GET", "/v1/nothing", None);
    assert_eq!(
        (code, &missing["error"]["code"]),
        (404, &json!("not_found"))
    );

    let (code, back) = call("POST", "/v1/rollback", None);
    assert_eq!(code, 200, "{back}");
    // The client library reads the same socket.
    let status = api(&c, xnode_api::Request::Status).unwrap();
    assert_eq!(
        status["generation"]["source"]["kind"], "rollback",
        "{status}"
    );
}

/// Checks a reply against the schema the OpenAPI document gives its route and status.
fn conforms(doc: &Value, method: &str, path: &str, status: &str, reply: &Value) {
    let mut schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]
        ["schema"]
        .clone();
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(reply)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{method} {path}: {errors:?}\n{reply:#}");
}
