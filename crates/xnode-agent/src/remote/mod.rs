//! The API over the network, off unless `--http-listen` names an address: HTTPS with
//! the node's certificate, for the console and remote clients. Every read needs a
//! session (a challenge the owner signed); every change must be signed by the owner
//! itself (a push, a fleet spec, a certificate, a revocation), since an unsigned one
//! is for the node's own socket; every write must come from the node's own origin, and
//! no other origin is let in (no CORS).

pub mod session;
pub mod tls;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tracing::{debug, info};
use xnode_api::session::{COOKIE, Challenge, SignIn, SignedIn};
use xnode_api::{Access, ROUTES};

use self::session::Sessions;
use crate::deadline::WriteDeadline;
use crate::http::{Api, refusal};
use crate::server::{READ_TIMEOUT, Refusal};

/// Connections held at once; the rest wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// The largest signed challenge read: a challenge and a signature are a few hundred
/// bytes.
const SIGN_IN_BYTES: usize = 16 << 10;

/// How long a client may take over its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// What the remote API keeps: its sessions.
pub struct Remote {
    sessions: Mutex<Sessions>,
}

/// Serves the API over HTTPS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, identity: tls::Identity, api: Api) {
    let remote = Arc::new(Remote {
        sessions: Mutex::new(Sessions::new(identity.fingerprint.clone())),
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.config);
    let app = router(api, remote);
    crate::accept::serve(
        listener,
        "the remote API",
        MAX_CONNECTIONS,
        move |stream| {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            async move {
                let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return debug!("TLS handshake failed: {e}"),
                    Err(_) => return debug!("no TLS handshake within 10 s"),
                };
                let io = WriteDeadline::new(tls, READ_TIMEOUT);
                let service = hyper_util::service::TowerToHyperService::new(app);
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(READ_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                    .await;
                if let Err(e) = served {
                    debug!("remote API connection ended: {e}");
                }
            }
        },
        || false,
    )
    .await;
}

/// The API's routes, the sign-in routes, and the guard in front of them all.
pub fn router(api: Api, remote: Arc<Remote>) -> Router {
    let sessions = Router::new()
        .route(xnode_api::session::CHALLENGE_PATH, post(challenge))
        .route(xnode_api::session::PATH, post(sign_in).delete(sign_out))
        .with_state((api.clone(), Arc::clone(&remote)));
    crate::http::router(api)
        .merge(sessions)
        .merge(crate::console::router())
        .layer(middleware::from_fn_with_state(remote, guard))
}

/// Lets a request through only as the module says (a write from the node's own
/// origin, a session for all but signing in and the console's files, and no unsigned
/// change), and tells browsers to load nothing from elsewhere and frame nothing.
async fn guard(State(remote): State<Arc<Remote>>, request: Request, next: Next) -> Response {
    let mut response = admit(&remote, request, next).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, crate::console::POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn admit(remote: &Arc<Remote>, request: Request, next: Next) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reading && let Err(r) = same_origin(request.headers()) {
        return refusal(r);
    }
    let path = request.uri().path();
    if path == xnode_api::session::PATH
        || path == xnode_api::session::CHALLENGE_PATH
        || (reading && crate::console::is_console(path))
    {
        return next.run(request).await;
    }
    let Some(token) = remote.session_of(request.headers()) else {
        return refusal(Refusal {
            code: "unauthorized",
            message: format!(
                "sign in first: sign a challenge from POST {} as the node's owner",
                xnode_api::session::CHALLENGE_PATH
            ),
        });
    };
    let local = ROUTES
        .iter()
        .find(|r| r.method.as_str() == request.method().as_str() && matches_path(r.path, path));
    if let Some(route) = local.filter(|r| r.remote == Access::Local) {
        return refusal(Refusal {
            code: "forbidden",
            message: format!(
                "{} is for the node's own socket: over the network, xnoded takes only changes its owner signed (send a spec as a push: POST /v1/mesh/push)",
                route.op
            ),
        });
    }
    let response = next.run(request).await;
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if !streams {
        return response;
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, while_open(Arc::clone(remote), token, body))
}

/// How often a stream looks whether its session is still open.
const SESSION_LOOK: Duration = Duration::from_secs(5);

/// A stream that ends when its session does (signed out, or its hour over), so a
/// session's reading never outlasts it.
fn while_open(remote: Arc<Remote>, token: String, body: axum::body::Body) -> axum::body::Body {
    use futures_util::StreamExt as _;
    let mut looks = tokio::time::interval(SESSION_LOOK);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (body.into_data_stream(), looks, remote, token);
    let stream = futures_util::stream::unfold(
        state,
        |(mut data, mut looks, remote, token)| async move {
            loop {
                tokio::select! {
                    item = data.next() => return item.map(|item| (item, (data, looks, remote, token))),
                    _ = looks.tick() => {
                        let open = remote
                            .sessions
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .check(&token, now());
                        if !open {
                            return None;
                        }
                    }
                }
            }
        },
    );
    axum::body::Body::from_stream(stream)
}

/// Whether a route's path (with `{name}` parts) matches a request's.
fn matches_path(route: &str, path: &str) -> bool {
    let (mut want, mut got) = (route.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w == g || (w.starts_with('{') && !g.is_empty()) => {}
            _ => return false,
        }
    }
}

