//! Pushes on the wire: the envelope's bytes as they came (so nothing on the mesh loop
//! parses or re-encodes a spec, and the owner's signature is checked over the very
//! bytes a person could read), bounded in size, and in number by budgets shared by
//! every connection: a push holds its share from the moment it is read until its
//! check is done, so the node never holds more than a few pushes' worth of memory,
//! however many are sent. Members and bootstrap peers draw on a budget of their own,
//! so strangers that keep theirs busy (sending slowly, say) keep no member's push out;
//! and a stranger's push must arrive in a few seconds.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::request_response::Codec;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::PushResponse;

/// Pushes from members and bootstrap peers read or being checked at once.
pub(super) const PUSH_BUDGET: usize = 8;
/// Pushes from anyone else read or being checked at once.
pub(super) const STRANGER_PUSHES: usize = 4;
/// How long a stranger may take to send its push (a member's may take the request's
/// 30 s): 1 MiB at 50 KiB/s, or a small push on a loaded link.
pub(super) const STRANGER_READ: Duration = Duration::from_secs(20);
/// An answer is a sentence.
const MAX_RESPONSE: u64 = 64 * 1024;

/// The budgets, and who draws on which.
#[derive(Debug)]
struct Budget {
    trusted_peers: RwLock<HashSet<PeerId>>,
    trusted: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
}

/// The push codec's share of the node's view: who is trusted (set by the node), and
/// whose connection is being set up (set by [`super::push_peer`], since request-response
/// tells a codec nothing of its peer).
#[derive(Debug, Clone)]
pub(super) struct PushShared {
    budget: Arc<Budget>,
    pub(super) next_peer: Arc<Mutex<Option<PeerId>>>,
}

impl PushShared {
    /// Members and bootstrap peers, as of now.
    pub(super) fn trust(&self, peers: &HashSet<PeerId>) {
        if let Ok(mut t) = self.budget.trusted_peers.write() {
            t.clone_from(peers);
        }
    }
}

/// A push envelope's bytes; while it lives, it holds one share of the node's budget.
#[derive(Debug)]
pub struct PushBytes {
    bytes: Vec<u8>,
    _share: Option<OwnedSemaphorePermit>,
}

impl PushBytes {
    /// An outgoing push: it takes no share of this node's budget.
    pub fn outgoing(bytes: Vec<u8>) -> PushBytes {
        PushBytes {
            bytes,
            _share: None,
        }
    }
}

impl AsRef<[u8]> for PushBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The push protocol's codec: one per connection (and stream), which knows its peer,
/// all drawing on the node's budgets.
pub(super) struct PushCodec {
    shared: PushShared,
    peer: Option<PeerId>,
}

impl PushCodec {
    pub(super) fn new() -> (PushCodec, PushShared) {
        let shared = PushShared {
            budget: Arc::new(Budget {
                trusted_peers: RwLock::new(HashSet::new()),
                trusted: Arc::new(Semaphore::new(PUSH_BUDGET)),
                strangers: Arc::new(Semaphore::new(STRANGER_PUSHES)),
            }),
            next_peer: Arc::new(Mutex::new(None)),
        };
        let codec = PushCodec {
            shared: shared.clone(),
            peer: None,
        };
        (codec, shared)
    }

    fn is_trusted(&self) -> bool {
        self.peer.is_some_and(|p| {
            self.shared
                .budget
                .trusted_peers
                .read()
                .is_ok_and(|t| t.contains(&p))
        })
    }
}

/// A connection's codec is cloned from the behaviour's as the connection is set up:
/// it takes the peer being set up then. (Unknown, it is a stranger's.)
impl Clone for PushCodec {
    fn clone(&self) -> Self {
        let peer = self
            .peer
            .or_else(|| self.shared.next_peer.lock().ok().and_then(|p| *p));
        PushCodec {
            shared: self.shared.clone(),
            peer,
        }
    }
}

impl Codec for PushCodec {
    type Protocol = StreamProtocol;
    type Request = PushBytes;
    type Response = PushResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<PushBytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Refused before a byte is read: the sender hears its push did not arrive.
        let trusted = self.is_trusted();
        let budget = match trusted {
            true => &self.shared.budget.trusted,
            false => &self.shared.budget.strangers,
        };
        let share = budget.clone().try_acquire_owned().map_err(|_| {
            io::Error::other("this node is checking as many pushes as it takes at once")
        })?;
        let read = read_at_most(io, xnode_spec::push::MAX_BYTES as u64);
        let bytes = match trusted {
            true => read.await?,
            false => tokio::time::timeout(STRANGER_READ, read)
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "the push came too slowly")
                })??,
        };
        Ok(PushBytes {
            bytes,
            _share: Some(share),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<PushResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_at_most(io, MAX_RESPONSE).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        push: PushBytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&push.bytes).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        answer: PushResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&serde_json::to_vec(&answer)?).await?;
        io.close().await
    }
}

/// The whole stream, or an error if it is longer than `limit` (never a truncated
/// document that might still parse).
async fn read_at_most<T: AsyncRead + Unpin + Send>(io: &mut T, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(limit + 1).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {limit} bytes"),
        ));
    }
    Ok(bytes)
}
