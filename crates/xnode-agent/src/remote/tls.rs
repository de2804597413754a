//! The remote API's certificate: made on first start (self-signed), kept in the state
//! directory, and named by its SHA-256 fingerprint, which `xnodectl status` prints so
//! a client can pin it. An operator may put a certificate of their own in its place.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

/// Why the certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The files are not a certificate chain and its key.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// Which.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The certificate, ready to serve.
pub struct Identity {
    /// The TLS settings.
    pub config: Arc<rustls::ServerConfig>,
    /// `sha256:` and the hex SHA-256 of the certificate (its DER).
    pub fingerprint: String,
}

/// The certificate in `dir` (`cert.pem`, `key.pem`), made self-signed for `names` when
/// there is none.
pub fn load_or_make(dir: &Path, names: &[String]) -> Result<Identity, TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() {
        make(dir, &cert, &key, names)?;
    }
    let invalid = |path: &Path, why: String| TlsError::Invalid {
        path: path.to_owned(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(Iterator::collect)
        .map_err(|e| invalid(&cert, e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(&cert, "no certificate in it".into()))?;
    let fingerprint = format!("sha256:{}", hex(&sha2::Sha256::digest(leaf.as_ref())));
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| invalid(&key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| invalid(&cert, e.to_string()))?;
    Ok(Identity {
        config: Arc::new(config),
        fingerprint,
    })
}

/// A self-signed certificate for `names`; the key written 0600, first.
fn make(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> Result<(), TlsError> {
    let file = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::File { path, source }
    };
    std::fs::create_dir_all(dir).map_err(file(dir))?;
    let made =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::Invalid {
            path: cert.to_owned(),
            why: format!("cannot make a certificate: {e}"),
        })?;
    write_new(key, made.key_pair.serialize_pem().as_bytes()).map_err(file(key))?;
    write_new(cert, made.cert.pem().as_bytes()).map_err(file(cert))
}

/// Writes a new file, mode 0600, replacing one left half-made by an earlier start.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("xnode-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_make(&dir, &["xnode".into(), "127.0.0.1".into()]).unwrap();
        assert!(first.fingerprint.starts_with("sha256:"));
        assert_eq!(first.fingerprint.len(), 7 + 64);
        let again = load_or_make(&dir, &["other".into()]).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A key that is not one: a clear error, not a panic.
        std::fs::write(dir.join("key.pem"), "nonsense").unwrap();
        let err = load_or_make(&dir, &[]).err().unwrap().to_string();
        assert!(err.contains("key.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
