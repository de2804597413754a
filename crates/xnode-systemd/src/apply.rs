//! Carrying out a plan: files, one daemon reload, jobs, and a report of what happened.

use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use xnode_spec::plan::{ActiveState, Op, Plan, Reason};

use crate::client::MAX_IN_FLIGHT;
use crate::files::Staged;
use crate::jobs::{JobResult, JobWatcher, deadline};
use crate::{Error, Systemd, UnitStatus};

/// How an apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long all the jobs of one phase may take together before the rest are
    /// cancelled and reported as [`JobResult::NoAnswer`].
    pub job_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            job_timeout: Duration::from_secs(90),
        }
    }
}

/// What became of one action of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The unit file was written.
    Written,
    /// The unit file was removed.
    Removed,
    /// The job ended so.
    Job(JobResult),
    /// systemd refused the job.
    Refused(String),
}

/// One action and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The action.
    pub op: Op,
    /// Its unit.
    pub unit: String,
    /// What happened.
    pub outcome: StepOutcome,
}

/// Everything an apply did, and the state of the units it touched afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One entry per action of the plan, in the plan's order.
    pub steps: Vec<StepReport>,
    /// Whether systemd reloaded its configuration.
    pub daemon_reloaded: bool,
    /// The state of every unit that had a job, read after the jobs ended.
    pub units: Vec<UnitStatus>,
}

impl ApplyReport {
    /// Whether every job ended `done` (or `skipped`).
    pub fn all_done(&self) -> bool {
        self.steps.iter().all(|s| match &s.outcome {
            StepOutcome::Job(r) => matches!(r, JobResult::Done | JobResult::Skipped),
            StepOutcome::Refused(_) => false,
            StepOutcome::Written | StepOutcome::Removed => true,
        })
    }
}

impl Systemd {
    /// Carries out a plan: stage files (any failure here changes nothing), stop what
    /// must stop, put files in place, reload systemd once, then reload, restart and
    /// start. Jobs of a phase are submitted together and awaited together. Units the
    /// plan refused are not touched. An empty plan makes no call at all.
    pub async fn apply(&self, plan: &Plan, options: &ApplyOptions) -> Result<ApplyReport, Error> {
        let mut report = ApplyReport::default();
        if plan.actions.is_empty() {
            return Ok(report);
        }
        let staged = Staged::prepare(self, plan).await?;
        let jobs_of = |ops: &[Op]| -> Vec<(Op, String)> {
            plan.actions
                .iter()
                .filter(|a| ops.contains(&a.op))
                .map(|a| (a.op, a.unit.clone()))
                .collect()
        };
        let stops = jobs_of(&[Op::Stop]);
        let later = jobs_of(&[Op::Reload, Op::Restart, Op::Start]);
        let mut watcher = match JobWatcher::start(self).await {
            Ok(w) => w,
            Err(e) => {
                staged.abort().await;
                return Err(e);
            }
        };

        let stopped = watcher
            .run(self, &stops, deadline(options.job_timeout))
            .await;
        record_jobs(&mut report, &stops, stopped);

        if !staged.is_empty() {
            let changed = staged.commit().await?;
            self.mutated(changed);
        }
        for a in &plan.actions {
            let outcome = match a.op {
                Op::Create | Op::Update => StepOutcome::Written,
                Op::Remove => StepOutcome::Removed,
                _ => continue,
            };
            report.steps.push(StepReport {
                op: a.op,
                unit: a.unit.clone(),
                outcome,
            });
        }
        if plan.needs_daemon_reload() {
            self.manager.reload().await.map_err(Error::call("Reload"))?;
            self.mutated(1);
            report.daemon_reloaded = true;
        }
        // A failed unit keeps its failure (and any start rate limit) until reset; a
        // removed one would linger as "not-found failed".
        let failed = Reason::NotRunning(ActiveState::Failed);
        for a in plan
            .actions
            .iter()
            .filter(|a| a.op == Op::Remove || (a.op == Op::Start && a.reason == failed))
        {
            if self.manager.reset_failed_unit(a.unit.clone()).await.is_ok() {
                self.mutated(1);
            }
        }

        let ended = watcher
            .run(self, &later, deadline(options.job_timeout))
            .await;
        let ended = self
            .retry_cgroup_races(&mut watcher, &later, ended, options)
            .await;
        record_jobs(&mut report, &later, ended);

        let mut with_jobs: Vec<&String> = stops.iter().chain(&later).map(|(_, u)| u).collect();
        with_jobs.sort();
        with_jobs.dedup();
        with_jobs.retain(|unit| {
            !plan
                .actions
                .iter()
                .any(|a| a.op == Op::Remove && &a.unit == *unit)
        });
        // Owned items: borrowed ones trip rustc's higher-ranked Send check (#102211).
        report.units = stream::iter(with_jobs.into_iter().cloned())
            .map(|unit| async move { self.status(&unit).await })
            .buffered(MAX_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(report)
    }
}

/// systemd's exit status for a process that could not join its unit's cgroup.
const EXIT_CGROUP: i32 = 219;

impl Systemd {
    /// Starts once more the units whose start failed because their new process could
    /// not join the unit's cgroup (exit status 219): seen, rarely, when a start follows
    /// the unit's stop closely and systemd is still releasing the old cgroup. The
    /// retry's result replaces the first.
    async fn retry_cgroup_races(
        &self,
        watcher: &mut JobWatcher,
        jobs: &[(Op, String)],
        mut results: Vec<Result<JobResult, Error>>,
        options: &ApplyOptions,
    ) -> Vec<Result<JobResult, Error>> {
        let mut again = Vec::new();
        for (i, ((op, unit), result)) in jobs.iter().zip(&results).enumerate() {
            let failed = matches!(result, Ok(JobResult::Failed));
            if failed && matches!(op, Op::Start | Op::Restart) {
                let status = self.status(unit).await;
                if status
                    .is_ok_and(|s| s.exit_code == Some("exited") && s.exit_status == EXIT_CGROUP)
                {
                    again.push((i, (Op::Start, unit.clone())));
                }
            }
        }
        if again.is_empty() {
            return results;
        }
        for (_, (_, unit)) in &again {
            if self.manager.reset_failed_unit(unit.clone()).await.is_ok() {
                self.mutated(1);
            }
        }
        let retry: Vec<(Op, String)> = again.iter().map(|(_, job)| job.clone()).collect();
        let retried = watcher
            .run(self, &retry, deadline(options.job_timeout))
            .await;
        for ((i, _), result) in again.into_iter().zip(retried) {
            results[i] = result;
        }
        results
    }
}

fn record_jobs(
    report: &mut ApplyReport,
    jobs: &[(Op, String)],
    results: Vec<Result<JobResult, Error>>,
) {
    for ((op, unit), result) in jobs.iter().zip(results) {
        report.steps.push(StepReport {
            op: *op,
            unit: unit.clone(),
            outcome: match result {
                Ok(r) => StepOutcome::Job(r),
                Err(e) => StepOutcome::Refused(e.to_string()),
            },
        });
    }
}
