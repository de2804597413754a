//! Unit files on disk: staged next to their targets first, put in place only once all
//! of them are written, so a failed write leaves every file as it was.

use std::path::{Path, PathBuf};

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use xnode_spec::plan::{Op, Plan};
use xnode_spec::unit::UnitFile;

use crate::client::MAX_IN_FLIGHT;
use crate::{Error, Systemd};

/// Files written under temporary names, and files to remove, for one plan.
pub(crate) struct Staged {
    renames: Vec<(PathBuf, PathBuf)>,
    removals: Vec<PathBuf>,
}

/// Whether the file at `path` may be written, replaced or removed for `workload`: it is absent,
/// or it carries the agent's marker for that workload.
async fn check_ours(path: &Path, workload: &str) -> Result<(), Error> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) if UnitFile::parse(&text).owner() == Some(workload) => Ok(()),
        Ok(_) => Err(Error::NotOwned {
            path: path.to_owned(),
            workload: workload.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A new unit must be the one systemd will load: a file of the same name in a
/// directory that takes precedence (`/etc/systemd/system`, say) would run instead.
async fn check_not_shadowed(
    systemd: &Systemd,
    unit: &str,
    target: &Path,
    workload: &str,
) -> Result<(), Error> {
    let path = systemd
        .manager
        .load_unit(unit.to_owned())
        .await
        .map_err(Error::call(format!("LoadUnit({unit})")))?;
    let fragment = systemd.fragment_path(unit, path).await?;
    let loaded_from = systemd.host_path(Path::new(&fragment));
    if fragment.is_empty() || loaded_from == target {
        Ok(())
    } else {
        Err(Error::Shadowed {
            path: loaded_from,
            workload: workload.to_owned(),
        })
    }
}

/// What each action touches, owned (see `prepare`), built outside any async fn so no
/// closure over a borrowed action is held in its future.
fn touched(plan: &Plan) -> Vec<(Op, String, String)> {
    plan.actions
        .iter()
        .map(|a| (a.op, a.unit.clone(), a.workload.clone()))
        .collect()
}

/// Hidden, so systemd never loads it as a unit.
pub(crate) fn temp_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unit");
    target.with_file_name(format!(".{name}.xnode-new"))
}

impl Staged {
    /// Checks every file the plan touches and writes every new one under a temporary
    /// name. On error, nothing is left behind.
    pub(crate) async fn prepare(systemd: &Systemd, plan: &Plan) -> Result<Staged, Error> {
        let dir = systemd.unit_dir();
        // The checks ask systemd and read files: run them together.
        // Owned items: borrowed ones trip rustc's higher-ranked Send check (#102211).
        stream::iter(touched(plan))
            .map(|(op, unit, workload)| {
                let target = dir.join(&unit);
                async move {
                    match op {
                        Op::Create => {
                            check_not_shadowed(systemd, &unit, &target, &workload).await?;
                            check_ours(&target, &workload).await?;
                        }
                        Op::Update | Op::Remove => check_ours(&target, &workload).await?,
                        _ => {}
                    }
                    Ok::<(), Error>(())
                }
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        let mut staged = Staged {
            renames: Vec::new(),
            removals: Vec::new(),
        };
        for action in &plan.actions {
            let target = dir.join(&action.unit);
            let result = match (action.op, &action.content) {
                (Op::Create | Op::Update, Some(content)) => staged.write(&target, content).await,
                (Op::Remove, _) => {
                    staged.removals.push(target);
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                staged.abort().await;
                return Err(e);
            }
        }
        Ok(staged)
    }

    async fn write(&mut self, target: &Path, content: &str) -> Result<(), Error> {
        let temp = temp_name(target);
        let written = async {
            tokio::fs::create_dir_all(target.parent().unwrap_or(Path::new("/"))).await?;
            tokio::fs::write(&temp, content).await
        };
        match written.await {
            Ok(()) => {
                self.renames.push((temp, target.to_owned()));
                Ok(())
            }
            Err(source) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(Error::Write {
                    path: target.to_owned(),
                    source,
                })
            }
        }
    }

    /// Whether anything is staged.
    pub(crate) fn is_empty(&self) -> bool {
        self.renames.is_empty() && self.removals.is_empty()
    }

    /// Puts every staged file in place and removes the files to remove. Returns how many
    /// files changed.
    pub(crate) async fn commit(self) -> Result<u64, Error> {
        let n = (self.renames.len() + self.removals.len()) as u64;
        for (temp, target) in &self.renames {
            tokio::fs::rename(temp, target)
                .await
                .map_err(|source| Error::Write {
                    path: target.clone(),
                    source,
                })?;
        }
        for target in &self.removals {
            match tokio::fs::remove_file(target).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Write {
                        path: target.clone(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(n)
    }

    /// Removes the temporary files.
    pub(crate) async fn abort(self) {
        for (temp, _) in &self.renames {
            let _ = tokio::fs::remove_file(temp).await;
        }
    }
}
