//! The node's local binary cache: an HTTP server on 127.0.0.1 that Nix uses as a
//! substituter, answering from the fleet's members. Nix checks what comes through as
//! it checks any cache's (a trusted signature on the narinfo, the NAR's hash and size),
//! so a lying member can at most fail a download; the cache notes the member that
//! lied and asks others for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::io::{AsyncReadExt as _, BufReader};
use libp2p::{PeerId, Stream};
use nix_derivation::{HashAlgorithm, NixHash, NixHasher, StoreDir};
use nix_narinfo::{Compression, MAX_NARINFO_SIZE, NarInfo};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::wire::{Answer, Ask, HashPart, Want};

/// The members the cache asks, as the mesh knows them now.
pub trait Peers: Send + Sync + 'static {
    /// The mesh's stream control, while this node is in the mesh.
    fn control(&self) -> Option<libp2p_stream::Control>;
    /// Whom to ask for a path, best first: live members, those that hold closures
    /// ahead of the rest.
    fn candidates(&self) -> Vec<PeerId>;
}

/// At most this many members are asked for one path.
const MAX_ASKED: usize = 16;
/// How long a member has to open a stream and answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a NAR may stall between two chunks.
const STALL: Duration = Duration::from_secs(60);
/// Questions in flight at once (Nix looks narinfos up in parallel).
const ASKS: usize = 16;
/// NARs in flight at once.
const NARS: usize = 4;
/// Paths remembered (where found); forgotten all at once past this.
const MEMORY: usize = 4096;
/// How long a member that served a false NAR is not asked.
const DISTRUST: Duration = Duration::from_secs(600);
/// How long a member that ended a NAR early, stalled or was too slow is not asked:
/// it may have restarted, or its link be busy.
const SLOW: Duration = Duration::from_secs(60);

/// What Nix reads first: the store this cache is for, and that it may be asked for
/// many paths at once. Its priority puts it after cache.nixos.org (40) where both
/// are used: the fleet is asked for what the public cache lacks.
const CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 45\n";

#[derive(Default)]
struct Memory {
    /// Who answered last for each path.
    found: HashMap<HashPart, PeerId>,
    /// Members not to ask, and until when: those that lied, those too slow.
    avoided: HashMap<PeerId, Instant>,
}

/// The cache: the members it asks, and what it learnt of them.
pub struct Cache {
    peers: Arc<dyn Peers>,
    trust: crate::trust::Trust,
    memory: Mutex<Memory>,
    asks: Arc<Semaphore>,
    nars: Arc<Semaphore>,
}

impl Cache {
    /// A cache that asks `peers`.
    pub fn new(peers: Arc<dyn Peers>) -> Arc<Cache> {
        Arc::new(Cache {
            peers,
            trust: Default::default(),
            memory: Mutex::new(Memory::default()),
            asks: Arc::new(Semaphore::new(ASKS)),
            nars: Arc::new(Semaphore::new(NARS)),
        })
    }

    /// The HTTP routes Nix uses: `/nix-cache-info`, `/<hash>.narinfo`, `/nar/<file>`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/nix-cache-info", get(|| async { CACHE_INFO }))
            .route("/{file}", get(narinfo))
            .route("/nar/{file}", get(nar))
            .with_state(self)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The members to ask for `hash`, in order: the last to have it, then the
    /// candidates, leaving out any that served a false NAR lately.
    fn order(&self, hash: &HashPart) -> Vec<PeerId> {
        let candidates = self.peers.candidates();
        let mut memory = self.memory();
        let now = Instant::now();
        memory.avoided.retain(|_, until| *until > now);
        let mut order: Vec<PeerId> = Vec::new();
        for peer in memory.found.get(hash).into_iter().chain(&candidates) {
            if !order.contains(peer) && !memory.avoided.contains_key(peer) {
                order.push(*peer);
            }
        }
        order.truncate(MAX_ASKED);
        order
    }

    fn found(&self, hash: &HashPart, peer: PeerId) {
        let mut memory = self.memory();
        if memory.found.len() >= MEMORY {
            memory.found.clear();
        }
        memory.found.insert(hash.clone(), peer);
    }

