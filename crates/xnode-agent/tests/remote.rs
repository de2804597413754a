//! The API over the network (`--http-listen`), against xnoded under systemd: HTTPS
//! with the certificate whose fingerprint `status` gives; nothing without a session;
//! a session only for a challenge of this node the owner signed, once; an unsigned
//! change refused even with a session, as is a write from another origin and a push
//! the owner did not sign; the owner's push applied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use sha2::Digest as _;
use xnode_lab::node::{api, wait_status};
use xnode_spec::keys::{KeyKind, OwnerKey};
use xnode_spec::push;

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0 \
                     --join-key /etc/xnode/join.key";

/// Trusts the one certificate whose SHA-256 is the fingerprint, as a pinning client
/// does.
#[derive(Debug)]
struct Pinned(String, Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let hex: String = sha2::Sha256::digest(end_entity.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if format!("sha256:{hex}") == self.0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// A client of the remote API.
struct Client {
    port: u16,
    config: Arc<rustls::ClientConfig>,
}

/// An answer: status, headers (lowercase names), body as JSON.
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn new(port: u16, fingerprint: &str) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(fingerprint.into(), provider)))
            .with_no_client_auth();
        Client {
            port,
            config: Arc::new(config),
        }
    }

    /// A TLS connection to the node, its request sent.
    fn open(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let name = ServerName::try_from("xnode").unwrap();
        let connection = rustls::ClientConnection::new(Arc::clone(&self.config), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        let body = body.map(ToString::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        tls.write_all(request.as_bytes()).unwrap();
        tls
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut tls = self.open(method, path, headers, body);
        let mut answer = Vec::new();
        // The server closes without a TLS close_notify at times; what came is enough.
        let _ = tls.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let code = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            code,
            headers,
            body: serde_json::from_str(body).unwrap_or_default(),
        }
    }

    /// A session for `key`'s signature of a fresh challenge (edited first by `edit`).
    fn sign_in(&self, key: &OwnerKey, edit: impl Fn(&str) -> String) -> (Answer, String, String) {
        let challenge = self.send("POST", "/v1/session/challenge", &[], None);
        assert_eq!(challenge.code, 200, "{}", challenge.body);
        let text = edit(challenge.body["challenge"].as_str().unwrap());
        let signature = key.sign(text.as_bytes());
        let answer = self.send(
            "POST",
            "/v1/session",
            &[],
            Some(&json!({"challenge": text, "signature": signature})),
        );
        (answer, text, signature)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn over_the_network_only_the_owner_reads_and_only_what_it_signed_changes_anything() {
    let owner = xnode_lab::fleet::owner();
    let stranger = OwnerKey::generate(KeyKind::Ed25519).unwrap();
    let (mesh_port, https_port) = (xnode_lab::node::free_port(), xnode_lab::node::free_port());
    let spec = |workloads: Value| {
        json!({"version": 1, "node": {"name": "remote", "owner": owner.owner().to_string()},
               "mesh": {"listen": [format!("/ip4/127.0.0.1/tcp/{mesh_port}")]},
               "workloads": workloads})
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node_with(
        bin.parent().unwrap(),
        &serde_json::to_vec(&spec(json!({}))).unwrap(),
        &format!("{FLAGS} --http-listen 127.0.0.1:{https_port}"),
    )
    .unwrap();
    let status = wait_status(&c, "convergence", Duration::from_secs(60), |s| {
        s["converged"] == true && s["mesh"]["peer_id"].is_string()
    })
    .unwrap();
    assert_eq!(
        status["remote"]["address"],
        format!("https://127.0.0.1:{https_port}")
    );
    let fingerprint = status["remote"]["fingerprint"].as_str().unwrap().to_owned();
    let peer = status["mesh"]["peer_id"].as_str().unwrap().to_owned();
    let client = Client::new(https_port, &fingerprint);

    // Nothing without a session.
    let refused = client.send("GET", "/v1/status", &[], None);
    assert_eq!(refused.code, 401, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "unauthorized");

    // A stranger's signature buys nothing, nor does a challenge naming another node.
    let (answer, ..) = client.sign_in(&stranger, str::to_owned);
    assert_eq!(answer.code, 401, "{}", answer.body);
    assert!(answer.header("set-cookie").is_none());
    let (answer, ..) = client.sign_in(&owner, |t| t.replace(&fingerprint, "sha256:00"));
    assert_eq!(answer.code, 401, "{}", answer.body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another node"),
        "{}",
        answer.body
    );

    // The owner's signature buys a session, in a cookie scripts cannot read.
    let (answer, text, signature) = client.sign_in(&owner, str::to_owned);
    assert_eq!(answer.code, 200, "{}", answer.body);
    let cookie = answer.header("set-cookie").unwrap().to_owned();
    for part in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    // Replayed, the same signed challenge buys nothing.
    let replayed = client.send(
        "POST",
        "/v1/session",
        &[],
        Some(&json!({"challenge": text, "signature": signature})),
    );
    assert_eq!(replayed.code, 401, "{}", replayed.body);

    let with = [("Cookie", session.as_str())];
    let read = client.send("GET", "/v1/status", &with, None);
    assert_eq!(read.code, 200, "{}", read.body);
    assert_eq!(read.body["node"], "remote");
    assert!(read.body.get("v").is_none());
    let no_cors = read.header("access-control-allow-origin");
    assert!(no_cors.is_none(), "{no_cors:?}");

    // An unsigned change is for the node's own socket.
    let apply = client.send(
        "POST",
        "/v1/apply",
        &with,
        Some(&json!({"spec": spec(json!({"sneaky": {"command": ["/bin/sleep", "infinity"]}}))})),
    );
    assert_eq!(apply.code, 403, "{}", apply.body);

    // The owner's push, but from another origin: refused before anything is read.
    let next = spec(json!({"pushed": {"command": ["/bin/sleep", "infinity"]}}));
    let good = push::sign(&owner, &peer, 1000, now(), next.clone());
    let body = json!({"push": good});
    let from = |origin: &str| {
        client.send(
            "POST",
            "/v1/mesh/push",
            &[("Cookie", session.as_str()), ("Origin", origin)],
            Some(&body),
        )
    };
    let cross = from("https://evil.example");
    assert_eq!(cross.code, 403, "{}", cross.body);
    // A push the owner did not sign: refused by the node.
    let forged = push::sign(&stranger, &peer, 1001, now(), next.clone());
    let forged = client.send(
        "POST",
        "/v1/mesh/push",
        &with,
        Some(&json!({"push": forged})),
    );
    assert_eq!(forged.code, 409, "{}", forged.body);
    let why = forged.body["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("the signature is not"), "{why}");
    let why = cross.body["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("another origin"), "{why}");
    let status = api(&c, xnode_api::Request::Status).unwrap();
    assert_eq!(status["generation"]["number"], 1, "{status:#}");

    // The owner's push from the node's own origin: applied.
    let pushed = from(&format!("https://127.0.0.1:{https_port}"));
    assert_eq!(pushed.code, 200, "{}", pushed.body);
    wait_status(&c, "the push applied", Duration::from_secs(60), |s| {
        s["generation"]["number"] == 2 && s["generation"]["outcome"]["state"] == "healthy"
    })
    .unwrap();

    // A stream open on the session ends when the session does.
    let (tell, told) = std::sync::mpsc::channel();
    let mut stream = client.open("GET", "/v1/events", &with, None);
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut started = false;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if !started && String::from_utf8_lossy(&seen).contains("event: snapshot") {
                started = true;
                let _ = tell.send("started");
            }
        }
        let _ = tell.send("ended");
    });
    assert_eq!(told.recv_timeout(Duration::from_secs(60)), Ok("started"));

    // Signed out, the cookie buys nothing.
    let out = client.send("DELETE", "/v1/session", &with, None);
    assert_eq!(out.code, 200, "{}", out.body);
    let after = client.send("GET", "/v1/status", &with, None);
    assert_eq!(after.code, 401, "{}", after.body);
    assert_eq!(
        told.recv_timeout(Duration::from_secs(30)),
        Ok("ended"),
        "the stream outlived its session"
    );
}