/// A write must come from a page of this node: a browser says where a request comes
/// from (`Origin`, `Sec-Fetch-Site`), and another site's is refused. A client that is
/// no browser says neither.
fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let refused = |why: String| Refusal {
        code: "forbidden",
        message: format!("a change from another origin is refused: {why}"),
    };
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return Err(refused(format!("Sec-Fetch-Site is {site}")));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        if origin != format!("https://{host}") {
            return Err(refused(format!("{origin} is not https://{host}")));
        }
    }
    Ok(())
}

impl Remote {
    /// The open session the request carries, if any.
    fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        session_cookies(headers)
            .find(|token| sessions.check(token, now))
            .map(str::to_owned)
    }
}

/// The session tokens in the request's cookies (a browser may send more than one of
/// the name).
fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random<const N: usize>() -> Result<[u8; N], Refusal> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(|e| Refusal {
        code: "unavailable",
        message: format!("no randomness: {e}"),
    })?;
    Ok(bytes)
}

type Sign = State<(Api, Arc<Remote>)>;

/// A challenge to sign.
async fn challenge(State((_, remote)): Sign) -> Response {
    let nonce = match random::<16>() {
        Ok(n) => n,
        Err(r) => return refusal(r),
    };
    let now = now();
    let text = remote
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .challenge(nonce, now);
    axum::Json(Challenge {
        challenge: text,
        expires: now + session::CHALLENGE_SECS,
    })
    .into_response()
}

/// A signed challenge: a session, in a cookie only this node's pages send back.
async fn sign_in(State((api, remote)): Sign, body: axum::body::Body) -> Response {
    let body = match crate::http::read(body, SIGN_IN_BYTES).await {
        Ok(body) => body,
        Err(r) => return refusal(r),
    };
    let signed: SignIn = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return refusal(Refusal {
                code: "bad_request",
                message: format!("not a signed challenge: {e}"),
            });
        }
    };
    // The cheap checks first: only a challenge this node handed out costs a look at
    // the node.
    let pending = remote
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pending(&signed.challenge, now());
    if let Err(why) = pending {
        return refusal(Refusal {
            code: "unauthorized",
            message: why.to_string(),
        });
    }
    // The owner of the spec in force.
    let owner = match crate::server::dispatch(xnode_api::Request::Status, &api.commands).await {
        Ok(status) => match serde_json::from_value::<xnode_api::node::Status>(status) {
            Ok(s) => s.owner.and_then(|o| xnode_spec::Owner::parse(&o).ok()),
            Err(e) => {
                return refusal(Refusal {
                    code: "unavailable",
                    message: format!("the node's status could not be read: {e}"),
                });
            }
        },
        Err(r) => return refusal(r),
    };
    let token = match random::<32>() {
        Ok(t) => t,
        Err(r) => return refusal(r),
    };
    let redeemed = remote
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .redeem(
            &signed.challenge,
            &signed.signature,
            owner.as_ref(),
            token,
            now(),
        );
    match redeemed {
        Ok(session) => {
            info!("the owner signed in over the network");
            let cookie = format!(
                "{COOKIE}={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
                session.token,
                session::SESSION_SECS
            );
            let mut response = axum::Json(SignedIn {
                expires: session.expires,
            })
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(why) => refusal(Refusal {
            code: "unauthorized",
            message: why.to_string(),
        }),
    }
}

/// Ends the request's session.
async fn sign_out(State((_, remote)): Sign, headers: HeaderMap) -> Response {
    let mut sessions = remote
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for token in session_cookies(&headers) {
        sessions.end(token);
    }
    drop(sessions);
    let mut response = axum::Json(serde_json::json!({})).into_response();
    let cookie = format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_match_their_requests() {
        for (route, path, matches) in [
            ("/v1/status", "/v1/status", true),
            ("/v1/state/{workload}", "/v1/state/db", true),
            ("/v1/state/{workload}", "/v1/state/", false),
            ("/v1/state/{workload}", "/v1/state", false),
            (
                "/v1/workloads/{workload}/logs",
                "/v1/workloads/web/logs",
                true,
            ),
            ("/v1/apply", "/v1/apply/x", false),
        ] {
            assert_eq!(matches_path(route, path), matches, "{route} {path}");
        }
    }

    #[test]
    fn writes_from_other_origins_are_refused() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        for (pairs, ok) in [
            (vec![], true),
            (
                vec![("host", "n1:8443"), ("origin", "https://n1:8443")],
                true,
            ),
            (
                vec![("host", "n1:8443"), ("sec-fetch-site", "same-origin")],
                true,
            ),
            (
                vec![("host", "n1:8443"), ("origin", "https://evil.example")],
                false,
            ),
            (
                vec![("host", "n1:8443"), ("origin", "http://n1:8443")],
                false,
            ),
            (
                vec![("host", "n1:8443"), ("sec-fetch-site", "cross-site")],
                false,
            ),
            (
                vec![("host", "n1:8443"), ("sec-fetch-site", "same-site")],
                false,
            ),
        ] {
            assert_eq!(same_origin(&headers(&pairs)).is_ok(), ok, "{pairs:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; __Host-xnode_session=abc; b=2; __Host-xnode_session=def",
            ),
        );
        assert_eq!(session_cookies(&h).collect::<Vec<_>>(), ["abc", "def"]);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-xnode_sessionx=abc; xnode_session=x"),
        );
        assert_eq!(session_cookies(&h).count(), 0);
    }
}
