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
            Err(format!(
                "nix-store --realise failed: {}",
                reason(&String::from_utf8_lossy(&out.stderr))
            ))
        }
    }
}

/// What Nix said went wrong: its errors but the "build of … failed" that ends them
/// (the cause is what matters), or, when that is all, every message it gave (not the
/// indented lists of paths).
fn reason(stderr: &str) -> String {
    const MAX: usize = 1000;
    let generic = |l: &str| l.starts_with("error: build of") && l.ends_with("failed");
    let causes: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with("error:") && !generic(l))
        .collect();
    let messages: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    let text = match (causes.is_empty(), messages.is_empty()) {
        (false, _) => causes.join("; "),
        (true, false) => messages.join("; "),
        (true, true) => "no output".into(),
    };
    text.chars().take(MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn the_reason_is_the_cause_nix_gave_or_every_message() {
        let mismatch = "copying path '/nix/store/x-a' from 'http://127.0.0.1:5391'...\n\
                        error: hash mismatch importing path '/nix/store/x-a';\n  specified: sha256:1\n\
                        error: build of '/nix/store/x-a' failed\n";
        assert_eq!(
            reason(mismatch),
            "error: hash mismatch importing path '/nix/store/x-a';"
        );
        let unknown = "don't know how to build these paths:\n  /nix/store/x-a\n\
                       error: build of '/nix/store/x-a' failed\n";
        assert_eq!(
            reason(unknown),
            "don't know how to build these paths:; error: build of '/nix/store/x-a' failed"
        );
        assert_eq!(reason(""), "no output");
        assert_eq!(reason(&"error: x".repeat(500)).chars().count(), 1000);
    }
}
