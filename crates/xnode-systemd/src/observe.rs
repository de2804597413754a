//! What systemd runs under the agent's names, for the planner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::future::try_join_all;
use xnode_spec::plan::{ActiveState, ObservedUnit};

use crate::{Error, Systemd};

/// The names the agent's units can have.
const PATTERN: &str = "xnode-*.service";

impl Systemd {
    /// Every unit named like the agent's, loaded or only on disk, with its state and
    /// the text of the file systemd loads it from. Whether a unit is really the agent's
    /// is the planner's call (by its marker), not this function's.
    pub async fn observe(&self) -> Result<Vec<ObservedUnit>, Error> {
        let (loaded, files) = tokio::try_join!(
            async {
                self.manager
                    .list_units_by_patterns(vec![], vec![PATTERN.into()])
                    .await
                    .map_err(Error::call("ListUnitsByPatterns"))
            },
            async {
                self.manager
                    .list_unit_files_by_patterns(vec![], vec![PATTERN.into()])
                    .await
                    .map_err(Error::call("ListUnitFilesByPatterns"))
            },
        )?;
        // Loaded units: the state from the listing, the file from FragmentPath.
        let reads = loaded
            .into_iter()
            .map(|(name, _, _, active, _, _, path, ..)| async move {
                let fragment = self
                    .unit_proxy(path)
                    .await
                    .map_err(Error::call(format!("reading {name}")))?
                    .fragment_path()
                    .await
                    .map_err(Error::call(format!("reading the FragmentPath of {name}")))?;
                let file = self.read_unit_file(&fragment).await?;
                Ok::<_, Error>(ObservedUnit {
                    active_state: parse_state(&active),
                    name,
                    file,
                })
            });
        let mut units: BTreeMap<String, ObservedUnit> = try_join_all(reads)
            .await?
            .into_iter()
            .map(|u| (u.name.clone(), u))
            .collect();
        // Files systemd has not loaded (written but never started, say): inactive.
        for (path, _state) in files {
            let Some(name) = Path::new(&path).file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !units.contains_key(name) {
                let file = self.read_unit_file(&path).await?;
                units.insert(
                    name.to_owned(),
                    ObservedUnit {
                        name: name.to_owned(),
                        active_state: ActiveState::Inactive,
                        file,
                    },
                );
            }
        }
        Ok(units.into_values().collect())
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
