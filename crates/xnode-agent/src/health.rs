//! Health probes: a TCP connect or an HTTP GET on the loopback, IPv4 or IPv6 (a
//! workload may listen on either), each bounded by the probe's timeout. One attempt per
//! call; the apply's health gate repeats them until the workload's health timeout, and
//! the continuous probes (`liveness`) all the time.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use xnode_spec::{Health, HttpProbe, TcpProbe};

/// Why a probe failed, in words an operator can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    /// Nothing accepted the connection.
    #[error("nothing listens on 127.0.0.1:{port} or [::1]:{port} ({reason})")]
    Refused {
        /// The port.
        port: u16,
        /// The OS's words.
        reason: String,
    },
    /// No answer within the probe's timeout.
    #[error("no answer from 127.0.0.1:{port} within {timeout_ms} ms")]
    Timeout {
        /// The port.
        port: u16,
        /// The timeout.
        timeout_ms: u64,
    },
    /// An HTTP answer other than 2xx.
    #[error("GET {path} on port {port} answered {status}")]
    Status {
        /// The port.
        port: u16,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
    },
    /// Something that is not HTTP.
    #[error("port {port} did not answer HTTP ({detail})")]
    NotHttp {
        /// The port.
        port: u16,
        /// What came back.
        detail: String,
    },
}

/// Probes once; a workload without a probe passes.
pub async fn probe(health: &Health) -> Result<(), ProbeError> {
    match (&health.http, &health.tcp) {
        (Some(http), _) => probe_http(http).await,
        (None, Some(tcp)) => probe_tcp(tcp).await,
        (None, None) => Ok(()),
    }
}

async fn connect(port: u16, timeout: Duration) -> Result<TcpStream, ProbeError> {
    let attempt = async {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => Ok(stream),
            Err(v4) => TcpStream::connect(("::1", port)).await.map_err(|_| v4),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ProbeError::Refused {
            port,
            reason: e.to_string(),
        }),
        Err(_) => Err(ProbeError::Timeout {
            port,
            timeout_ms: timeout.as_millis() as u64,
        }),
    }
}

async fn probe_tcp(p: &TcpProbe) -> Result<(), ProbeError> {
    connect(p.port, Duration::from_millis(p.timeout.as_millis()))
        .await
        .map(drop)
}

/// The longest status line read: anything longer is not a status line.
const MAX_STATUS_LINE: usize = 256;

async fn probe_http(p: &HttpProbe) -> Result<(), ProbeError> {
    let timeout = Duration::from_millis(p.timeout.as_millis());
    let exchange = async {
        let mut stream = connect(p.port, timeout).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: xnoded\r\nConnection: close\r\n\r\n",
            p.path, p.port
        );
        let not_http = |detail: String| ProbeError::NotHttp {
            port: p.port,
            detail,
        };
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| not_http(e.to_string()))?;
        let mut head = Vec::with_capacity(64);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n") && head.len() < MAX_STATUS_LINE {
            match stream.read(&mut byte).await {
                Ok(0) => break,
                Ok(_) => head.push(byte[0]),
                Err(e) => return Err(not_http(e.to_string())),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let status =
            status_code(&line).ok_or_else(|| not_http(format!("{:?}", line.trim_end())))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ProbeError::Status {
                port: p.port,
                path: p.path.clone(),
                status,
            })
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ProbeError::Timeout {
            port: p.port,
            timeout_ms: timeout.as_millis() as u64,
        }))
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use xnode_spec::Duration as SpecDuration;

    /// A server on 127.0.0.1 that answers every connection with `reply` (or holds it
    /// open without a word when `reply` is `None`).
    async fn server(reply: Option<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    match reply {
                        Some(r) => {
                            let _ = stream.write_all(r.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        port
    }

    /// Long enough for a server that answers, however loaded the machine: only the
    /// silent server's probe is meant to time out, and it does whatever the load.
    const PATIENT: u64 = 10_000;

    fn http(port: u16, timeout_ms: u64) -> Health {
        Health {
            http: Some(HttpProbe {
                port,
                path: "/healthz".into(),
                timeout: SpecDuration::from_millis(timeout_ms),
            }),
            ..Health::default()
        }
    }

    fn tcp(port: u16) -> Health {
        Health {
            tcp: Some(TcpProbe {
                port,
                timeout: SpecDuration::from_millis(PATIENT),
            }),
            ..Health::default()
        }
    }

    /// A port nothing listens on, in the lab and in a build sandbox alike (tcpmux, a
    /// privileged port no test can take).
    const CLOSED: u16 = 1;

    #[tokio::test]
    async fn http_probe_outcomes() {
        let ok = server(Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
        assert_eq!(probe(&http(ok, PATIENT)).await, Ok(()));
        let broken = server(Some("HTTP/1.0 503 Service Unavailable\r\n\r\n")).await;
        assert_eq!(
            probe(&http(broken, PATIENT)).await.unwrap_err().to_string(),
            "GET /healthz on port ".to_owned() + &broken.to_string() + " answered 503"
        );
        let garbage = server(Some("SSH-2.0-OpenSSH\r\n")).await;
        assert!(matches!(
            probe(&http(garbage, PATIENT)).await,
            Err(ProbeError::NotHttp { .. })
        ));
        let silent = server(None).await;
        assert!(matches!(
            probe(&http(silent, 300)).await,
            Err(ProbeError::Timeout { .. })
        ));
        assert!(matches!(
            probe(&http(CLOSED, PATIENT)).await,
            Err(ProbeError::Refused { .. })
        ));
    }

    #[tokio::test]
    async fn tcp_probe_outcomes() {
        let open = server(None).await;
        assert_eq!(probe(&tcp(open)).await, Ok(()));
        let err = probe(&tcp(CLOSED)).await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "nothing listens on 127.0.0.1:{CLOSED} or [::1]:{CLOSED}"
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_service_on_ipv6_only_passes() {
        let listener = TcpListener::bind("[::1]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        assert_eq!(probe(&tcp(port)).await, Ok(()));
    }

    #[tokio::test]
    async fn no_probe_passes() {
        assert_eq!(probe(&Health::default()).await, Ok(()));
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code("HTTP/1.0 404\r\n"), Some(404));
        assert_eq!(status_code("HTTP/1.1 999 Nope"), None);
        assert_eq!(status_code("200 OK"), None);
        assert_eq!(status_code(""), None);
    }
}
