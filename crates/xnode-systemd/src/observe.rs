//! What systemd runs under the agent's names, for the planner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use xnode_spec::plan::{ActiveState, ObservedUnit};

use crate::client::MAX_IN_FLIGHT;
use crate::{Error, Systemd};

/// The names the agent's units can have: workloads' services, and their timers.
const PATTERNS: [&str; 2] = ["xnode-*.service", "xnode-*.timer"];

fn patterns() -> Vec<String> {
    PATTERNS.iter().map(|p| (*p).to_owned()).collect()
}

impl Systemd {
    /// Every unit named like the agent's, loaded or only on disk, with its state and
    /// the text of the file systemd loads it from. Whether a unit is really the agent's
    /// is the planner's call (by its marker), not this function's.
    ///
    /// Files that systemd has not loaded are found by reading the agent's unit
    /// directory rather than with `ListUnitFilesByPatterns`, which scans every unit
    /// directory and costs hundreds of milliseconds on every pass.
    pub async fn observe(&self) -> Result<Vec<ObservedUnit>, Error> {
        let loaded = self
            .manager
            .list_units_by_patterns(vec![], patterns())
            .await
            .map_err(Error::call("ListUnitsByPatterns"))?;
        // Loaded units: the state from the listing, the file from FragmentPath, and for
        // a failed one why it failed (its restart policy decides on that).
        let reads = stream::iter(loaded).map(|(name, _, _, active, sub, _, path, ..)| async move {
            let fragment = self.fragment_path(&name, path.clone()).await?;
            let file = self.read_unit_file(&fragment).await?;
            let active_state = parse_state(&active);
            let (result, stopped) = match active_state {
                // A timer has no process: it failed to be set, and is set again.
                ActiveState::Failed if !name.ends_with(".service") => {
                    (Some("timer".to_owned()), false)
                }
                ActiveState::Failed => {
                    let (result, stopped) = self.failure(&name, path).await?;
                    (Some(result), stopped)
                }
                _ => (None, false),
            };
            Ok::<_, Error>(ObservedUnit {
                active_state,
                name,
                file,
                sub_state: Some(sub),
                result,
                stopped,
            })
        });
        let mut units: BTreeMap<String, ObservedUnit> = reads
            .buffered(MAX_IN_FLIGHT)
            .map_ok(|u| (u.name.clone(), u))
            .try_collect()
            .await?;
        // The agent's files that systemd has not loaded (written, never started): inactive.
        for name in self.unit_dir_entries().await? {
            if let std::collections::btree_map::Entry::Vacant(slot) = units.entry(name) {
                let file = self
                    .read_unit_file(&format!("/{}/{}", crate::client::UNIT_DIR, slot.key()))
                    .await?;
                let name = slot.key().clone();
                slot.insert(ObservedUnit::new(name, ActiveState::Inactive, file));
            }
        }
        Ok(units.into_values().collect())
    }

    /// Every loaded `xnode-*` service's and timer's `ActiveState` and `SubState`, in one call:
    /// what the health gate looks at each round (a unit not listed is not loaded).
    pub async fn states(&self) -> Result<Vec<(String, String, String)>, Error> {
        let loaded = self
            .manager
            .list_units_by_patterns(vec![], patterns())
            .await
            .map_err(Error::call("ListUnitsByPatterns"))?;
        Ok(loaded
            .into_iter()
            .map(|(name, _, _, active, sub, ..)| (name, active, sub))
            .collect())
    }

    /// Names of `xnode-*` service and timer files in the agent's unit directory.
    async fn unit_dir_entries(&self) -> Result<Vec<String>, Error> {
        let dir = self.unit_dir();
        let mut names = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(source) => return Err(Error::Read { path: dir, source }),
        };
        loop {
            match entries.next_entry().await {
                Ok(Some(entry)) => {
                    if let Some(name) = entry.file_name().to_str()
                        && xnode_spec::unit::workload_of(name).is_some()
                    {
                        names.push(name.to_owned());
                    }
                }
                Ok(None) => return Ok(names),
                Err(source) => return Err(Error::Read { path: dir, source }),
            }
        }
    }

    /// The file systemd loads a unit from (empty when none), by its object path.
    pub(crate) async fn fragment_path(
        &self,
        name: &str,
        path: zbus::OwnedObjectPath,
    ) -> Result<String, Error> {
        let read = async { self.unit_proxy(path).await?.fragment_path().await };
        read.await
            .map_err(Error::call(format!("reading the FragmentPath of {name}")))
    }

    /// The text of a unit file by systemd's path; `None` for no path (a unit without a
    /// file) or a file that is gone.
    async fn read_unit_file(&self, path: &str) -> Result<Option<String>, Error> {
        if path.is_empty() {
            return Ok(None);
        }
        let host: PathBuf = self.host_path(Path::new(path));
        match tokio::fs::read_to_string(&host).await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path: host, source }),
        }
    }
}

/// systemd's `ActiveState`; states newer than this build are taken as not running, so
/// the planner starts the unit rather than trusting a state it does not know.
fn parse_state(s: &str) -> ActiveState {
    match s {
        "active" => ActiveState::Active,
        "reloading" => ActiveState::Reloading,
        "activating" => ActiveState::Activating,
        "deactivating" => ActiveState::Deactivating,
        "failed" => ActiveState::Failed,
        "maintenance" => ActiveState::Maintenance,
        "refreshing" => ActiveState::Refreshing,
        _ => ActiveState::Inactive,
    }
}
