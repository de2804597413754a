//! What a client asks, and the route each operation has.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path; `{name}` is a field of the request.
    pub path: &'static str,
    /// The operation, as [`Request`] names it on the wire (`op`).
    pub op: &'static str,
    /// What it does, in a line.
    pub summary: &'static str,
}

const fn route(
    method: Method,
    path: &'static str,
    op: &'static str,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        op,
        summary,
    }
}

/// Every operation's route. A request's fields come from the path, then the query
/// (reads) or the JSON body (writes).
pub const ROUTES: &[Route] = &[
    route(
        Method::Get,
        "/v1/status",
        "status",
        "The node, its generation and every workload's state",
    ),
    route(
        Method::Post,
        "/v1/apply",
        "apply",
        "Apply a spec as a new generation; answers when it is healthy or rolled back",
    ),
    route(
        Method::Post,
        "/v1/plan",
        "plan",
        "What applying a spec would do, without doing it",
    ),
    route(
        Method::Post,
        "/v1/rollback",
        "rollback",
        "Go back to the last good generation",
    ),
    route(
        Method::Post,
        "/v1/reload",
        "reload",
        "Take in the spec file now; answers when what became of it is known",
    ),
    route(
        Method::Get,
        "/v1/history",
        "history",
        "Every kept generation",
    ),
    route(
        Method::Get,
        "/v1/workloads/{workload}/logs",
        "logs",
        "A workload's last log lines; with follow=true, each new one as Server-Sent Events",
    ),
    route(
        Method::Get,
        "/v1/state",
        "state_list",
        "Workloads' state directories and their sizes",
    ),
    route(
        Method::Delete,
        "/v1/state/{workload}",
        "state_prune",
        "Delete the state directory of a workload the spec no longer has",
    ),
    route(
        Method::Get,
        "/v1/mesh/peers",
        "mesh_peers",
        "The mesh's members as this node sees them",
    ),
    route(
        Method::Get,
        "/v1/mesh/services",
        "mesh_services",
        "The live providers of a service, or of every service",
    ),
    route(
        Method::Post,
        "/v1/mesh/push",
        "mesh_push",
        "Deliver an owner-signed push to the node it names",
    ),
    route(
        Method::Get,
        "/v1/fleet/members",
        "fleet_members",
        "This node's fleet: its standing and the members it knows",
    ),
    route(
        Method::Post,
        "/v1/fleet/admit",
        "fleet_admit",
        "Deliver a membership certificate to the peer it names",
    ),
    route(
        Method::Post,
        "/v1/fleet/revoke",
        "fleet_revoke",
        "Take the owner's revocation here and tell the fleet",
    ),
    route(
        Method::Post,
        "/v1/fleet/apply",
        "fleet_apply",
        "Take an owner-signed fleet spec here; the members fetch it from this node",
    ),
    route(
        Method::Get,
        "/v1/fleet/spec",
        "fleet_spec",
        "The newest fleet spec this node accepted, and the one it runs",
    ),
    route(
        Method::Get,
        "/v1/fleet/status",
        "fleet_status",
        "The whole fleet: members, the rollout, where each mesh workload runs",
    ),
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
            Request::Logs { .. } => "logs",
            Request::StateList => "state_list",
            Request::StatePrune { .. } => "state_prune",
            Request::MeshPeers => "mesh_peers",
            Request::MeshServices { .. } => "mesh_services",
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
            Request::Logs {
                workload: w(),
                lines: 1,
            },
            Request::StateList,
            Request::StatePrune { workload: w() },
            Request::MeshPeers,
            Request::MeshServices { service: None },
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