    /// Does not ask `peer` for anything for `how_long`.
    fn avoid(&self, peer: PeerId, how_long: Duration) {
        let mut memory = self.memory();
        if memory.avoided.len() >= MEMORY {
            memory.avoided.clear();
        }
        let until = Instant::now() + how_long;
        let entry = memory.avoided.entry(peer).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Asks `peer`: `Some` with the size and the bytes to come when it has the path.
    async fn ask(&self, peer: PeerId, ask: &Ask) -> Option<(u64, BufReader<Stream>)> {
        let mut control = self.peers.control()?;
        let asked =
            tokio::time::timeout(ASK_TIMEOUT, crate::wire::ask(&mut control, peer, ask)).await;
        match asked {
            Ok(Ok((Answer::Found { size }, stream))) => Some((size, stream)),
            Ok(Ok((Answer::Refused { reason }, _))) => {
                let reason: String = reason.chars().take(200).collect();
                info!(%peer, path = %ask.hash, "{peer} refused {}: {reason}", ask.hash);
                None
            }
            Ok(Ok((_, _))) => None,
            Ok(Err(why)) => {
                debug!(%peer, path = %ask.hash, "no answer: {why}");
                None
            }
            Err(_) => {
                debug!(%peer, path = %ask.hash, "no answer in {ASK_TIMEOUT:?}");
                None
            }
        }
    }

    /// The narinfo of `hash` from the first member that has a sound one, with its NAR
    /// at a URL naming the NAR hash (so any member's copy can be checked against it).
    async fn find_narinfo(&self, hash: &HashPart) -> Option<String> {
        let _permit = self.asks.acquire().await.ok()?;
        let ask = Ask {
            hash: hash.clone(),
            want: Want::Narinfo,
        };
        for peer in self.order(hash) {
            let Some((size, stream)) = self.ask(peer, &ask).await else {
                continue;
            };
            if size > MAX_NARINFO_SIZE as u64 {
                debug!(%peer, path = %hash, "a narinfo of {size} bytes: too large");
                continue;
            }
            let mut text = Vec::new();
            let read =
                tokio::time::timeout(ASK_TIMEOUT, stream.take(size).read_to_end(&mut text)).await;
            if !matches!(read, Ok(Ok(n)) if n as u64 == size) {
                continue;
            }
            match rewrite(hash, &text) {
                Ok((narinfo, _)) if !self.trust.signed(&narinfo).await => {
                    info!(%peer, path = %hash, "{peer} sent a narinfo of {hash} that no trusted key signed");
                }
                Ok((_, text)) => {
                    self.found(hash, peer);
                    return Some(text);
                }
                Err(why) => {
                    info!(%peer, path = %hash, "{peer} sent an unsound narinfo of {hash}: {why}")
                }
            }
        }
        None
    }

    /// The NAR of `hash` from the first member that has it, checked against `expected`
    /// as it passes: a member whose bytes are not the path's (or too few, or too slow)
    /// is not asked for a while.
    async fn find_nar(self: &Arc<Self>, hash: &HashPart, expected: Expected) -> Option<Response> {
        let permit = self.nars.clone().acquire_owned().await.ok()?;
        let ask = Ask {
            hash: hash.clone(),
            want: Want::Nar,
        };
        for peer in self.order(hash) {
            let Some((size, stream)) = self.ask(peer, &ask).await else {
                continue;
            };
            if size != expected.size {
                warn!(%peer, path = %hash, "{peer} offers a NAR of {hash} of {size} bytes, not {}", expected.size);
                self.avoid(peer, DISTRUST);
                continue;
            }
            info!(%peer, path = %hash, bytes = size, "fetching the NAR of {hash} ({size} bytes) from {peer}");
            let passing = Passing {
                cache: self.clone(),
                peer,
                hash: hash.clone(),
                expected: expected.hash.clone(),
                left: size,
                deadline: Instant::now() + STALL + Duration::from_secs(size / MIN_RATE),
                hasher: NixHasher::new(HashAlgorithm::Sha256),
                stream,
                buf: vec![0; CHUNK],
                _permit: permit,
            };
            let body = Body::from_stream(futures_util::stream::unfold(passing, Passing::next));
            return Some(
                (
                    [
                        (header::CONTENT_TYPE, "application/x-nix-nar".to_owned()),
                        (header::CONTENT_LENGTH, size.to_string()),
                    ],
                    body,
                )
                    .into_response(),
            );
        }
        None
    }
}

/// How much of a NAR goes to Nix at a time.
const CHUNK: usize = 256 * 1024;
/// The slowest a member may send a NAR, in bytes a second, past a first minute.
const MIN_RATE: u64 = 1024 * 1024;

/// What the narinfo Nix holds says of a NAR.
struct Expected {
    hash: NixHash,
    size: u64,
}

/// A NAR on its way from a member to Nix.
struct Passing {
    cache: Arc<Cache>,
    peer: PeerId,
    hash: HashPart,
    expected: NixHash,
    left: u64,
    deadline: Instant,
    hasher: NixHasher,
    stream: BufReader<Stream>,
    buf: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl Passing {
    async fn next(mut self) -> Option<(Result<Vec<u8>, std::io::Error>, Passing)> {
        if self.left == 0 {
            return None;
        }
        // A chunk filled from the stream's many small reads, so Nix gets few large ones.
        let want = CHUNK.min(usize::try_from(self.left).unwrap_or(CHUNK));
        let mut filled = 0;
        while filled < want {
            match self.fill(filled, want).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    self.left = 0;
                    return Some((Err(e), self));
                }
            }
        }
        let n = filled;
        if n == 0 {
            let e = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ended the NAR {} bytes early", self.peer, self.left),
            );
            warn!(peer = %self.peer, path = %self.hash, "{e}: it is not asked for a minute");
            self.cache.avoid(self.peer, SLOW);
            self.left = 0;
            return Some((Err(e), self));
        }
        let buf = self.buf[..n].to_vec();
        self.hasher.update(&buf);
        self.left -= n as u64;
        if self.left == 0 {
            self.check();
        }
        Some((Ok(buf), self))
    }

    /// Reads into the chunk from `from` up to `to`: how much came (none at the end).
    /// A member that stalls, or is slower than [`MIN_RATE`] overall, is not asked for
    /// a while.
    async fn fill(&mut self, from: usize, to: usize) -> Result<usize, std::io::Error> {
        let limit = STALL.min(self.deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(limit, self.stream.read(&mut self.buf[from..to])).await {
            Ok(result) => result,
            Err(_) => {
                warn!(peer = %self.peer, path = %self.hash, "{} is too slow with the NAR of {}: it is not asked for a minute", self.peer, self.hash);
                self.cache.avoid(self.peer, SLOW);
                Err(std::io::ErrorKind::TimedOut.into())
            }
        }
    }

    /// At the NAR's end: whether it was the path's.
    fn check(&mut self) {
        let hasher = std::mem::replace(&mut self.hasher, NixHasher::new(HashAlgorithm::Sha256));
        if hasher.finalize() != self.expected {
            warn!(
                peer = %self.peer,
                path = %self.hash,
                "{} served a NAR of {} that is not the path's: Nix will refuse it, and \
                 that member is not asked again for {} s",
                self.peer,
                self.hash,
                DISTRUST.as_secs()
            );
            self.cache.avoid(self.peer, DISTRUST);
        }
    }
}

