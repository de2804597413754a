//! The keys this node's Nix trusts (`trusted-public-keys`), as Nix itself reports them:
//! a node serves only paths one of them signed, since a member's Nix would refuse any
//! other (and the store may hold unsigned paths no one else should read), and the
//! local cache passes Nix only narinfos one of them signed, so one member's unsigned
//! answer does not hide another's signed one.

use std::time::{Duration, Instant};

use nix_derivation::StoreDir;
use nix_narinfo::{NarInfo, TrustedPublicKey};
use tokio::process::Command;
use tokio::sync::Mutex;
use tracing::warn;

/// How long the keys are taken as read.
const FRESH: Duration = Duration::from_secs(30);
/// How soon a path that no key signed makes the keys read again (a key just added).
const AGAIN: Duration = Duration::from_secs(2);

/// The keys, read from Nix now and then.
#[derive(Debug, Default)]
pub struct Trust {
    keys: Mutex<Option<(Instant, Vec<TrustedPublicKey>)>>,
}

impl Trust {
    /// Whether one of the trusted keys signed `narinfo`.
    pub async fn signed(&self, narinfo: &NarInfo) -> bool {
        let store_dir = StoreDir::default();
        let mut keys = self.keys.lock().await;
        let age = keys.as_ref().map(|(at, _)| at.elapsed());
        if age.is_none_or(|a| a >= FRESH) {
            *keys = Some((Instant::now(), read().await));
        }
        if keys
            .as_ref()
            .is_some_and(|(_, k)| narinfo.has_valid_signature(&store_dir, k))
        {
            return true;
        }
        if age.is_some_and(|a| a >= AGAIN && a < FRESH) {
            *keys = Some((Instant::now(), read().await));
            return keys
                .as_ref()
                .is_some_and(|(_, k)| narinfo.has_valid_signature(&store_dir, k));
        }
        false
    }
}

/// What `nix show-config` says of `trusted-public-keys`; none if Nix cannot say.
async fn read() -> Vec<TrustedPublicKey> {
    let out = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "show-config",
        ])
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(out) if out.status.success() => parse(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            warn!(
                "nix show-config failed, so no key is trusted: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Vec::new()
        }
        Err(e) => {
            warn!("cannot run nix show-config, so no key is trusted: {e}");
            Vec::new()
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
