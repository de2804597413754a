//! Answering peers: a fleet member's question about a path this node holds gets the
//! path's narinfo or its NAR; anyone else's gets a refusal. Transfers are bounded per
//! peer and in all, and each peer's bytes are paced by a token bucket, so one member
//! cannot take the node's uplink or its disk's read bandwidth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use libp2p::PeerId;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::store::LocalStore;
use crate::trust::Trust;
use crate::wire::{Answer, Ask, Want, WireError, read_line, write_line};

/// How long an asker has to say what it wants.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one chunk may wait for an asker that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const CHUNK: usize = 256 * 1024;
/// Refusals being written to strangers at once, and how long each may take.
const REFUSALS: usize = 8;
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// How much a node gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Questions one peer may have open at once (a NAR transfer is one).
    pub per_peer: usize,
    /// Questions open at once, all peers together.
    pub total: usize,
    /// NAR transfers one peer may have at once.
    pub nars_per_peer: usize,
    /// Bytes a second one peer's NARs may take, together.
    pub peer_rate: u64,
}

impl Default for Limits {
    /// Enough for Nix's parallel narinfo lookups from a few members at once, and a
    /// gigabit link's worth of NARs per peer.
    fn default() -> Limits {
        Limits {
            per_peer: 16,
            total: 64,
            nars_per_peer: 4,
            peer_rate: 128 * 1024 * 1024,
        }
    }
}

/// Who may ask: the fleet's members, as the mesh knows them now.
pub type Gate = Arc<dyn Fn(PeerId) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// A token bucket: `rate` bytes a second, with bursts of up to a second's worth.
#[derive(Debug)]
struct Bucket {
    rate: u64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate as f64,
            at: now,
        }
    }

    /// Takes `n` bytes' worth at `now`: how long to wait before sending them.
    fn take(&mut self, n: u64, now: Instant) -> Duration {
        let rate = self.rate.max(1) as f64;
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

#[derive(Debug)]
struct Peer {
    open: usize,
    nars: usize,
    bucket: Arc<Mutex<Bucket>>,
}

/// This node's side of the protocol.
pub struct Server {
    store: LocalStore,
    trust: Trust,
    limits: Limits,
    gate: Gate,
    peers: Mutex<HashMap<PeerId, Peer>>,
    total: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    corrupt: bool,
}

/// A question's hold on its peer's slots, given back when dropped.
struct Slot<'a> {
    server: &'a Server,
    peer: PeerId,
    nar: bool,
    _total: OwnedSemaphorePermit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut peers = self.server.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.get_mut(&self.peer) {
            p.open = p.open.saturating_sub(1);
            if self.nar {
                p.nars = p.nars.saturating_sub(1);
            }
        }
    }
}

/// A bucket untouched this long is full again: its peer need not be remembered.
const FORGET: Duration = Duration::from_secs(1);

impl Server {
    /// A server of `store`'s paths to the peers `gate` lets in.
    pub fn new(store: LocalStore, limits: Limits, gate: Gate) -> Server {
        Server {
            store,
            trust: Trust::default(),
            limits,
            gate,
            peers: Mutex::new(HashMap::new()),
            total: Arc::new(Semaphore::new(limits.total)),
            refusals: Arc::new(Semaphore::new(REFUSALS)),
            corrupt: false,
        }
    }

    /// A test hook: every NAR served has one byte changed, as a lying or broken peer's
    /// would. Nix must refuse it.
    pub fn corrupting(mut self) -> Server {
        self.corrupt = true;
        self
    }

