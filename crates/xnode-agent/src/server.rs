//! The local API on a unix socket: mode 0660, owned by root and the API group, and
//! every peer checked with SO_PEERCRED, so only root or members of that group can
//! talk to the agent.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;
use xnode_api::Request;
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
pub async fn serve(listener: UnixListener, gid: Option<u32>, api: crate::http::Api) {
    let closed = api.commands.clone();
    crate::accept::serve(
        listener,
        "the API socket",
        MAX_CONNECTIONS,
        move |stream| {
            let api = api.clone();
            async move {
                let permitted = allowed(&stream, gid);
                if let Err(e) = crate::http::serve_connection(stream, permitted, api).await {
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

/// How long a stranger's whole exchange may take: a moment, so strangers hold no slot
/// for long.
pub const STRANGER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

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
        Request::PushDraft { spec } => {
            validate(spec.clone())
                .await
                .map_err(|why| Refusal::new("invalid_spec", why))?;
            Command::Request(Request::PushDraft { spec }, tx)
        }
        other => Command::Request(other, tx),
    };
    if commands.send(command).await.is_err() {
        return Err(Refusal::new("unavailable", "the agent is shutting down"));
    }
    let reply = rx
        .await
        .map_err(|_| Refusal::new("unavailable", "the agent dropped the request"))?;
    reply.0.map_err(|why| Refusal::new("refused", why))
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
