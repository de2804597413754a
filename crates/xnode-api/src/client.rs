//! The client's side: one request over HTTP on the unix socket, or a stream of events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use serde::de::DeserializeOwned;

use crate::{ErrorBody, MAX_MESSAGE, Request, StreamError};

/// Why a call failed on the client's side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach xnoded at {}: {source} (is it running? is this user root or in its API group?)", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("talking to xnoded failed: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer from xnoded within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The answer was not one of this API's.
    #[error("xnoded answered something that is not an API reply: {0}")]
    Protocol(String),
    /// The agent refused.
    #[error("{message}")]
    Refused {
        /// The refusal's code (`bad_request`, `forbidden`, `refused`, …; docs/api.md).
        code: String,
        /// Why, for a person.
        message: String,
    },
}

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// Sends one request and returns its reply, as `T`. `timeout` bounds the whole
/// exchange (an apply waits for health checks, so give it room).
pub fn call<T: DeserializeOwned>(
    socket: &Path,
    request: Request,
    timeout: Duration,
) -> Result<T, ClientError> {
    let http = request.to_http().map_err(protocol)?;
    let body = http.body.unwrap_or_default();
    if body.len() as u64 > MAX_MESSAGE {
        return Err(ClientError::Protocol(format!(
            "the request is {} MiB, over the API's limit of {} MiB",
            body.len() >> 20,
            MAX_MESSAGE >> 20
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let exchange = async {
        let (status, body) =
            exchange(socket, http.route.method.as_str(), &http.target, body).await?;
        let mut answer = Vec::new();
        let mut body = body;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(protocol)?.into_data() {
                answer.extend_from_slice(&data);
                if answer.len() as u64 > MAX_MESSAGE {
                    return Err(protocol("an answer over 64 MiB"));
                }
            }
        }
        if !status.is_success() {
            return Err(refusal(status, &answer));
        }
        serde_json::from_slice(&answer).map_err(protocol)
    };
    runtime
        .block_on(async { tokio::time::timeout(timeout, exchange).await })
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// What a refusal says: its code and sentence, or the status when the body has none.
fn refusal(status: hyper::StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Refused {
            code: error.code,
            message: error.message,
        },
        Err(_) => ClientError::Refused {
            code: status.as_u16().to_string(),
            message: format!("refused with {status}"),
        },
    }
}

/// One HTTP exchange on the socket: the status and the body, as it comes.
async fn exchange(
    socket: &Path,
    method: &str,
    target: &str,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, hyper::body::Incoming), ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(protocol)?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", "xnode")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .map_err(protocol)?;
    let response = sender.send_request(request).await.map_err(protocol)?;
    Ok((response.status(), response.into_body()))
}

/// How long a stream may take to start.
const START: Duration = Duration::from_secs(30);

/// Follows a stream of Server-Sent Events at `path` (`GET`): each event's data, as
/// JSON, goes to `each` until `each` says stop (`Ok(true)`) or the stream ends
/// (`Ok(false)`). A refusal, or an `error` event, is [`ClientError::Refused`] with the
/// agent's sentence.
pub fn follow<T: DeserializeOwned>(
    socket: &Path,
    path: &str,
    mut each: impl FnMut(T) -> bool,
) -> Result<bool, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The stream itself may be quiet for long; its start may not.
        let (status, mut body) =
            tokio::time::timeout(START, exchange(socket, "GET", path, Vec::new()))
                .await
                .map_err(|_| ClientError::Timeout(START))??;
        let mut pending = Vec::new();
        // The kind of the event being read (`event:`), until its blank line.
        let mut kind = String::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(protocol)?.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            if pending.len() as u64 > MAX_MESSAGE {
                return Err(protocol("a message over 64 MiB"));
            }
            if !status.is_success() {
                continue;
            }
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end();
                if line.is_empty() {
                    kind.clear();
                } else if let Some(k) = line.strip_prefix("event:") {
                    k.trim_start().clone_into(&mut kind);
                } else if let Some(data) = line.strip_prefix("data:") {
                    let data = data.trim_start();
                    if kind == "error" {
                        let failed: StreamError = serde_json::from_str(data).map_err(protocol)?;
                        return Err(ClientError::Refused {
                            code: "stream_failed".into(),
                            message: failed.message,
                        });
                    }
                    let value: T = serde_json::from_str(data).map_err(protocol)?;
                    if !each(value) {
                        return Ok(true);
                    }
                }
            }
        }
        if status.is_success() {
            return Ok(false);
        }
        Err(refusal(status, &pending))
    })
}
