//! The local API: HTTP/1.1 on the unix socket, `curl --unix-socket
//! /run/xnode/api.sock http://xnode/v1/status`, for a peer the server let in.
//!
//! Each route is one of `xnode_api::Request`'s operations (`xnode_api::ROUTES`): its
//! fields come from the JSON body, the path and the query, and the loop carries it out
//! (`server::dispatch`). A reply is the operation's data with 200, or
//! `{"error": {"code", "message"}}` with a status that says what kind of refusal it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodRouter, delete, get, post};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use xnode_api::{ErrorBody, ErrorDetail, MAX_MESSAGE, Method, ROUTES, Request};

use crate::deadline::WriteDeadline;
use crate::server::{FORBIDDEN, Refusal};
use crate::service::Command;

/// The HTTP status of a refusal's code.
fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_request" => StatusCode::BAD_REQUEST,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_spec" => StatusCode::UNPROCESSABLE_ENTITY,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    }
}

pub(crate) fn refusal(r: Refusal) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: r.code.into(),
            message: r.message,
        },
    };
    (status_of(r.code), axum::Json(body)).into_response()
}

/// The request an operation's route makes of its body, path and query. Path and
/// query values are text; where the request wants a number instead (`lines`,
/// `generation`), one that reads as a number is taken as one.
fn request(
    op: &str,
    body: &[u8],
    params: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
) -> Result<Request, Refusal> {
    let bad = |why: String| Refusal {
        code: "bad_request",
        message: why,
    };
    let mut fields: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        xnode_spec::json::from_slice(body)
            .map_err(|e| bad(format!("the body is not a JSON object: {e}")))?
    };
    // The path's values last: they name what the route is about.
    let texts: Vec<String> = query.keys().chain(params.keys()).cloned().collect();
    for (key, value) in query.into_iter().chain(params) {
        fields.insert(key, Value::String(value));
    }
    fields.insert("op".into(), Value::String(op.into()));
    let why = match serde_json::from_value(Value::Object(fields.clone())) {
        Ok(request) => return Ok(request),
        Err(why) => why,
    };
    for key in &texts {
        if let Some(n) = fields[key].as_str().and_then(|t| t.parse::<u64>().ok()) {
            fields.insert(key.clone(), Value::from(n));
        }
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|_| bad(format!("not a valid request: {why}")))
}

/// Carries out `op`: the request is read beside the loop (a body may be 64 MiB).
async fn call(
    op: &'static str,
    commands: mpsc::Sender<Command>,
    params: BTreeMap<String, String>,
    mut query: BTreeMap<String, String>,
    body: axum::body::Body,
) -> Response {
    let body = match read(body, MAX_MESSAGE as usize).await {
        Ok(body) => body,
        Err(r) => return refusal(r),
    };
    let follow = op == "logs"
        && query
            .remove("follow")
            .is_some_and(|f| f == "true" || f == "1");
    let parsed = tokio::task::spawn_blocking(move || request(op, &body, params, query)).await;
    let request = match parsed {
        Ok(Ok(request)) => request,
        Ok(Err(r)) => return refusal(r),
        Err(e) => {
            return refusal(Refusal {
                code: "unavailable",
                message: format!("reading the request failed: {e}"),
            });
        }
    };
    if let (true, Request::Logs { workload, lines }) = (follow, &request) {
        return crate::streams::logs(workload.clone(), *lines, &commands).await;
    }
    match crate::server::dispatch(request, &commands).await {
        Ok(data) => axum::Json(data).into_response(),
        Err(r) => refusal(r),
    }
}

/// A request's body: at most `limit` bytes, all of it within 30 s.
pub(crate) async fn read(body: axum::body::Body, limit: usize) -> Result<Bytes, Refusal> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(crate::server::READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal {
            code: "too_large",
            message: if limit >= 1 << 20 {
                format!("the body is over {} MiB", limit >> 20)
            } else {
                format!("the body is over {} KiB", limit >> 10)
            },
        }),
        Ok(Err(e)) => Err(Refusal {
            code: "bad_request",
            message: format!("the body could not be read: {e}"),
        }),
        Err(_) => Err(Refusal {
            code: "bad_request",
            message: "the body did not arrive within 30 s".into(),
        }),
    }
}

