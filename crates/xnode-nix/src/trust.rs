//! The keys this node's Nix trusts (`trusted-public-keys`), as Nix itself reports them:
//! a node serves only paths one of them signed, since a member's Nix would refuse any
//! other (and the store may hold unsigned paths no one else should read), and the
//! local cache passes Nix only narinfos one of them signed, so one member's unsigned
//! answer does not hide another's signed one.

use std::time::{Duration, Instant};

use nix_derivation::StoreDir;
use nix_narinfo::{NarInfo, TrustedPublicKey};
use std::sync::Mutex;
use tokio::process::Command;
use tracing::warn;

/// How long the keys are taken as read.
const FRESH: Duration = Duration::from_secs(30);
/// How soon a path that no key signed makes the keys read again (a key just added).
const AGAIN: Duration = Duration::from_secs(2);
/// How long Nix has to say.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys, read from Nix now and then.
#[derive(Debug, Default)]
pub struct Trust {
    keys: Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    /// When they were last asked for.
    asked: Option<Instant>,
    keys: Vec<TrustedPublicKey>,
}

impl Trust {
    /// Whether one of the trusted keys signed `narinfo`. The keys are read again when
    /// they are old, or when none of them signed it and they were not read just now
    /// (a key just added); a read that fails keeps the keys known.
    pub async fn signed(&self, narinfo: &NarInfo) -> bool {
        let store_dir = StoreDir::default();
        let check = |keys: &Keys| narinfo.has_valid_signature(&store_dir, &keys.keys);
        {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let age = keys.asked.map(|at| at.elapsed());
            let signed = check(&keys);
            let again = age.is_none_or(|a| a >= FRESH || (!signed && a >= AGAIN));
            if !again {
                return signed;
            }
            keys.asked = Some(Instant::now());
        }
        if let Some(read) = read().await {
            self.keys.lock().unwrap_or_else(|e| e.into_inner()).keys = read;
        }
        check(&self.keys.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What `nix show-config` says of `trusted-public-keys`, if Nix says within a few
/// seconds.
async fn read() -> Option<Vec<TrustedPublicKey>> {
    let out = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "show-config",
        ])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(READ_TIMEOUT, out).await {
        Ok(Ok(out)) if out.status.success() => Some(parse(&String::from_utf8_lossy(&out.stdout))),
        Ok(Ok(out)) => {
            warn!(
                "nix show-config failed; the keys known stay: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Ok(Err(e)) => {
            warn!("cannot run nix show-config; the keys known stay: {e}");
            None
        }
        Err(_) => {
            warn!("nix show-config took over {READ_TIMEOUT:?}; the keys known stay");
            None
        }
    }
}

fn parse(config: &str) -> Vec<TrustedPublicKey> {
    config
        .lines()
        .filter_map(|l| l.strip_prefix("trusted-public-keys = "))
        .flat_map(str::split_whitespace)
        .filter_map(|k| TrustedPublicKey::parse(k).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_are_read_from_nixs_config_and_bad_ones_left_out() {
        let config = "substituters = https://cache.nixos.org/\n\
            trusted-public-keys = cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= nonsense fleet-1:pxrPHWWngmheN+VL1DXwVpKXtUA0n5eWdfTw0vi3uMI=\n\
            trusted-substituters = \n";
        let keys = parse(config);
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["cache.nixos.org-1", "fleet-1"]);
        assert!(parse("trusted-public-keys = \n").is_empty());
    }
}
