//! The API described as an OpenAPI 3.1 document, generated from [`ROUTES`] and the
//! types of the requests and replies, so it cannot drift from what the agent speaks.
//! xnoded serves it at `/v1/openapi.json`.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::{Access, ErrorBody, Method, ROUTES, Request, session};

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// The refusals a route may answer, by status (docs/api.md says when each comes).
const REFUSALS: &[(u16, &str)] = &[
    (
        400,
        "bad_request: the request lacks a field, has an unknown one, or is not JSON",
    ),
    (
        403,
        "forbidden: the peer is neither root nor in the API group",
    ),
    (409, "refused: the agent said no, with why"),
    (413, "too_large: the body is over 64 MiB"),
    (
        422,
        "invalid_spec: the spec has problems, every one with its path",
    ),
    (
        503,
        "unavailable: the agent is shutting down, or too busy to follow more",
    ),
];

/// The document, for an agent of `version`.
pub fn document(version: &str) -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    // Requests as the agent reads them (a field with a default may be left out),
    // replies as it writes them.
    let requests = settings
        .clone()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<Request>()
        .to_value();
    let mut generator = settings.for_serialize().into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    let mut paths = Map::new();
    for route in ROUTES {
        let mut fields = fields_of(&requests, route.op);
        let mut parameters = Vec::new();
        for name in path_names(route.path) {
            let schema = fields
                .remove(name)
                .map_or(json!({"type": "string"}), |(s, _)| s);
            parameters
                .push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
        let mut operation = json!({
            "operationId": route.op,
            "summary": route.summary,
            // Over the network (HTTPS): a session for `read` and `signed`, the
            // owner's signature inside the body for `signed`, refused for `local`.
            "x-remote": match route.remote {
                Access::Read => "read",
                Access::Signed => "signed",
                Access::Local => "local",
            },
        });
        if route.method == Method::Post {
            let required: Vec<&String> = fields
                .iter()
                .filter(|(_, (_, r))| *r)
                .map(|(n, _)| n)
                .collect();
            let properties: Map<String, Value> = fields
                .iter()
                .map(|(n, (s, _))| (n.clone(), s.clone()))
                .collect();
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                }}},
            });
        } else {
            for (name, (schema, required)) in &fields {
                parameters.push(
                    json!({"name": name, "in": "query", "required": required, "schema": schema}),
                );
            }
        }
        if route.follows {
            parameters.push(json!({
                "name": "follow", "in": "query", "required": false,
                "schema": {"type": "boolean"},
                "description": "Answer a stream of Server-Sent Events instead: each event's data is one item of the reply; an `error` event's data, {\"message\"}, says why the stream ends",
            }));
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let reply = (route.reply)(&mut generator);
        let mut content = json!({"application/json": {"schema": reply.as_value()}});
        if route.follows {
            // Each event's data is one item of the reply.
            content["text/event-stream"] = json!({
                "schema": {"type": "string"},
                "x-event-data": reply.as_value()["items"],
            });
        }
        let mut responses = json!({"200": {"description": "Done", "content": content}});
        for (status, why) in REFUSALS {
            responses[status.to_string()] = json!({
                "description": why,
                "content": {"application/json": {"schema": error.as_value()}},
            });
        }
        operation["responses"] = responses;
        let method = route.method.as_str().to_ascii_lowercase();
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    let (challenge, sign_in, signed_in) = (
        generator.subschema_for::<session::Challenge>(),
        generator.subschema_for::<session::SignIn>(),
        generator.subschema_for::<session::SignedIn>(),
    );
    let refused = json!({"description": "unauthorized: the challenge is unknown, used, expired, for another node, or not signed by the owner",
                         "content": {"application/json": {"schema": error.as_value()}}});
    paths.insert(
        session::CHALLENGE_PATH.into(),
        json!({"post": {
            "operationId": "session_challenge",
            "summary": "Over HTTPS only: a challenge for the owner to sign, naming this node, a nonce and an expiry",
            "responses": {"200": {"description": "Done", "content": {"application/json": {"schema": challenge.as_value()}}}},
        }}),
    );
    paths.insert(
        session::PATH.into(),
        json!({
            "post": {
                "operationId": "session_sign_in",
                "summary": "Over HTTPS only: a signed challenge buys a session (an HttpOnly, Secure, SameSite=Strict cookie) for an hour",
                "requestBody": {"required": true, "content": {"application/json": {"schema": sign_in.as_value()}}},
                "responses": {"200": {"description": "Signed in; the cookie is set", "content": {"application/json": {"schema": signed_in.as_value()}}},
                              "401": refused},
            },
            "delete": {
                "operationId": "session_sign_out",
                "summary": "Over HTTPS only: ends the session",
                "responses": {"200": {"description": "Signed out", "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        }),
    );
    let event = generator.subschema_for::<crate::events::Event>();
    paths.insert(
        crate::events::PATH.into(),
        json!({"get": {
            "operationId": "events",
            "summary": "The node's changes as Server-Sent Events: a snapshot, then each change, seen within half a second; each event is named by its kind",
            "responses": {
                "200": {"description": "A stream; each event's data is one Event (x-event-data)", "content": {
                    "text/event-stream": {"schema": {"type": "string"}, "x-event-data": event.as_value()},
                }},
                "503": {"description": "unavailable: 16 streams are open already", "content": {"application/json": {"schema": error.as_value()}}},
            },
        }}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {
            "operationId": "metrics",
            "summary": "The Prometheus metrics, as the loopback metrics port serves them",
            "responses": {"200": {"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}},
        }}),
    );
    paths.insert(
        PATH.into(),
        json!({"get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "Done", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "xnoded",
            "version": version,
            "description": "The XnodeOS agent's API: HTTP/1.1 and JSON on its unix socket (/run/xnode/api.sock), one request per connection, for root and members of its API group; and, when xnoded listens on TCP, over HTTPS for the owner (a session from a signed challenge; each operation's x-remote says what it needs there). A refusal is {\"error\": {\"code\", \"message\"}}. See docs/api.md.",
        },
        "paths": paths,
        "components": {"schemas": generator.take_definitions(true)},
    })
}

/// The `{name}` parts of a path.
fn path_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
}

/// The fields of operation `op` in the schema of [`Request`] (a `oneOf` of objects,
/// each with its `op`): each field's schema and whether it is required.
fn fields_of(requests: &Value, op: &str) -> std::collections::BTreeMap<String, (Value, bool)> {
    let variant = requests["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["properties"]["op"]["const"] == op);
    let Some(variant) = variant else {
        return Default::default();
    };
    let required: Vec<&str> = variant["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    variant["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| *name != "op")
        .map(|(name, schema)| {
            (
                name.clone(),
                (schema.clone(), required.contains(&name.as_str())),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Applied, Gated, Status, WorkloadStatus};

    /// A validator for the component `name` of `doc`, its references resolved in `doc`.
    fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let mut root = json!({"$ref": format!("#/components/schemas/{name}")});
        root["components"] = doc["components"].clone();
        jsonschema::validator_for(&root).unwrap()
    }

    #[test]
    fn every_route_is_in_the_document_with_its_fields() {
        let doc = document("0.0.0");
        for route in ROUTES {
            let method = route.method.as_str().to_ascii_lowercase();
            let operation = &doc["paths"][route.path][&method];
            assert_eq!(operation["operationId"], route.op, "{}", route.path);
            assert!(operation["responses"]["200"].is_object(), "{}", route.op);
        }
        assert_eq!(
            doc["paths"].as_object().unwrap().len(),
            ROUTES
                .iter()
                .map(|r| r.path)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                + 5
        );
        let apply = &doc["paths"]["/v1/apply"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(apply["required"], json!(["spec"]));
        assert!(apply["properties"]["no_rollback"].is_object());
        let logs = doc["paths"]["/v1/workloads/{workload}/logs"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let names: Vec<(&str, &str)> = logs
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("workload", "path"),
                ("lines", "query"),
                ("follow", "query")
            ]
        );
    }

    /// What the agent sends validates against what the document says it sends.
    #[test]
    fn replies_validate_against_their_schemas() {
        let doc = document("0.0.0");
        let status = Status {
            node: Some("n1".into()),
            applying: Some(crate::node::Applying {
                generation: Some(2),
                phase: crate::node::Phase::Gating,
                workloads: [("web".to_owned(), Gated::Waiting { why: "x".into() })].into(),
            }),
            workloads: vec![WorkloadStatus {
                name: "web".into(),
                ..WorkloadStatus::default()
            }],
            mesh: Some(crate::mesh::MeshStatus {
                node: Some(crate::mesh::MeshNode::default()),
                ..Default::default()
            }),
            ..Status::default()
        };
        let applied = Applied {
            generation: 3,
            outcome: crate::Outcome::RolledBack { reason: "r".into() },
            rolled_back_to: Some(2),
            actions: vec!["start web".into()],
            refused: Vec::new(),
            not_realised: Default::default(),
            unchanged: false,
        };
        for (name, value) in [
            ("Status", serde_json::to_value(&status).unwrap()),
            ("Applied", serde_json::to_value(&applied).unwrap()),
            (
                "ErrorBody",
                json!({"error": {"code": "refused", "message": "no"}}),
            ),
        ] {
            let v = validator(&doc, name);
            let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
        // And the schemas are not mere `true`: a wrong shape fails.
        assert!(!validator(&doc, "Status").is_valid(&json!({"converged": "yes"})));
    }

    /// docs/api.md, the reference people read, names every route.
    #[test]
    fn the_reference_names_every_route() {
        let docs = include_str!("../../../docs/api.md");
        for route in ROUTES {
            let line = format!("`{} {}", route.method.as_str(), route.path);
            assert!(docs.contains(&line), "docs/api.md lacks {line}`");
        }
        for path in [PATH, crate::events::PATH, session::CHALLENGE_PATH] {
            assert!(
                docs.contains(&format!(" {path}`")),
                "docs/api.md lacks {path}"
            );
        }
    }
}
