//! The fleet specs a node accepted, in `fleet/` of its state directory: each signed
//! envelope as `fleet/<generation>.json`, and in `fleet/state.json` what it knows of
//! the rollout (the newest generation, the highest that failed, the highest that was
//! healthy on every member). Kept across restarts so a restarted member neither takes
//! an old fleet spec again nor moves to one that failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;
use xnode_mesh::rollout::Known;
use xnode_spec::fleet_spec::{ValidatedFleet, parse_value};

use crate::store::{StoreError, write_atomic};

/// How many fleet generations are kept besides the newest, the stable one and those
/// a kept node generation holds: enough to go back a few, few enough to stay small.
pub const KEEP: usize = 10;

/// A fleet spec as kept: its envelope (served to members) and its spec.
#[derive(Debug)]
pub struct Kept {
    /// The signed envelope.
    pub envelope: Arc<Value>,
    /// Its spec, validated.
    pub spec: ValidatedFleet,
}

/// What `fleet/state.json` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The newest generation accepted.
    pub newest: u64,
    /// The highest known to have failed.
    pub failed: u64,
    /// The highest seen healthy on every member.
    pub stable: u64,
}

impl From<Progress> for Known {
    fn from(p: Progress) -> Known {
        Known {
            newest: p.newest,
            failed: p.failed,
            stable: p.stable,
        }
    }
}

impl From<Known> for Progress {
    fn from(k: Known) -> Progress {
        Progress {
            newest: k.newest,
            failed: k.failed,
            stable: k.stable,
        }
    }
}

/// The fleet specs kept, by generation, and the progress.
#[derive(Debug, Default)]
pub struct FleetStore {
    dir: PathBuf,
    /// What is known of the rollout.
    pub progress: Progress,
    /// The fleet specs, by generation.
    pub specs: BTreeMap<u64, Arc<Kept>>,
}

impl FleetStore {
    /// Reads `fleet/` under `state_dir` (at start, before the loop). What cannot be
    /// read is logged and left out: the newest is fetched again from the members.
    pub fn load(state_dir: &Path) -> FleetStore {
        let dir = state_dir.join("fleet");
        let mut store = FleetStore {
            dir: dir.clone(),
            ..Default::default()
        };
        match std::fs::read(dir.join("state.json")) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(p) => store.progress = p,
                Err(e) => warn!(
                    "{}/state.json is unreadable, starting afresh: {e}",
                    dir.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot read {}/state.json: {e}", dir.display()),
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return store;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(generation) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            match read_kept(&entry.path()) {
                Ok(kept) => {
                    store.specs.insert(generation, Arc::new(kept));
                }
                Err(e) => warn!("fleet spec {generation} is unreadable, left out: {e}"),
            }
        }
        // A progress file lost or behind: no kept fleet spec is ever taken for new.
        if let Some(kept) = store.specs.keys().next_back() {
            store.progress.newest = store.progress.newest.max(*kept);
        }
        store
    }

    /// Where `fleet/` is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The envelopes to serve to members.
    pub fn served(&self) -> BTreeMap<u64, Arc<Value>> {
        self.specs
            .iter()
            .map(|(g, k)| (*g, k.envelope.clone()))
            .collect()
    }

    /// Takes a fleet spec in (already written by [`write_spec`]), and drops the oldest
    /// beyond [`KEEP`] that nothing needs: returns those, to delete.
    pub fn insert(&mut self, generation: u64, kept: Kept, needed: &[u64]) -> Vec<u64> {
        self.specs.insert(generation, Arc::new(kept));
        let p = self.progress;
        let spare: Vec<u64> = self
            .specs
            .keys()
            .copied()
            .filter(|g| ![p.newest, p.stable].contains(g) && !needed.contains(g))
            .collect();
        let drop = spare.len().saturating_sub(KEEP);
        let dropped: Vec<u64> = spare.into_iter().take(drop).collect();
        for g in &dropped {
            self.specs.remove(g);
        }
        dropped
    }
}

fn read_kept(path: &Path) -> Result<Kept, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let envelope: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let spec = envelope
        .get("spec")
        .ok_or("no spec in it")
        .and_then(|s| parse_value(s).map_err(|_| "its spec is not valid"))?;
    Ok(Kept {
        envelope: Arc::new(envelope),
        spec,
    })
}

/// Writes an accepted envelope (beside the loop).
pub async fn write_spec(dir: &Path, generation: u64, envelope: &Value) -> Result<(), StoreError> {
    make_dir(dir).await?;
    let bytes = serde_json::to_vec_pretty(envelope).unwrap_or_default();
    write_atomic(&dir.join(format!("{generation}.json")), &bytes).await
}

/// Writes the progress (beside the loop).
pub async fn write_progress(dir: &Path, progress: Progress) -> Result<(), StoreError> {
    make_dir(dir).await?;
    let bytes = serde_json::to_vec_pretty(&progress).unwrap_or_default();
    write_atomic(&dir.join("state.json"), &bytes).await
}

/// Deletes dropped envelopes (beside the loop).
pub async fn delete(dir: &Path, generations: Vec<u64>) {
    for g in generations {
        let _ = tokio::fs::remove_file(dir.join(format!("{g}.json"))).await;
    }
}

async fn make_dir(dir: &Path) -> Result<(), StoreError> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(g: u64) -> Kept {
        let spec = serde_json::json!({"version": 1});
        Kept {
            envelope: Arc::new(serde_json::json!({"generation": g, "spec": spec})),
            spec: parse_value(&spec).unwrap(),
        }
    }

    #[test]
    fn the_newest_the_stable_and_the_needed_are_kept_and_ten_more() {
        let mut store = FleetStore {
            progress: Progress {
                newest: 30,
                failed: 0,
                stable: 2,
            },
            ..FleetStore::default()
        };
        let mut dropped = Vec::new();
        for g in 1..=30 {
            dropped.extend(store.insert(g, kept(g), &[5]));
        }
        let left: Vec<u64> = store.specs.keys().copied().collect();
        assert_eq!(
            left,
            [2, 5, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
            "dropped {dropped:?}"
        );
        assert!(!dropped.contains(&2) && !dropped.contains(&5) && dropped.contains(&1));
    }

    #[tokio::test]
    async fn what_is_written_is_read_back_and_a_damaged_file_is_left_out() {
        let dir = std::env::temp_dir().join(format!("xnode-fleet-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fleet = dir.join("fleet");
        let envelope = serde_json::json!({"generation": 7, "spec": {"version": 1}});
        write_spec(&fleet, 7, &envelope).await.unwrap();
        let progress = Progress {
            newest: 7,
            failed: 3,
            stable: 2,
        };
        write_progress(&fleet, progress).await.unwrap();
        std::fs::write(fleet.join("8.json"), b"{").unwrap();
        let store = FleetStore::load(&dir);
        assert_eq!(store.progress, progress);
        std::fs::write(fleet.join("state.json"), b"{").unwrap();
        assert_eq!(
            FleetStore::load(&dir).progress.newest,
            7,
            "from the kept specs"
        );
        assert_eq!(store.specs.keys().copied().collect::<Vec<_>>(), [7]);
        assert_eq!(*store.served()[&7], envelope);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