    /// Answers the streams peers open, each beside the others, until they end.
    pub async fn run(self: Arc<Self>, mut incoming: libp2p_stream::IncomingStreams) {
        while let Some((peer, mut stream)) = incoming.next().await {
            // A stranger is told no before anything is read, and takes no member's
            // slot: at most a few refusals are being written at once, past them its
            // streams are dropped.
            if !(self.gate)(peer).await {
                debug!(%peer, "refused a peer outside the fleet");
                let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
                    continue;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let reason = "only this node's fleet members may fetch its store paths".into();
                    let _ =
                        tokio::time::timeout(REFUSAL_TIMEOUT, refuse(&mut stream, reason)).await;
                });
                continue;
            }
            // Past the total, a stream is closed unread: the asker tries another peer.
            let Ok(permit) = self.total.clone().try_acquire_owned() else {
                debug!(%peer, "too many questions at once: one dropped");
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.answer(peer, stream, permit).await {
                    debug!(%peer, "a question went unanswered: {e}");
                }
            });
        }
    }

    fn slot(&self, peer: PeerId, nar: bool, total: OwnedSemaphorePermit) -> Option<Slot<'_>> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        // A peer is kept while its bucket is not yet full again, so a run of questions
        // one after another shares one budget.
        peers.retain(|_, p| {
            p.open > 0
                || p.bucket
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .at
                    .elapsed()
                    < FORGET
        });
        let p = peers.entry(peer).or_insert_with(|| Peer {
            open: 0,
            nars: 0,
            bucket: Arc::new(Mutex::new(Bucket::new(
                self.limits.peer_rate,
                Instant::now(),
            ))),
        });
        if p.open >= self.limits.per_peer || (nar && p.nars >= self.limits.nars_per_peer) {
            return None;
        }
        p.open += 1;
        p.nars += usize::from(nar);
        Some(Slot {
            server: self,
            peer,
            nar,
            _total: total,
        })
    }

    fn bucket(&self, peer: &PeerId) -> Option<Arc<Mutex<Bucket>>> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(peer).map(|p| p.bucket.clone())
    }

    /// Answers one member's stream's question.
    pub async fn answer<S>(
        &self,
        peer: PeerId,
        stream: S,
        total: OwnedSemaphorePermit,
    ) -> Result<(), WireError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut stream = BufReader::new(stream);
        let ask: Ask = tokio::time::timeout(ASK_TIMEOUT, read_line(&mut stream))
            .await
            .map_err(|_| WireError::Io(std::io::ErrorKind::TimedOut.into()))??;
        let Some(_slot) = self.slot(peer, ask.want == Want::Nar, total) else {
            let reason = format!(
                "busy: at most {} questions and {} NARs at once per peer",
                self.limits.per_peer, self.limits.nars_per_peer
            );
            return refuse(&mut stream, reason).await;
        };
        let narinfo = match self.store.narinfo(&ask.hash).await {
            // Only what a member's Nix would take: a path no trusted key signed may be
            // a configuration with secrets in it, and is no one else's to read.
            Ok(Some(narinfo)) if self.trust.signed(&narinfo).await => narinfo,
            Ok(Some(_)) => {
                debug!(path = %ask.hash, "not served: no key this node trusts signed it");
                return finish(&mut stream, &Answer::Missing).await;
            }
            Ok(None) => return finish(&mut stream, &Answer::Missing).await,
            Err(e) => {
                warn!(path = %ask.hash, "cannot read the store: {e}");
                return finish(&mut stream, &Answer::Missing).await;
            }
        };
        match ask.want {
            Want::Narinfo => {
                let text = narinfo.to_canonical_bytes();
                write_line(
                    &mut stream,
                    &Answer::Found {
                        size: text.len() as u64,
                    },
                )
                .await?;
                stream.write_all(&text).await?;
                stream.close().await?;
                Ok(())
            }
            Want::Nar => {
                let path = narinfo.store_dir().render_path(narinfo.store_path());
                let size = narinfo.nar_size();
                let bucket = self.bucket(&peer);
                let sent = self.send_nar(&mut stream, &path, size, bucket).await?;
                debug!(%peer, %path, bytes = sent, "served {path} ({sent} bytes) to {peer}");
                Ok(())
            }
        }
    }

    async fn send_nar<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
        path: &str,
        size: u64,
        bucket: Option<Arc<Mutex<Bucket>>>,
    ) -> Result<u64, WireError> {
        let mut child = self
            .store
            .dump(path)
            .map_err(|e| WireError::Io(std::io::Error::other(e)))?;
        let Some(mut nar) = child.stdout.take() else {
            return Err(WireError::Io(std::io::Error::other(
                "nix-store gave no output",
            )));
        };
        write_line(out, &Answer::Found { size }).await?;
        let mut buf = vec![0; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = nar.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if self.corrupt && sent == 0 {
                corrupt(&mut buf[..n]);
            }
            if let Some(bucket) = &bucket {
                let wait = bucket
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(n as u64, Instant::now());
                // Not even a zero sleep within the budget: a timer's tick a chunk adds up.
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            tokio::time::timeout(WRITE_TIMEOUT, out.write_all(&buf[..n]))
                .await
                .map_err(|_| WireError::Io(std::io::ErrorKind::TimedOut.into()))??;
            sent += n as u64;
        }
        let _ = child.wait().await;
        if sent != size {
            // The path changed under Nix (or Nix failed): the asker sees a short NAR.
            return Err(WireError::Io(std::io::Error::other(format!(
                "nix-store --dump gave {sent} bytes where the narinfo says {size}"
            ))));
        }
        out.close().await?;
        Ok(sent)
    }
}

