//! Realising the Nix store paths a workload needs, through the node's own Nix (and so
//! its substituters), before its unit starts.

use std::future::Future;

/// What the agent asks of Nix; a trait so the deploy logic is tested without a store.
pub trait Realise {
    /// Makes the paths present in the store, or says why not.
    fn realise(&self, paths: &[String]) -> impl Future<Output = Result<(), String>> + Send;
}

/// The node's Nix, through `nix-store --realise`.
#[derive(Debug, Clone, Default)]
pub struct NixStore;

impl Realise for NixStore {
    async fn realise(&self, paths: &[String]) -> Result<(), String> {
        let out = tokio::process::Command::new("nix-store")
            .arg("--realise")
            .args(paths)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run nix-store ({e}); is Nix installed?"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            Err(format!("nix-store --realise failed: {}", last.trim()))
        }
    }
}
