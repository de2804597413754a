//! Accept loops that no local process can exhaust. Every local process can reach the
//! API socket and the metrics port, so each loop holds at most a fixed number of
//! connections (the rest wait in the kernel's backlog), each connection has a deadline,
//! and a failed accept (out of file descriptors, say) pauses the loop for a moment
//! instead of spinning on it or ending it.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::warn;

/// How long the loop rests after a failed accept: the error (EMFILE) usually lasts
/// until some connection closes.
const PAUSE: Duration = Duration::from_millis(100);

/// A listening socket.
pub trait Listener {
    /// A connection.
    type Stream: Send + 'static;
    /// The next connection.
    fn next(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn next(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn next(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Accepts on `listener` and runs `handle` on each connection as a task of its own,
/// with at most `max` at once, until `done` says so (checked after each accept).
pub async fn serve<L, F, Fut>(
    listener: L,
    what: &'static str,
    max: usize,
    handle: F,
    done: impl Fn() -> bool,
) where
    L: Listener,
    F: Fn(L::Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    loop {
        // A slot first: while all are taken, new connections wait in the backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.next().await {
            Ok(stream) => {
                let work = handle(stream);
                tokio::spawn(async move {
                    work.await;
                    drop(slot);
                });
            }
            Err(e) => {
                warn!("{what}: cannot accept a connection ({e}); trying again shortly");
                tokio::time::sleep(PAUSE).await;
            }
        }
        if done() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(
            listener,
            "test",
            2,
            move |mut s: TcpStream| {
                let mut released = released.clone();
                async move {
                    let _ = released.wait_for(|r| *r).await;
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"x").await;
                }
            },
            || false,
        ));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // The third is connected (in the backlog) but not served while two are held.
        let mut byte = [0u8; 1];
        let third = tokio::time::timeout(Duration::from_millis(300), held[2].read(&mut byte));
        assert!(third.await.is_err(), "served beyond the cap");
        release.send_replace(true);
        for s in &mut held {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        }
    }
}