/// Changes the first byte of the first non-empty file in a NAR's first chunk, keeping
/// the archive well-formed: the NAR a lying peer would send, whose hash alone shows it.
fn corrupt(nar: &mut [u8]) {
    const CONTENTS: &[u8] = b"\x08\0\0\0\0\0\0\0contents";
    let mut from = 0;
    while let Some(at) = nar[from..]
        .windows(CONTENTS.len())
        .position(|w| w == CONTENTS)
        .map(|i| from + i + CONTENTS.len())
    {
        let len = nar
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes);
        if len > 0
            && let Some(byte) = nar.get_mut(at + 8)
        {
            *byte ^= 0x01;
            return;
        }
        from = at;
    }
}

async fn refuse<W: AsyncWrite + Unpin>(out: &mut W, reason: String) -> Result<(), WireError> {
    finish(out, &Answer::Refused { reason }).await
}

async fn finish<W: AsyncWrite + Unpin>(out: &mut W, answer: &Answer) -> Result<(), WireError> {
    write_line(out, answer).await?;
    out.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_seconds_worth_through_then_paces_to_its_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(1000, start);
        assert_eq!(b.take(1000, start), Duration::ZERO, "a burst of a second");
        assert_eq!(b.take(500, start), Duration::from_millis(500));
        // Half a second on, the debt is paid: the next 500 wait half a second more.
        let later = start + Duration::from_millis(500);
        assert_eq!(b.take(500, later), Duration::from_millis(500));
        // Idle for long, it refills to one second's worth, no more.
        let idle = later + Duration::from_secs(60);
        assert_eq!(b.take(1000, idle), Duration::ZERO);
        assert!(b.take(1, idle) > Duration::ZERO);
    }

    #[test]
    fn the_test_hook_changes_a_files_first_byte_and_nothing_else() {
        let mut nar = Vec::new();
        for word in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"hello",
        ] {
            nar.extend((word.len() as u64).to_le_bytes());
            nar.extend(word);
            nar.extend(vec![0; (8 - word.len() % 8) % 8]);
        }
        let before = nar.clone();
        corrupt(&mut nar);
        let changed: Vec<usize> = (0..nar.len()).filter(|i| nar[*i] != before[*i]).collect();
        let at = before.windows(5).position(|w| w == b"hello").unwrap();
        assert_eq!(changed, [at]);
    }

    #[tokio::test]
    async fn slots_are_bounded_per_peer_and_given_back() {
        let limits = Limits {
            per_peer: 2,
            total: 8,
            nars_per_peer: 1,
            peer_rate: 1,
        };
        let server = Server::new(
            LocalStore::default(),
            limits,
            Arc::new(|_: PeerId| Box::pin(async { true })),
        );
        let total = || server.total.clone().try_acquire_owned().unwrap();
        let (a, b) = (PeerId::random(), PeerId::random());
        let first = server.slot(a, true, total()).unwrap();
        assert!(server.slot(a, true, total()).is_none(), "one NAR at a time");
        let second = server.slot(a, false, total()).unwrap();
        assert!(
            server.slot(a, false, total()).is_none(),
            "two questions at a time"
        );
        assert!(
            server.slot(b, true, total()).is_some(),
            "another peer has its own"
        );
        drop(first);
        assert!(server.slot(a, true, total()).is_some());
        drop(second);
        let bucket = server.bucket(&a).unwrap();
        assert!(server.slot(a, true, total()).is_some());
        assert!(
            Arc::ptr_eq(&bucket, &server.bucket(&a).unwrap()),
            "questions one after another share a budget"
        );
    }
}
