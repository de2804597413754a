//! A full state directory: a real tmpfs of a few kilobytes, filled up. Needs root (to
//! mount it), as the lab tests do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;

use xnode_agent::store::{Outcome, Source, Store, StoreError};

/// A tmpfs mounted for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("xnode-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "xnode-test",
            ])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

#[tokio::test]
async fn a_full_state_dir_is_a_clear_error_and_keeps_the_previous_generation() {
    let fs = Tmpfs::mount("48k");
    let mut store = Store::open(&fs.0).await.unwrap();
    let first = store
        .accept(&[b' '; 4096], "sha256:first", Source::Api, 1)
        .await
        .unwrap();
    store.settle(first, Outcome::Healthy).await.unwrap();
    let before = store.state().clone();
    let listing = files(&fs.0);

    let err = store
        .accept(&vec![b' '; 1 << 20], "sha256:huge", Source::Api, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{err:?}"
    );
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert_eq!(store.state(), &before, "nothing changed in memory");
    assert_eq!(files(&fs.0), listing, "no partial or temporary file left");

    let reopened = Store::open(&fs.0).await.unwrap();
    assert_eq!(reopened.state(), &before, "nothing changed on disk");
    assert_eq!(reopened.state().current, Some(first));
}
