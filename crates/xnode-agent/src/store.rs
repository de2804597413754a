//! The state directory: every accepted spec as a numbered generation, and which one is
//! in force and which one last proved healthy.
//!
//! Every write is atomic (temporary file, fsync, rename, fsync of the directory), and
//! the generation's spec is written before the state that points at it, so a crash or
//! a full disk at any moment leaves the previous state whole.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::fs::{self, File, OpenOptions};
use tokio::io::AsyncWriteExt as _;

use serde::{Deserialize, Serialize};
pub use xnode_api::{Generation, Outcome, Source};

/// Where a generation's spec comes from besides its source: the fleet generation
/// merged into it, and the hash of the node spec alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// The fleet generation whose workloads it holds.
    pub fleet: Option<u64>,
    /// The node spec's hash, when the fleet's workloads are in it too.
    pub node_hash: Option<String>,
}

/// Where a new generation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// What brought it.
    pub source: Source,
    /// What it is made of.
    pub lineage: Lineage,
}

impl From<Source> for Origin {
    fn from(source: Source) -> Self {
        Origin {
            source,
            lineage: Lineage::default(),
        }
    }
}

/// How many generations are kept; older ones are pruned, except the last good one.
pub const KEEP: usize = 50;

/// The state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version of this file.
    pub version: u32,
    /// The generation in force.
    pub current: Option<u64>,
    /// The newest generation that proved healthy.
    pub last_good: Option<u64>,
    /// Kept generations, oldest first.
    pub generations: Vec<Generation>,
    /// The generation of the last push accepted from the mesh: a push must be newer.
    /// Kept here, not in the pruned generations, so no old push ever becomes new again.
    #[serde(default)]
    pub last_push: u64,
}

