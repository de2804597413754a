//! systemd jobs: submitted together, then awaited together through `JobRemoved`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use xnode_spec::plan::Op;
use zbus::OwnedObjectPath;
use zbus_systemd::systemd1::JobProxy;

use crate::client::MAX_IN_FLIGHT;
use crate::{Error, Systemd};

/// How a job ended, as `JobRemoved` reports it, or that it did not end in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// It did what it was asked.
    Done,
    /// Another job replaced it.
    Canceled,
    /// systemd's own timeout for the unit ran out.
    Timeout,
    /// The unit failed (e.g. its program could not be executed).
    Failed,
    /// A unit it depends on failed.
    Dependency,
    /// Nothing to do (e.g. reloading a unit that is not running).
    Skipped,
    /// Another result systemd reports.
    Other(String),
    /// No `JobRemoved` before the apply's deadline; the job was cancelled.
    NoAnswer,
}

impl JobResult {
    fn parse(s: &str) -> JobResult {
        match s {
            "done" => JobResult::Done,
            "canceled" => JobResult::Canceled,
            "timeout" => JobResult::Timeout,
            "failed" => JobResult::Failed,
            "dependency" => JobResult::Dependency,
            "skipped" => JobResult::Skipped,
            other => JobResult::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobResult::Done => "done",
            JobResult::Canceled => "canceled",
            JobResult::Timeout => "timeout",
            JobResult::Failed => "failed",
            JobResult::Dependency => "dependency",
            JobResult::Skipped => "skipped",
            JobResult::Other(s) => s,
            JobResult::NoAnswer => "no answer before the deadline (cancelled)",
        })
    }
}

/// Listens for `JobRemoved` from before the first job is submitted, so no job's end
/// can be missed. A task drains the signal stream into a channel at once, so a burst
/// of signals never holds up the method replies that share the connection.
pub(crate) struct JobWatcher {
    removed: mpsc::UnboundedReceiver<(OwnedObjectPath, String)>,
    task: tokio::task::JoinHandle<()>,
}

impl JobWatcher {
    pub(crate) async fn start(systemd: &Systemd) -> Result<JobWatcher, Error> {
        let mut stream = systemd
            .manager
            .receive_job_removed()
            .await
            .map_err(Error::call("listening for JobRemoved"))?;
        systemd.subscribe().await?;
        let (tx, removed) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(signal) = stream.next().await {
                if let Ok(args) = signal.args()
                    && tx
                        .send((args.job().clone(), args.result().clone()))
                        .is_err()
                {
                    break;
                }
            }
        });
        Ok(JobWatcher { removed, task })
    }

    /// Submits every job without waiting for any to finish (up to [`MAX_IN_FLIGHT`]
    /// calls at once), then waits for all of them until
    /// `deadline`. Results come back in the order of `jobs`.
    pub(crate) async fn run(
        &mut self,
        systemd: &Systemd,
        jobs: &[(Op, String)],
        deadline: Instant,
    ) -> Vec<Result<JobResult, Error>> {
        // Owned items: borrowed ones trip rustc's higher-ranked Send check (#102211).
        let submitted: Vec<_> = stream::iter(jobs.iter().cloned())
            .map(|(op, unit)| async move { systemd.submit(op, &unit).await })
            .buffered(MAX_IN_FLIGHT)
            .collect()
            .await;
        systemd.mutated(jobs.len() as u64);
        let mut pending: HashMap<OwnedObjectPath, usize> = HashMap::new();
        let mut results: Vec<Option<Result<JobResult, Error>>> = Vec::with_capacity(jobs.len());
        for (i, s) in submitted.into_iter().enumerate() {
            match s {
                Ok(path) => {
                    pending.insert(path, i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.removed.recv()).await {
                Ok(Some((path, result))) => {
                    if let Some(i) = pending.remove(&path) {
                        results[i] = Some(Ok(JobResult::parse(&result)));
                    }
                }
                // The deadline passed, or the bus went away: what is left gets no answer.
                Ok(None) | Err(_) => break,
            }
        }
        for (path, i) in pending {
            systemd.cancel(path).await;
            results[i] = Some(Ok(JobResult::NoAnswer));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(JobResult::NoAnswer)))
            .collect()
    }
}

impl Drop for JobWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Systemd {
    /// Asks systemd for one job; returns its object path.
    async fn submit(&self, op: Op, unit: &str) -> Result<OwnedObjectPath, Error> {
        let (u, mode) = (unit.to_owned(), "replace".to_owned());
        let m = &self.manager;
        let reply = match op {
            Op::Start => m.start_unit(u, mode).await,
            Op::Stop => m.stop_unit(u, mode).await,
            Op::Restart => m.restart_unit(u, mode).await,
            Op::Reload => m.reload_unit(u, mode).await,
            Op::Create | Op::Update | Op::Remove => unreachable_job(op),
        };
        reply.map_err(Error::call(format!("{}Unit({unit})", job_verb(op))))
    }

    /// Cancels a job that did not finish in time; it may have ended meanwhile.
    async fn cancel(&self, path: OwnedObjectPath) {
        let proxy = JobProxy::builder(&self.conn).path(path).build();
        if let Ok(job) = proxy.await {
            let _ = job.cancel().await;
            self.mutated(1);
        }
    }
}

fn job_verb(op: Op) -> &'static str {
    match op {
        Op::Start => "Start",
        Op::Stop => "Stop",
        Op::Restart => "Restart",
        Op::Reload => "Reload",
        Op::Create | Op::Update | Op::Remove => "",
    }
}

/// File operations are not jobs; the caller never passes them.
fn unreachable_job(op: Op) -> zbus::Result<OwnedObjectPath> {
    Err(zbus::Error::Failure(format!("{op} is not a systemd job")))
}

/// A deadline `timeout` from now.
pub(crate) fn deadline(timeout: Duration) -> Instant {
    Instant::now() + timeout
}