/// The narinfo a member sent, checked to be for `hash` and uncompressed, written anew
/// with only what Nix needs: the NAR's place (naming its hash), its hash and size, the
/// references, the deriver and the signatures. A content address is dropped: a path
/// travels on a trusted signature or not at all.
fn rewrite(hash: &HashPart, text: &[u8]) -> Result<(NarInfo, String), String> {
    let store_dir = StoreDir::default();
    let info = NarInfo::parse_in(&store_dir, text).map_err(|e| e.to_string())?;
    let path = store_dir.render_path(info.store_path());
    if HashPart::of_path(&path).ok().as_ref() != Some(hash) {
        return Err(format!("it is for {path}"));
    }
    if info.compression() != &Compression::None {
        return Err(format!("its NAR is compressed ({})", info.compression()));
    }
    let nar_hash = info.nar_hash();
    let NixHash::Sha256(_) = nar_hash else {
        return Err("its NAR hash is not sha256".into());
    };
    let url = format!("nar/{}.nar", nar_file(hash, nar_hash, info.nar_size()));
    let narinfo = NarInfo::builder_in(
        store_dir,
        info.store_path().clone(),
        url,
        nar_hash.clone(),
        info.nar_size(),
    )
    .compression(Compression::None)
    .references(info.references().iter().cloned())
    .deriver(info.deriver().cloned())
    .signatures(info.signatures().iter().cloned())
    .build()
    .map_err(|e| e.to_string())?;
    let text = String::from_utf8(narinfo.to_canonical_bytes()).map_err(|e| e.to_string())?;
    Ok((narinfo, text))
}