/// Errors of the state directory; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A read or write failed (a full disk shows up here).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is not what this agent writes.
    #[error("{} is corrupt ({source}); move it aside to start with no history", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// The state names a generation whose spec is missing.
    #[error("generation {0} is not in the state directory")]
    Missing(u64),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` so that readers see the old content or the new, never a
/// mix, whatever happens meanwhile.
pub async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let temp = dir.join(format!(".{name}.tmp"));
    let written = async {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .await?;
        f.write_all(bytes).await?;
        // tokio's File reports a failed background write (ENOSPC) on flush, not on
        // write_all or sync_all.
        f.flush().await?;
        f.sync_all().await?;
        fs::rename(&temp, path).await?;
        File::open(dir).await?.sync_all().await
    };
    match written.await {
        Ok(()) => Ok(()),
        Err(source) => {
            let _ = fs::remove_file(&temp).await;
            Err(StoreError::Io {
                path: path.to_owned(),
                source,
            })
        }
    }
}

/// The state directory, open. What it holds is published to watchers after every
/// write, so the agent's loop reads it without waiting on an apply that writes.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    state: State,
    published: tokio::sync::watch::Sender<State>,
}

/// A last push generation beyond what any node takes now (accepted before that limit
/// existed) would lock out every later push: the node starts again from its clock, in
/// milliseconds, which the default generations of later pushes are above.
fn recover_push_lockout(mut state: State, now: SystemTime) -> State {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    if state.last_push > xnode_spec::push::generation_limit(since.as_secs()) {
        let clock = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(
            "the last push accepted has generation {}, far ahead of the clock; pushes are taken again from generation {clock}",
            state.last_push
        );
        state.last_push = clock;
    }
    state
}

impl Store {
    /// Opens (creating, mode 0700) a state directory and reads its state.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        let generations = dir.join("generations");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&generations)
            .await
            .map_err(io(&generations))?;
        let path = dir.join("state.json");
        let state = match fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: 1,
                ..State::default()
            },
            Err(e) => return Err(io(&path)(e)),
        };
        let state = recover_push_lockout(state, SystemTime::now());
        Ok(Store {
            dir: dir.to_owned(),
            published: tokio::sync::watch::channel(state.clone()).0,
            state,
        })
    }

    /// The state as last written.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state as last written, now and after every write.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<State> {
        self.published.subscribe()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn spec_path(&self, number: u64) -> PathBuf {
        spec_path(&self.dir, number)
    }

    /// Records a new generation for an already validated spec and makes it current.
    /// On error, nothing changed.
    pub async fn accept(
        &mut self,
        spec: &[u8],
        hash: &str,
        origin: impl Into<Origin>,
        now: u64,
    ) -> Result<u64, StoreError> {
        let Origin { source, lineage } = origin.into();
        let number = self.state.generations.last().map_or(1, |g| g.number + 1);
        write_atomic(&self.spec_path(number), spec).await?;
        let mut next = self.state.clone();
        next.current = Some(number);
        if let Source::Mesh {
            push_generation, ..
        } = &source
        {
            next.last_push = next.last_push.max(*push_generation);
        }
        next.generations.push(Generation {
            number,
            hash: hash.to_owned(),
            source,
            accepted_at: now,
            outcome: Outcome::Applying,
            fleet: lineage.fleet,
            node_hash: lineage.node_hash,
        });
        let pruned = prune(&mut next);
        if let Err(e) = self.commit(next).await {
            let _ = fs::remove_file(self.spec_path(number)).await;
            return Err(e);
        }
        for old in pruned {
            let _ = fs::remove_file(self.spec_path(old)).await;
        }
        Ok(number)
    }

    /// Records what became of a generation; a healthy one becomes the last good one.
    pub async fn settle(&mut self, number: u64, outcome: Outcome) -> Result<(), StoreError> {
        let mut next = self.state.clone();
        let generation = next
            .generations
            .iter_mut()
            .find(|g| g.number == number)
            .ok_or(StoreError::Missing(number))?;
        if outcome == Outcome::Healthy {
            next.last_good = Some(number);
        }
        generation.outcome = outcome;
        self.commit(next).await
    }

    /// A kept generation's lineage (none known of one pruned).
    pub fn lineage(&self, number: u64) -> Lineage {
        self.state
            .generations
            .iter()
            .find(|g| g.number == number)
            .map(|g| Lineage {
                fleet: g.fleet,
                node_hash: g.node_hash.clone(),
            })
            .unwrap_or_default()
    }

    /// The spec bytes of a generation.
    pub async fn spec(&self, number: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.spec_path(number);
        fs::read(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing(number),
            _ => io(&path)(e),
        })
    }

    async fn commit(&mut self, next: State) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(&next).map_err(|source| StoreError::Corrupt {
            path: self.dir.join("state.json"),
            source,
        })?;
        write_atomic(&self.dir.join("state.json"), &bytes).await?;
        self.published.send_replace(next.clone());
        self.state = next;
        Ok(())
    }
}

/// Where the state directory `dir` keeps generation `number`'s spec.
pub fn spec_path(dir: &Path, number: u64) -> PathBuf {
    dir.join("generations").join(format!("{number}.json"))
}

/// Drops the oldest generations beyond [`KEEP`], never the current or last good one.
/// Returns the numbers dropped.
fn prune(state: &mut State) -> Vec<u64> {
    let mut dropped = Vec::new();
    while state.generations.len() > KEEP {
        let keep = [state.current, state.last_good];
        let Some(i) = state
            .generations
            .iter()
            .position(|g| !keep.contains(&Some(g.number)))
        else {
            break;
        };
        dropped.push(state.generations.remove(i).number);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xnode-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_push_generation_far_ahead_of_the_clock_is_forgotten_on_start() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let at = |last_push| {
            recover_push_lockout(
                State {
                    last_push,
                    ..State::default()
                },
                now,
            )
            .last_push
        };
        assert_eq!(at(u64::MAX), 1_800_000_000_000);
        assert_eq!(at(1_800_000_300_001), 1_800_000_000_000);
        for kept in [0, 7, 1_800_000_000_000, 1_800_000_300_000] {
            assert_eq!(at(kept), kept);
        }
    }

    #[tokio::test]
    async fn generations_are_numbered_settled_and_survive_a_reopen() {
        let dir = temp_dir("reopen");
        let mut store = Store::open(&dir).await.unwrap();
        assert_eq!(store.state().current, None);
        let one = store
            .accept(b"{\"a\":1}", "sha256:1", Source::Api, 10)
            .await
            .unwrap();
        store.settle(one, Outcome::Healthy).await.unwrap();
        let two = store
            .accept(
                b"{\"a\":2}",
                "sha256:2",
                Source::File {
                    path: "/etc/xnode/spec.json".into(),
                },
                20,
            )
            .await
            .unwrap();
        store
            .settle(
                two,
                Outcome::RolledBack {
                    reason: "web: probe failed".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!((one, two), (1, 2));
        let reopened = Store::open(&dir).await.unwrap();
        assert_eq!(reopened.state(), store.state());
        assert_eq!(reopened.state().current, Some(2));
        assert_eq!(reopened.state().last_good, Some(1));
        assert_eq!(reopened.spec(1).await.unwrap(), b"{\"a\":1}");
        assert!(matches!(
            reopened.spec(9).await,
            Err(StoreError::Missing(9))
        ));
        let mode = std::fs::metadata(dir.join("state.json")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn old_generations_are_pruned_but_never_the_last_good() {
        let dir = temp_dir("prune");
        let mut store = Store::open(&dir).await.unwrap();
        let first = store.accept(b"{}", "h", Source::Api, 0).await.unwrap();
        store.settle(first, Outcome::Healthy).await.unwrap();
        for i in 0..KEEP + 10 {
            store
                .accept(b"{}", "h", Source::Api, i as u64)
                .await
                .unwrap();
        }
        let numbers: Vec<u64> = store.state().generations.iter().map(|g| g.number).collect();
        assert_eq!(numbers.len(), KEEP);
        assert_eq!(numbers[0], first, "the last good generation stays");
        assert!(store.spec(first).await.is_ok());
        assert!(
            matches!(store.spec(2).await, Err(StoreError::Missing(2))),
            "pruned specs are deleted"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_state_file_is_an_error_not_a_reset() {
        let dir = temp_dir("corrupt");
        Store::open(&dir).await.unwrap();
        std::fs::write(dir.join("state.json"), b"{\"current\": ").unwrap();
        let err = Store::open(&dir).await.unwrap_err();
        assert!(err.to_string().contains("state.json is corrupt"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
