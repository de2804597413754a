//! The console: a page xnoded serves itself over HTTPS (`--http-listen`), its files
//! compiled into the binary so that a node with no internet serves it whole. Plain
//! HTML, CSS and one script with no build step and nothing fetched from elsewhere;
//! it reads and changes the node only through the API, as the owner signed in.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/style.css");

/// What a page of the node may load and talk to: itself, and nothing else.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The console's routes: `/` and its files under `/console/`.
pub fn router() -> Router {
    let file = |kind: &'static str, body: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, kind)], body).into_response() })
    };
    Router::new()
        .route("/", file("text/html; charset=utf-8", INDEX))
        .route(
            "/console/app.js",
            file("text/javascript; charset=utf-8", SCRIPT),
        )
        .route("/console/style.css", file("text/css; charset=utf-8", STYLE))
}

/// Whether a path is one of the console's files, which anyone may load (the data
/// they show needs a session).
pub fn is_console(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}
