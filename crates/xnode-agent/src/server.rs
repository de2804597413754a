//! The local API on a unix socket: mode 0660, owned by root and the API group, and
//! every peer checked with SO_PEERCRED, so only root or members of that group can
//! talk to the agent.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;
use xnode_api::{Envelope, MAX_MESSAGE, Reply, Request, VERSION};
use xnode_spec::Validated;

use crate::service::Command;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Creating, binding or securing the socket failed.
    #[error("cannot set up the API socket {}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The named group does not exist.
    #[error("the API group {0:?} does not exist (see /etc/group)")]
    NoGroup(String),
}

/// A group's id from /etc/group.
pub fn group_id(name: &str) -> Result<u32, ServerError> {
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| ServerError::NoGroup(name.to_owned()))
}

/// Binds the socket (replacing a stale one) with mode 0660 and group `gid`.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, ServerError> {
    let err = |source| ServerError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    std::os::unix::fs::chown(path, Some(0), gid).map_err(err)?;
    Ok(listener)
}

/// Connections the API holds at once. Anyone may connect, but only root and the API
/// group get past the first check, and a refused connection is closed at once.
const MAX_CONNECTIONS: usize = 64;

/// Serves until the agent's loop goes away.
pub async fn serve(listener: UnixListener, gid: Option<u32>, commands: mpsc::Sender<Command>) {
    let closed = commands.clone();
    crate::accept::serve(
        listener,
        "the API socket",
        MAX_CONNECTIONS,
        move |stream| {
            let commands = commands.clone();
            async move {
                if let Err(e) = answer(stream, gid, commands).await {
                    debug!("API connection ended: {e}");
                }
            }
        },
        move || closed.is_closed(),
    )
    .await;
}

/// Whether a peer may use the API: root, or a member of the API group. The peer's
/// credentials and groups are those the kernel took when it connected, so nothing
/// can change under the check (a process's /proc entry could be another's by then).
fn allowed(stream: &UnixStream, gid: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    if cred.uid() == 0 {
        return true;
    }
    let Some(gid) = gid else { return false };
    cred.gid() == gid || peer_groups(stream).is_ok_and(|groups| groups.contains(&gid))
}

/// SO_PEERGROUPS, as Linux numbers it on the architectures XnodeOS runs on.
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer's supplementary groups when it connected (SO_PEERGROUPS, Linux 4.13).
#[allow(unsafe_code)]
fn peer_groups(stream: &UnixStream) -> std::io::Result<Vec<u32>> {
    use std::os::fd::AsRawFd as _;
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * 4).unwrap_or(libc::socklen_t::MAX);
        // SAFETY: `groups` is valid for writes of `len` bytes; the kernel writes at most
        // `len` bytes there and sets `len` to the size it has (or needs, with ERANGE).
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / 4;
        if r == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let e = std::io::Error::last_os_error();
        // NGROUPS_MAX is 65536.
        if e.raw_os_error() == Some(libc::ERANGE) && needed > groups.len() && needed <= 65536 {
            groups.resize(needed, 0);
            continue;
        }
        return Err(e);
    }
}

/// How long a client may take to send its request, and to take its answer: a
/// connection that says nothing, or reads nothing, must not hold a slot forever.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a request that could not be carried out gets: a stable code for programs, and
/// a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `bad_request`, `invalid_spec`, `refused` (the agent said no: busy, nothing to
    /// roll back to, …), `forbidden` or `unavailable`.
    pub code: &'static str,
    /// Why.
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// What a peer that is neither root nor in the API group is told.
pub const FORBIDDEN: &str =
    "permission denied: the xnoded API answers root and members of its API group";

