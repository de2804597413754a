//! What a client asks, and the route each operation has.

use schemars::{Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fleet::{FleetSpec, FleetStatus};
use crate::mesh::{FleetView, Member, Provider, PushDraft};
use crate::node::{Applied, Done, History, LogLine, Plan, Pruned, RolledBack, StateDir, Status};

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The node, its generation and every workload's state.
    Status,
    /// Apply a spec as a new generation.
    Apply {
        /// The spec document.
        spec: Value,
        /// Keep the result even if it is unhealthy.
        #[serde(default)]
        no_rollback: bool,
    },
    /// What applying a spec would do, without doing it.
    Plan {
        /// The spec document.
        spec: Value,
    },
    /// Go back to the last good generation (or, when the current one is the last good,
    /// to the good one before it).
    Rollback,
    /// Take in the spec file now, and answer when what became of it is known: an
    /// error unless the node is healthy on its spec (what `nixos-rebuild switch` waits
    /// for).
    Reload,
    /// Every kept generation.
    History,
    /// The node spec of a kept generation: what to sign and push to go back to it
    /// over the network.
    GenerationSpec {
        /// The generation.
        generation: u64,
    },
    /// A workload's last log lines, from the journal.
    Logs {
        /// The workload.
        workload: String,
        /// How many lines.
        #[serde(default = "default_lines")]
        lines: usize,
    },
    /// Workloads' state directories and their sizes.
    StateList,
    /// Delete the state directory of a workload the spec in force no longer has.
    StatePrune {
        /// The workload.
        workload: String,
    },
    /// The mesh's members as this node sees them.
    MeshPeers,
    /// The live providers of a service, or of every service.
    MeshServices {
        /// The service; all when absent.
        #[serde(default)]
        service: Option<String>,
    },
    /// What the owner signs to push `spec` to this node: the text, with the peer id,
    /// generation and timestamp to send with it (for a client that cannot hash a spec,
    /// such as the console).
    PushDraft {
        /// The spec document.
        spec: Value,
    },
    /// Deliver a signed push (`xnode_spec::push::Push`) to the node it names.
    MeshPush {
        /// The push envelope.
        push: Value,
    },
    /// This node's fleet: its standing and the members it knows.
    FleetMembers,
    /// Deliver the owner's membership certificate to the peer it names (this node, or
    /// one connected to it).
    FleetAdmit {
        /// The certificate (`xnode_mesh::fleet::Certificate`).
        certificate: Value,
    },
    /// Take the owner's revocation here and tell the fleet.
    FleetRevoke {
        /// The revocation (`xnode_mesh::fleet::Revocation`).
        revocation: Value,
    },
    /// Take an owner-signed fleet spec here; the members fetch it from this node.
    FleetApply {
        /// The envelope (`xnode_spec::fleet_spec::signed::SignedFleetSpec`).
        spec: Value,
    },
    /// The newest fleet spec this node accepted, and the one it runs.
    FleetSpec,
    /// The whole fleet: every member's health and generations, the rollout, and where
    /// each mesh workload runs.
    FleetStatus,
}

fn default_lines() -> usize {
    100
}

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads; changes nothing.
    Get,
    /// Does something.
    Post,
    /// Removes something.
    Delete,
}

impl Method {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One operation's route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path; `{name}` is a field of the request.
    pub path: &'static str,
    /// The operation, as [`Request`] names it on the wire (`op`).
    pub op: &'static str,
    /// What it does, in a line.
    pub summary: &'static str,
    /// Whether `follow=true` turns its answer into a stream of Server-Sent Events,
    /// each event's data one item of the reply.
    pub follows: bool,
    /// Who may use it over the network.
    pub remote: Access,
    /// The schema of its reply (for the OpenAPI document).
    pub reply: fn(&mut SchemaGenerator) -> Schema,
}

/// Who may use a route over the network (xnoded's TCP listener). On the unix socket,
/// root and the API group may use every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone with a session (signed in as the owner): it changes nothing.
    Read,
    /// Anyone with a session, sending what the owner signed (a push, a fleet spec, a
    /// certificate, a revocation): the signature is the authority.
    Signed,
    /// Only on the socket: an unsigned change.
    Local,
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        (self.method, self.path) == (other.method, other.path)
    }
}

impl Eq for Route {}