/// The NAR's file name: the path's hash part, the NAR's sha256 in Nix's base32 and its
/// size, all the cache needs to check any member's copy.
fn nar_file(hash: &HashPart, nar_hash: &NixHash, size: u64) -> String {
    let full = nar_hash.to_nix_nixbase32_string();
    let digest = full.split_once(':').map_or(full.as_str(), |(_, d)| d);
    format!("{hash}-{digest}-{size}")
}

/// The path's hash part and what its NAR must be, from a NAR file name.
fn parse_nar_file(file: &str) -> Option<(HashPart, Expected)> {
    let mut parts = file.strip_suffix(".nar")?.split('-');
    let (hash, digest, size) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let expected = Expected {
        hash: NixHash::parse(&format!("sha256:{digest}")).ok()?,
        size: size.parse().ok()?,
    };
    Some((HashPart::parse(hash).ok()?, expected))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not held by any member asked\n").into_response()
}

async fn narinfo(State(cache): State<Arc<Cache>>, Path(file): Path<String>) -> Response {
    let Some(hash) = file
        .strip_suffix(".narinfo")
        .and_then(|h| HashPart::parse(h).ok())
    else {
        return not_found();
    };
    match cache.find_narinfo(&hash).await {
        Some(text) => ([(header::CONTENT_TYPE, "text/x-nix-narinfo")], text).into_response(),
        None => not_found(),
    }
}

async fn nar(State(cache): State<Arc<Cache>>, Path(file): Path<String>) -> Response {
    let Some((hash, expected)) = parse_nar_file(&file) else {
        return not_found();
    };
    cache
        .find_nar(&hash, expected)
        .await
        .unwrap_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/nix/store/3xa9msjahh3yldycg70v09sr9hbswcma-nixt.txt";

    fn record(path: &str, extra: &str) -> String {
        format!(
            "StorePath: {path}\nURL: nar/x.nar\nCompression: none\nNarHash: sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h\nNarSize: 120\nReferences: \nCA: fixed:r:sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h\nSig: test:hV4Lsv/tQT+EG0hpCg4/SA3yzOHio78idF8MxbGBWAEb1yEi0dVZ/DalFSEAqkNbW/EtG3HPEt7pk2X+502YBA==\n{extra}"
        )
    }

    #[test]
    fn a_members_narinfo_is_rewritten_to_name_its_nar_hash_and_lose_its_content_address() {
        let hash = HashPart::of_path(PATH).unwrap();
        let (_, text) = rewrite(&hash, record(PATH, "Extra: yes\n").as_bytes()).unwrap();
        assert!(text.contains(&format!(
            "URL: nar/{hash}-1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h-120.nar\n"
        )));
        assert!(text.contains("Sig: test:"));
        assert!(!text.contains("CA:") && !text.contains("Extra"), "{text}");
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("URL: nar/"))
            .unwrap();
        let (back, expected) = parse_nar_file(url).unwrap();
        assert_eq!(back, hash);
        assert_eq!(expected.size, 120);
        assert_eq!(
            expected.hash.to_nix_nixbase32_string(),
            "sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h"
        );
    }

    #[test]
    fn a_narinfo_for_another_path_or_compressed_is_refused() {
        let hash = HashPart::of_path(PATH).unwrap();
        let other = "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-other";
        assert!(
            rewrite(&hash, record(other, "").as_bytes())
                .unwrap_err()
                .contains("for /nix/store/8r6")
        );
        let xz = record(PATH, "").replace("Compression: none", "Compression: xz");
        assert!(
            rewrite(&hash, xz.as_bytes())
                .unwrap_err()
                .contains("compressed")
        );
        assert!(rewrite(&hash, b"StorePath: nonsense\n").is_err());
        assert!(rewrite(&hash, &vec![b'a'; MAX_NARINFO_SIZE + 1]).is_err());
    }

    #[test]
    fn nar_file_names_are_checked() {
        for bad in [
            "x.nar",
            "3xa9msjahh3yldycg70v09sr9hbswcma.nar",
            "3xa9msjahh3yldycg70v09sr9hbswcma-zz-1.nar",
            "3xa9msjahh3yldycg70v09sr9hbswcma-1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar",
            "3xa9msjahh3yldycg70v09sr9hbswcma-1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h-x.nar",
            "3xa9msjahh3yldycg70v09sr9hbswcma-1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h-1-2.nar",
            "3xa9msjahh3yldycg70v09sr9hbswcma-1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h",
            "../etc-1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar",
        ] {
            assert!(parse_nar_file(bad).is_none(), "{bad}");
        }
    }
}
