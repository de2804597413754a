//! The local API between `xnoded` and its clients (`xnodectl`), over a unix socket.
//!
//! One request per connection: the client writes one JSON object and a newline, the
//! agent answers with one JSON object and a newline, then closes. Every message
//! carries `"v": 1`; an agent refuses versions it does not speak. See `docs/api.md`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xnode/api.sock";

/// Largest message either side reads: a spec of 10,000 workloads fits easily.
pub const MAX_MESSAGE: u64 = 64 << 20;

/// Where a spec came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The spec file (what the NixOS module writes).
    File {
        /// Its path.
        path: String,
    },
    /// `xnodectl apply` through the local API.
    Api,
    /// A rollback, to the spec of an earlier generation.
    Rollback {
        /// The generation whose spec was restored.
        to: u64,
    },
    /// A push signed by the node's owner, delivered over the mesh.
    Mesh {
        /// The peer that delivered it.
        peer: String,
        /// The push's own generation (the owner's counter).
        push_generation: u64,
    },
    /// A move in the rollout of the fleet spec: the node spec in force, with the
    /// workloads of this fleet generation.
    Fleet {
        /// The fleet generation moved to (0: none, its workloads all gone).
        generation: u64,
    },
}

/// What became of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Accepted; being applied.
    Applying,
    /// Applied, and every changed workload passed its health check.
    Healthy,
    /// Applied, unhealthy, and replaced by the last good generation.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// Applied and unhealthy, kept in force because rollback was turned off or there
    /// was nothing to go back to.
    Unhealthy {
        /// Why.
        reason: String,
    },
}

/// One generation's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number; numbers only grow.
    pub number: u64,
    /// The spec's content hash.
    pub hash: String,
    /// Where it came from.
    pub source: Source,
    /// When it was accepted, in seconds since the Unix epoch.
    pub accepted_at: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// The fleet generation whose workloads it runs beside the node spec's; none
    /// without a fleet spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<u64>,
    /// The hash of its node spec alone, when it holds a fleet spec's workloads too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_hash: Option<String>,
}

impl Generation {
    /// The hash of its node spec alone: what a spec file, an apply or a push is
    /// compared with.
    pub fn node_hash(&self) -> &str {
        self.node_hash.as_deref().unwrap_or(&self.hash)
    }
}

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

/// A request with its version, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version.
    pub v: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// The agent's answer: `{"v":1,"ok":true,"data":…}` or `{"v":1,"ok":false,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Protocol version.
    pub v: u32,
    /// Whether the request was carried out.
    pub ok: bool,
    /// The answer, when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Why not, when not `ok`: a sentence for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A successful answer.
    pub fn ok(data: impl Serialize) -> Reply {
        match serde_json::to_value(data) {
            Ok(data) => Reply {
                v: VERSION,
                ok: true,
                data: Some(data),
                error: None,
            },
            Err(e) => Reply::error(format!("cannot encode the answer: {e}")),
        }
    }

    /// A refusal.
    pub fn error(why: impl Into<String>) -> Reply {
        Reply {
            v: VERSION,
            ok: false,
            data: None,
            error: Some(why.into()),
        }
    }
}

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
    /// The answer was not a reply of this protocol.
    #[error("xnoded answered something that is not an API reply: {0}")]
    Protocol(String),
    /// The agent refused.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request and returns the agent's data. `timeout` bounds the whole
/// exchange (an apply waits for health checks, so give it room).
pub fn call(socket: &Path, request: Request, timeout: Duration) -> Result<Value, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        socket: socket.to_owned(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(&Envelope {
        v: VERSION,
        request,
    })
    .map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    match stream.write_all(&line) {
        // xnoded refuses a stranger without reading its request and hangs up: the
        // refusal is already waiting to be read.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    let mut answer = String::new();
    BufReader::new(std::io::Read::take(&stream, MAX_MESSAGE)).read_line(&mut answer)?;
    let reply: Reply =
        serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if reply.v != VERSION {
        return Err(ClientError::Protocol(format!(
            "protocol version {} (this client speaks {VERSION})",
            reply.v
        )));
    }
    match (reply.ok, reply.data, reply.error) {
        (true, Some(data), _) => Ok(data),
        (true, None, _) => Ok(Value::Null),
        (false, _, error) => Err(ClientError::Refused(
            error.unwrap_or_else(|| "refused, with no reason".into()),
        )),
    }
}

/// Follows a stream of Server-Sent Events at `path` (`GET`, over HTTP on the socket):
/// each event's data, as JSON, goes to `each` until `each` says stop (`Ok(true)`) or the
/// stream ends (`Ok(false)`). A refusal, or an `error` event, is
/// [`ClientError::Refused`] with the agent's sentence.
pub fn follow(
    socket: &Path,
    path: &str,
    mut each: impl FnMut(Value) -> bool,
) -> Result<bool, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                socket: socket.to_owned(),
                source,
            })?;
        let protocol = |e: hyper::Error| ClientError::Protocol(e.to_string());
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(protocol)?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header("host", "xnode")
            .header("accept", "text/event-stream")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(protocol)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut pending = Vec::new();
        // The kind of the event being read (`event:`), until its blank line.
        let mut kind = String::new();
        use http_body_util::BodyExt as _;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(protocol)?.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            if pending.len() as u64 > MAX_MESSAGE {
                return Err(ClientError::Protocol("a message over 64 MiB".into()));
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
                    let value: Value = serde_json::from_str(data.trim_start())
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    if kind == "error" {
                        return Err(ClientError::Refused(
                            value["message"]
                                .as_str()
                                .unwrap_or("the stream failed, with no reason")
                                .to_owned(),
                        ));
                    }
                    if !each(value) {
                        return Ok(true);
                    }
                }
            }
        }
        if status.is_success() {
            return Ok(false);
        }
        let refusal: Value = serde_json::from_slice(&pending).unwrap_or_default();
        Err(ClientError::Refused(
            refusal["error"]["message"]
                .as_str()
                .map_or_else(|| format!("refused with {status}"), str::to_owned),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let e = Envelope {
            v: 1,
            request: Request::Apply {
                spec: serde_json::json!({"version": 1}),
                no_rollback: true,
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"v":1,"op":"apply","spec":{"version":1},"no_rollback":true}"#
        );
        let back: Envelope = serde_json::from_str(r#"{"v":1,"op":"status"}"#).unwrap();
        assert_eq!(back.request, Request::Status);
        assert!(serde_json::from_str::<Envelope>(r#"{"v":1,"op":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Reply::error("no")).unwrap(),
            r#"{"v":1,"ok":false,"error":"no"}"#
        );
    }

    /// A server that answers and hangs up before reading (as xnoded does to a
    /// stranger): the client, still writing, must report the answer, not a broken pipe.
    #[test]
    fn a_refusal_before_the_request_is_read_reaches_the_client() {
        let dir = std::env::temp_dir().join(format!("xnode-api-refusal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut line = serde_json::to_vec(&Reply::error("go away")).unwrap();
            line.push(b'\n');
            stream.write_all(&line).unwrap();
        });
        // Larger than any socket buffer, so the client is still writing at the hang-up.
        let spec = Value::String("x".repeat(4 << 20));
        let got = call(&path, Request::Plan { spec }, Duration::from_secs(10));
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(&got, Err(ClientError::Refused(e)) if e == "go away"),
            "{got:?}"
        );
    }
}