/// Every operation's route. A request's fields come from the path, then the query
/// (reads) or the JSON body (writes).
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/v1/status",
        op: "status",
        summary: "The node, its generation and every workload's state",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Status>,
    },
    Route {
        method: Method::Post,
        path: "/v1/apply",
        op: "apply",
        summary: "Apply a spec as a new generation; answers when it is healthy or rolled back",
        follows: false,
        remote: Access::Local,
        reply: SchemaGenerator::subschema_for::<Applied>,
    },
    Route {
        method: Method::Post,
        path: "/v1/plan",
        op: "plan",
        summary: "What applying a spec would do, without doing it",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Plan>,
    },
    Route {
        method: Method::Post,
        path: "/v1/rollback",
        op: "rollback",
        summary: "Go back to the last good generation",
        follows: false,
        remote: Access::Local,
        reply: SchemaGenerator::subschema_for::<RolledBack>,
    },
    Route {
        method: Method::Post,
        path: "/v1/reload",
        op: "reload",
        summary: "Take in the spec file now; answers when what became of it is known",
        follows: false,
        remote: Access::Local,
        reply: SchemaGenerator::subschema_for::<Applied>,
    },
    Route {
        method: Method::Get,
        path: "/v1/history",
        op: "history",
        summary: "Every kept generation",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<History>,
    },
    Route {
        method: Method::Get,
        path: "/v1/history/{generation}/spec",
        op: "generation_spec",
        summary: "The node spec of a kept generation (to push again, signed, to go back to it)",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Value>,
    },
    Route {
        method: Method::Get,
        path: "/v1/workloads/{workload}/logs",
        op: "logs",
        summary: "A workload's last log lines; with follow=true, each new one as Server-Sent Events",
        follows: true,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Vec<LogLine>>,
    },
    Route {
        method: Method::Get,
        path: "/v1/state",
        op: "state_list",
        summary: "Workloads' state directories and their sizes",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Vec<StateDir>>,
    },
    Route {
        method: Method::Delete,
        path: "/v1/state/{workload}",
        op: "state_prune",
        summary: "Delete the state directory of a workload the spec no longer has",
        follows: false,
        remote: Access::Local,
        reply: SchemaGenerator::subschema_for::<Pruned>,
    },
    Route {
        method: Method::Get,
        path: "/v1/mesh/peers",
        op: "mesh_peers",
        summary: "The mesh's members as this node sees them",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Vec<Member>>,
    },
    Route {
        method: Method::Get,
        path: "/v1/mesh/services",
        op: "mesh_services",
        summary: "The live providers of a service, or of every service",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<Vec<Provider>>,
    },
    Route {
        method: Method::Post,
        path: "/v1/mesh/push/draft",
        op: "push_draft",
        summary: "The text the owner signs to push a spec to this node, with the peer id, generation and timestamp to send",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<PushDraft>,
    },
    Route {
        method: Method::Post,
        path: "/v1/mesh/push",
        op: "mesh_push",
        summary: "Deliver an owner-signed push to the node it names",
        follows: false,
        remote: Access::Signed,
        reply: SchemaGenerator::subschema_for::<Done>,
    },
    Route {
        method: Method::Get,
        path: "/v1/fleet/members",
        op: "fleet_members",
        summary: "This node's fleet: its standing and the members it knows",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<FleetView>,
    },
    Route {
        method: Method::Post,
        path: "/v1/fleet/admit",
        op: "fleet_admit",
        summary: "Deliver a membership certificate to the peer it names",
        follows: false,
        remote: Access::Signed,
        reply: SchemaGenerator::subschema_for::<Done>,
    },
    Route {
        method: Method::Post,
        path: "/v1/fleet/revoke",
        op: "fleet_revoke",
        summary: "Take the owner's revocation here and tell the fleet",
        follows: false,
        remote: Access::Signed,
        reply: SchemaGenerator::subschema_for::<Done>,
    },
    Route {
        method: Method::Post,
        path: "/v1/fleet/apply",
        op: "fleet_apply",
        summary: "Take an owner-signed fleet spec here; the members fetch it from this node",
        follows: false,
        remote: Access::Signed,
        reply: SchemaGenerator::subschema_for::<Done>,
    },
    Route {
        method: Method::Get,
        path: "/v1/fleet/spec",
        op: "fleet_spec",
        summary: "The newest fleet spec this node accepted, and the one it runs",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<FleetSpec>,
    },
    Route {
        method: Method::Get,
        path: "/v1/fleet/status",
        op: "fleet_status",
        summary: "The whole fleet: members, the rollout, where each mesh workload runs",
        follows: false,
        remote: Access::Read,
        reply: SchemaGenerator::subschema_for::<FleetStatus>,
    },
];