/// What the API's routes need: the agent's loop, and the metrics.
#[derive(Clone)]
pub struct Api {
    /// The loop's commands.
    pub commands: mpsc::Sender<Command>,
    /// The metrics, for `/metrics`.
    pub registry: Arc<Registry>,
}

impl FromRef<Api> for mpsc::Sender<Command> {
    fn from_ref(api: &Api) -> Self {
        api.commands.clone()
    }
}

fn route(method: Method, op: &'static str) -> MethodRouter<Api> {
    let handler = move |State(commands): State<mpsc::Sender<Command>>,
                        params: Result<Option<Path<BTreeMap<String, String>>>, PathRejection>,
                        query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
                        body: axum::body::Body| async move {
        let bad = |why: String| {
            refusal(Refusal {
                code: "bad_request",
                message: why,
            })
        };
        let params = match params {
            Ok(params) => params.map(|Path(p)| p).unwrap_or_default(),
            Err(e) => return bad(format!("the path cannot be read: {e}")),
        };
        let query = match query {
            Ok(Query(query)) => query,
            Err(e) => return bad(format!("the query cannot be read: {e}")),
        };
        call(op, commands, params, query, body).await
    };
    match method {
        Method::Post => post(handler),
        Method::Delete => delete(handler),
        Method::Get => get(handler),
    }
}

/// The API's routes, for a peer allowed to use it.
pub fn router(api: Api) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, route(r.method, r.op));
    }
    router
        .route(xnode_api::openapi::PATH, get(openapi))
        .route("/metrics", get(metrics))
        .route(
            xnode_api::events::PATH,
            get(|State(commands): State<mpsc::Sender<Command>>| async move {
                crate::streams::events(commands).await
            }),
        )
        .fallback(|| async {
            refusal(Refusal {
                code: "not_found",
                message: "no such route: the API's routes are under /v1 (docs/api.md)".into(),
            })
        })
        .method_not_allowed_fallback(|| async {
            refusal(Refusal {
                code: "method_not_allowed",
                message: "the route takes another method (docs/api.md)".into(),
            })
        })
        .with_state(api)
}

/// The metrics, as the loopback metrics port serves them to Prometheus.
async fn metrics(State(api): State<Api>) -> Response {
    match crate::metrics::page(&api.registry) {
        Ok(page) => ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], page).into_response(),
        Err(e) => refusal(Refusal {
            code: "unavailable",
            message: format!("the metrics could not be written: {e}"),
        }),
    }
}

/// The OpenAPI document, made once.
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let doc = DOCUMENT.get_or_init(|| xnode_api::openapi::document(env!("CARGO_PKG_VERSION")));
    axum::Json(doc).into_response()
}

/// What a peer that may not use the API gets, whatever it asks: once its body is read
/// and dropped (within the stranger's second), so that a client still sending it gets
/// the refusal rather than a broken pipe.
fn forbidden() -> Router {
    Router::new().fallback(|body: axum::body::Body| async move {
        use http_body_util::BodyExt as _;
        let _ = http_body_util::Limited::new(body, MAX_MESSAGE as usize)
            .collect()
            .await;
        refusal(Refusal {
            code: "forbidden",
            message: FORBIDDEN.into(),
        })
    })
}