/// How long a stranger may take to show which protocol it speaks before it is refused
/// in the line protocol's words: a moment, so strangers hold no slot for long.
pub const STRANGER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a connection speaks HTTP: its first byte is not a line request's `{`.
/// Waits (up to `wait`) for that byte, and reads nothing.
async fn speaks_http(stream: &UnixStream, wait: std::time::Duration) -> std::io::Result<bool> {
    let look = async {
        loop {
            stream.readable().await?;
            let mut first = [0u8; 1];
            match stream.try_io(tokio::io::Interest::READABLE, || {
                rustix::net::recv(stream, &mut first, rustix::net::RecvFlags::PEEK)
                    .map_err(std::io::Error::from)
            }) {
                Ok(_) => return Ok(first[0] != b'{'),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    };
    tokio::time::timeout(wait, look)
        .await
        .map_err(|_| std::io::Error::other("no request in time"))?
}

async fn answer(
    stream: UnixStream,
    gid: Option<u32>,
    commands: mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let permitted = allowed(&stream, gid);
    let wait = if permitted {
        READ_TIMEOUT
    } else {
        STRANGER_WAIT
    };
    match speaks_http(&stream, wait).await {
        Ok(true) => return crate::http::serve_connection(stream, permitted, commands).await,
        Ok(false) => {}
        // A silent stranger is refused all the same.
        Err(_) if !permitted => {}
        Err(e) => return Err(e),
    }
    let (read, mut write) = stream.into_split();
    let reply = if permitted {
        let mut line = String::new();
        let mut reader = BufReader::new(read.take(MAX_MESSAGE));
        match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
            Ok(read) => {
                read?;
                request(line, &commands).await
            }
            Err(_) => Reply::error("no request within 30 s"),
        }
    } else {
        Reply::error(FORBIDDEN)
    };
    tokio::time::timeout(READ_TIMEOUT, send(&mut write, &reply))
        .await
        .map_err(|_| std::io::Error::other("the client took no answer within 30 s"))?
}

async fn request(line: String, commands: &mpsc::Sender<Command>) -> Reply {
    // Parsed beside the loop: a request may be 64 MiB.
    let parsed = tokio::task::spawn_blocking(move || {
        xnode_spec::json::from_slice::<Envelope>(line.as_bytes())
    })
    .await;
    let envelope = match parsed {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return Reply::error(format!("not a valid request: {e}")),
        Err(e) => return Reply::error(format!("reading the request failed: {e}")),
    };
    if envelope.v != VERSION {
        return Reply::error(format!(
            "protocol version {} is not supported (this agent speaks {VERSION})",
            envelope.v
        ));
    }
    match dispatch(envelope.request, commands).await {
        Ok(data) => Reply::ok(data),
        Err(refusal) => Reply::error(refusal.message),
    }
}

/// Carries out a request through the agent's loop (a spec checked beside it first);
/// its data, or why not.
pub async fn dispatch(
    request: Request,
    commands: &mpsc::Sender<Command>,
) -> Result<serde_json::Value, Refusal> {
    let (tx, rx) = oneshot::channel();
    let command = match request {
        Request::Apply { spec, no_rollback } => {
            let (spec, raw) = validate(spec)
                .await
                .map_err(|why| Refusal::new("invalid_spec", why))?;
            Command::Apply {
                spec,
                raw,
                no_rollback,
                reply: tx,
            }
        }
        Request::Plan { spec } => {
            let (spec, _) = validate(spec)
                .await
                .map_err(|why| Refusal::new("invalid_spec", why))?;
            Command::Plan { spec, reply: tx }
        }
        other => Command::Request(other, tx),
    };
    if commands.send(command).await.is_err() {
        return Err(Refusal::new("unavailable", "the agent is shutting down"));
    }
    let reply = rx
        .await
        .map_err(|_| Refusal::new("unavailable", "the agent dropped the request"))?;
    match (reply.ok, reply.data, reply.error) {
        (true, data, _) => Ok(data.unwrap_or(serde_json::Value::Null)),
        (false, _, error) => Err(Refusal::new(
            "refused",
            error.unwrap_or_else(|| "refused, with no reason".into()),
        )),
    }
}

/// A request's spec, validated here rather than in the agent's loop: every problem,
/// or the spec with the bytes it is recorded as.
async fn validate(spec: serde_json::Value) -> Result<(Box<Validated>, Vec<u8>), String> {
    let checked = tokio::task::spawn_blocking(move || {
        let raw = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
        xnode_spec::parse(&raw)
            .map(|v| (Box::new(v), raw))
            .map_err(|invalid| invalid.to_string())
    });
    checked
        .await
        .unwrap_or_else(|e| Err(format!("validating the spec failed: {e}")))
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.shutdown().await
}
