//! Pushes on the wire: the envelope's bytes as they came (so nothing on the mesh loop
//! parses or re-encodes a spec, and the owner's signature is checked over the very
//! bytes a person could read), bounded in size, and in number by a budget shared by
//! every connection: a push holds its share of the budget from the moment it is read
//! until its check is done, so strangers cannot make the node hold more than
//! `PUSH_BUDGET` pushes' worth of memory, however many they send.

use std::io;
use std::sync::Arc;

use futures_util::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::PushResponse;

/// Pushes read or being checked at once, across all peers.
pub(super) const PUSH_BUDGET: usize = 8;
/// An answer is a sentence.
const MAX_RESPONSE: u64 = 64 * 1024;

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

/// The push protocol's codec: one per connection, all drawing on one budget.
#[derive(Clone)]
pub(super) struct PushCodec {
    budget: Arc<Semaphore>,
}

impl Default for PushCodec {
    fn default() -> Self {
        PushCodec {
            budget: Arc::new(Semaphore::new(PUSH_BUDGET)),
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
        let share = self.budget.clone().try_acquire_owned().map_err(|_| {
            io::Error::other("this node is checking as many pushes as it takes at once")
        })?;
        let bytes = read_at_most(io, xnode_spec::push::MAX_BYTES as u64).await?;
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