/// Serves HTTP on one connection, one request on it: the API for a `permitted` peer,
/// and for anyone else a refusal, all within a second. A peer that takes none of its
/// answer for 30 s is let go.
pub async fn serve_connection(
    stream: UnixStream,
    permitted: bool,
    api: Api,
) -> std::io::Result<()> {
    let app = if permitted { router(api) } else { forbidden() };
    let service = hyper_util::service::TowerToHyperService::new(app);
    // A stranger's whole exchange is as short as its wait for a first byte.
    let limit = if permitted {
        crate::server::READ_TIMEOUT
    } else {
        crate::server::STRANGER_WAIT
    };
    let io = WriteDeadline::new(stream, crate::server::READ_TIMEOUT);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limit)
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let served = if permitted {
        connection.await
    } else {
        match tokio::time::timeout(limit, connection).await {
            Ok(served) => served,
            Err(_) => return Ok(()),
        }
    };
    served.map_err(std::io::Error::other)
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn routes_make_requests_of_body_path_and_query() {
        let none = BTreeMap::new();
        // (operation, body, path parameters, query, the request)
        type Row<'a> = (
            &'a str,
            &'a [u8],
            BTreeMap<String, String>,
            BTreeMap<String, String>,
            Request,
        );
        let table: Vec<Row> = vec![
            ("status", b"", none.clone(), none.clone(), Request::Status),
            (
                "apply",
                br#"{"spec": {"version": 1}, "no_rollback": true}"#,
                none.clone(),
                none.clone(),
                Request::Apply {
                    spec: json!({"version": 1}),
                    no_rollback: true,
                },
            ),
            (
                "logs",
                b"",
                map(&[("workload", "web")]),
                map(&[("lines", "20")]),
                Request::Logs {
                    workload: "web".into(),
                    lines: 20,
                },
            ),
            (
                "generation_spec",
                b"",
                map(&[("generation", "3")]),
                none.clone(),
                Request::GenerationSpec { generation: 3 },
            ),
            (
                "mesh_services",
                b"",
                none.clone(),
                map(&[("service", "123")]),
                Request::MeshServices {
                    service: Some("123".into()),
                },
            ),
            // The route names the operation, whatever the body says.
            (
                "rollback",
                br#"{"op": "status"}"#,
                none.clone(),
                none.clone(),
                Request::Rollback,
            ),
        ];
        for (op, body, params, query, want) in table {
            assert_eq!(request(op, body, params, query), Ok(want), "{op}");
        }
    }

    #[test]
    fn bad_requests_are_refused_with_why() {
        let none = BTreeMap::new();
        for (op, body, query, why) in [
            ("apply", &b"[1]"[..], none.clone(), "not a JSON object"),
            ("apply", &b"{}"[..], none.clone(), "missing field `spec`"),
            (
                "plan",
                &b"{\"spec\": {}, \"extra\": 1}"[..],
                none.clone(),
                "unknown field `extra`",
            ),
            (
                "logs",
                &b"{\"workload\": \"w\"}"[..],
                map(&[("lines", "many")]),
                "invalid type",
            ),
        ] {
            let got = request(op, body, none.clone(), query).unwrap_err();
            assert_eq!(got.code, "bad_request");
            assert!(got.message.contains(why), "{op}: {}", got.message);
        }
    }

    /// What the client puts on the wire, the server reads back as the same request.
    #[test]
    fn the_clients_requests_are_read_back_as_sent() {
        let every = [
            Request::Status,
            Request::Apply {
                spec: json!({"version": 1, "node": {"name": "a b"}}),
                no_rollback: true,
            },
            Request::Rollback,
            Request::Logs {
                workload: "web-1".into(),
                lines: 7,
            },
            Request::StatePrune {
                workload: "a/b c".into(),
            },
            Request::MeshServices {
                service: Some("db&x=1".into()),
            },
            Request::MeshServices { service: None },
            Request::GenerationSpec { generation: 7 },
            Request::FleetAdmit {
                certificate: json!({"peer": "p"}),
            },
        ];
        for sent in every {
            let http = sent.to_http().unwrap();
            let (path, query) = http.target.split_once('?').unwrap_or((&http.target, ""));
            let mut params = BTreeMap::new();
            for (want, got) in http.route.path.split('/').zip(path.split('/')) {
                if let Some(name) = want.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    let decoded: BTreeMap<String, String> =
                        serde_urlencoded::from_str(&format!("v={got}")).unwrap();
                    params.insert(name.to_owned(), decoded["v"].clone());
                }
            }
            let query = serde_urlencoded::from_str(query).unwrap();
            let body = http.body.unwrap_or_default();
            assert_eq!(request(http.route.op, &body, params, query), Ok(sent));
        }
    }
}