/// Why a request cannot be put on the wire (a bug in this crate, never the user's).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Serde could not encode it.
    #[error("cannot encode the request: {0}")]
    Json(#[from] serde_json::Error),
    /// Not an operation with a route.
    #[error("no route for the operation {0:?}")]
    NoRoute(String),
    /// The query could not be encoded.
    #[error("cannot encode the query: {0}")]
    Query(#[from] serde_urlencoded::ser::Error),
}

/// A request as HTTP carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// Its route.
    pub route: &'static Route,
    /// The path with its fields in place, and the query.
    pub target: String,
    /// The JSON body, for a write.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// Its operation's name: its route's `op`.
    pub fn op(&self) -> &'static str {
        self.route().op
    }

    /// Its route.
    pub fn route(&self) -> &'static Route {
        let op = match self {
            Request::Status => "status",
            Request::Apply { .. } => "apply",
            Request::Plan { .. } => "plan",
            Request::Rollback => "rollback",
            Request::Reload => "reload",
            Request::History => "history",
            Request::GenerationSpec { .. } => "generation_spec",
            Request::Logs { .. } => "logs",
            Request::StateList => "state_list",
            Request::StatePrune { .. } => "state_prune",
            Request::MeshPeers => "mesh_peers",
            Request::MeshServices { .. } => "mesh_services",
            Request::PushDraft { .. } => "push_draft",
            Request::MeshPush { .. } => "mesh_push",
            Request::FleetMembers => "fleet_members",
            Request::FleetAdmit { .. } => "fleet_admit",
            Request::FleetRevoke { .. } => "fleet_revoke",
            Request::FleetApply { .. } => "fleet_apply",
            Request::FleetSpec => "fleet_spec",
            Request::FleetStatus => "fleet_status",
        };
        // Every operation is in ROUTES (a test holds it there).
        ROUTES.iter().find(|r| r.op == op).unwrap_or(&ROUTES[0])
    }

    /// The request as HTTP carries it: the path's fields put in the path, the rest
    /// in the query of a read or the JSON body of a write.
    pub fn to_http(&self) -> Result<Http, EncodeError> {
        let route = self.route();
        let Value::Object(mut fields) = serde_json::to_value(self)? else {
            return Err(EncodeError::NoRoute(route.op.into()));
        };
        fields.remove("op");
        fields.retain(|_, v| !v.is_null());
        let mut target = String::new();
        for (i, part) in route.path.split('{').enumerate() {
            let (name, rest) = match part.split_once('}') {
                Some((name, rest)) if i > 0 => (Some(name), rest),
                _ => (None, part),
            };
            if let Some(name) = name {
                let value = match fields.remove(name) {
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => {
                        return Err(EncodeError::NoRoute(format!("{} without {name}", route.op)));
                    }
                };
                target.push_str(
                    &serde_urlencoded::to_string([("", value)])?[1..].replace('+', "%20"),
                );
            }
            target.push_str(rest);
        }
        if route.method == Method::Post {
            return Ok(Http {
                route,
                target,
                body: Some(serde_json::to_vec(&fields)?),
            });
        }
        let query: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        if !query.is_empty() {
            target.push('?');
            target.push_str(&serde_urlencoded::to_string(query)?);
        }
        Ok(Http {
            route,
            target,
            body: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn every() -> Vec<Request> {
        let v = || Value::Null;
        let w = || "w".to_owned();
        vec![
            Request::Status,
            Request::Apply {
                spec: v(),
                no_rollback: false,
            },
            Request::Plan { spec: v() },
            Request::Rollback,
            Request::Reload,
            Request::History,
            Request::GenerationSpec { generation: 1 },
            Request::Logs {
                workload: w(),
                lines: 1,
            },
            Request::StateList,
            Request::StatePrune { workload: w() },
            Request::MeshPeers,
            Request::MeshServices { service: None },
            Request::PushDraft { spec: v() },
            Request::MeshPush { push: v() },
            Request::FleetMembers,
            Request::FleetAdmit { certificate: v() },
            Request::FleetRevoke { revocation: v() },
            Request::FleetApply { spec: v() },
            Request::FleetSpec,
            Request::FleetStatus,
        ]
    }

    #[test]
    fn every_operation_has_its_own_route() {
        let all = every();
        assert_eq!(all.len(), ROUTES.len());
        for request in &all {
            // The route's name is the one serde gives the operation.
            assert_eq!(serde_json::to_value(request).unwrap()["op"], request.op());
            assert_eq!(request.route().op, request.op());
        }
        let mut ops: Vec<&str> = all.iter().map(Request::op).collect();
        ops.dedup();
        assert_eq!(ops.len(), ROUTES.len(), "two operations share a route");
    }

    #[test]
    fn requests_go_on_the_wire_as_their_routes_say() {
        // (request, target, body)
        let table = [
            (Request::Status, "/v1/status", None),
            (
                Request::Apply {
                    spec: json!({"version": 1}),
                    no_rollback: true,
                },
                "/v1/apply",
                Some(json!({"spec": {"version": 1}, "no_rollback": true})),
            ),
            (Request::Rollback, "/v1/rollback", Some(json!({}))),
            (
                Request::Logs {
                    workload: "web".into(),
                    lines: 20,
                },
                "/v1/workloads/web/logs?lines=20",
                None,
            ),
            // A name that is not a path segment stays one.
            (
                Request::StatePrune {
                    workload: "../a b".into(),
                },
                "/v1/state/..%2Fa%20b",
                None,
            ),
            (
                Request::MeshServices { service: None },
                "/v1/mesh/services",
                None,
            ),
            (
                Request::MeshServices {
                    service: Some("db&x=1".into()),
                },
                "/v1/mesh/services?service=db%26x%3D1",
                None,
            ),
        ];
        for (request, target, body) in table {
            let http = request.to_http().unwrap();
            assert_eq!(http.target, target, "{request:?}");
            let got = http
                .body
                .map(|b| serde_json::from_slice::<Value>(&b).unwrap());
            assert_eq!(got, body, "{request:?}");
        }
    }
}
