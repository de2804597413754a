//! Watching the spec file. It is read again when the file it resolves to is another
//! one or was written since: its (device, inode, size, mtime, ctime). On NixOS
//! `/etc/xnode/spec.json` is a link into the Nix store, where every mtime is 1, and a
//! switch points the link at another store file, maybe of the same length: the inode
//! tells. What is read is taken in when its content differs from what the node last
//! took from the file. Reading and parsing (a spec may be 64 MiB) run beside the loop.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use tracing::{error, info};
use xnode_spec::Validated;

use super::apply::{Waiter, outcome_text};
use super::{Done, Reply};
use crate::nix::Realise;
use crate::store::{Outcome, Source};
use crate::units::Units;

/// Largest spec file read; larger ones are refused unread.
const MAX_FILE: u64 = 64 << 20;

/// Which file a path resolves to, and whether it was written since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// What a look at the file found.
pub(super) enum Read {
    /// As last seen.
    Unchanged,
    /// No file (yet): the node waits for one, or for `xnodectl apply`.
    Missing,
    /// It could not be read.
    Failed(String),
    /// A spec that does not validate, with every problem.
    Invalid(Stamp, String),
    /// A valid spec.
    Valid(Stamp, Box<Validated>, Vec<u8>),
}

/// Reads the file unless its stamp is `seen`.
async fn read(path: PathBuf, seen: Option<Stamp>) -> Read {
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Missing,
        Err(e) => return Read::Failed(format!("cannot read {}: {e}", path.display())),
    };
    let stamp = Stamp::of(&meta);
    if seen == Some(stamp) {
        return Read::Unchanged;
    }
    if meta.len() > MAX_FILE {
        let why = format!("{} is larger than 64 MiB; refused unread", path.display());
        return Read::Invalid(stamp, why);
    }
    let raw = match tokio::fs::read(&path).await {
        Ok(raw) => raw,
        Err(e) => return Read::Failed(format!("cannot read {}: {e}", path.display())),
    };
    let parsed = tokio::task::spawn_blocking(move || (xnode_spec::parse(&raw), raw)).await;
    match parsed {
        Ok((Ok(v), raw)) => Read::Valid(stamp, Box::new(v), raw),
        Ok((Err(invalid), _)) => Read::Invalid(stamp, invalid.to_string()),
        Err(e) => Read::Failed(format!("validating {} failed: {e}", path.display())),
    }
}

/// The loop's side of the spec file.
pub(super) struct SpecFile {
    path: PathBuf,
    seen: Option<Stamp>,
    /// Why the file was last refused.
    pub(super) error: Option<String>,
    reading: bool,
    /// A changed file waits for the running apply.
    deferred: bool,
    /// `xnodectl reload`: told what became of the file's spec.
    waiters: Vec<Waiter>,
    /// The task reading it.
    task: Option<tokio::task::Id>,
}

impl SpecFile {
    pub(super) fn new(path: PathBuf) -> Self {
        SpecFile {
            path,
            seen: None,
            error: None,
            reading: false,
            deferred: false,
            waiters: Vec::new(),
            task: None,
        }
    }

    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether a change waits for the apply that ran.
    pub(super) fn deferred(&self) -> bool {
        self.deferred
    }

    /// A file refused as it stood (a conflict with the fleet spec, say) is read again
    /// at the next look, though it did not change: what refused it may have.
    pub(super) fn retry_if_refused(&mut self) {
        if self.error.is_some() {
            self.seen = None;
        }
    }
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// Looks at the spec file, beside the loop. With a waiter (`xnodectl reload`), it
    /// is read whatever its stamp, and the waiter learns what became of it.
    pub(super) fn read_spec_file(&mut self, waiter: Option<Waiter>) {
        let busy = self.apply.busy().is_some();
        let f = &mut self.spec_file;
        f.waiters.extend(waiter);
        // A change that waits for the running apply is read again once it has ended.
        let forced = !f.waiters.is_empty() || (f.deferred && !busy);
        if f.reading {
            return;
        }
        f.reading = true;
        if forced {
            f.deferred = false;
        }
        let seen = if forced { None } else { f.seen };
        let path = f.path.clone();
        let handle = self
            .tasks
            .spawn(async move { Done::SpecFile(read(path, seen).await) });
        self.spec_file.task = Some(handle.id());
    }

    /// The task reading the file died: its waiters are told, and the next look reads
    /// the file again.
    pub(super) fn spec_file_lost(&mut self, id: tokio::task::Id) {
        if self.spec_file.task != Some(id) {
            return;
        }
        self.spec_file.task = None;
        self.spec_file.reading = false;
        self.spec_file.seen = None;
        for w in std::mem::take(&mut self.spec_file.waiters) {
            w.refuse("reading the spec file failed; see xnoded's log".into());
        }
    }

    /// What a look at the file found: a valid new spec is applied (after the running
    /// apply, if one runs); an invalid one is reported and changes nothing.
    pub(super) fn spec_file_read(&mut self, read: Read) {
        self.spec_file.reading = false;
        self.spec_file.task = None;
        let waiters = std::mem::take(&mut self.spec_file.waiters);
        let path = self.spec_file.path.display().to_string();
        let (v, raw) = match read {
            Read::Unchanged => {
                // A waiter came while an ordinary look was under way: look again.
                if !waiters.is_empty() {
                    self.spec_file.waiters = waiters;
                    self.read_spec_file(None);
                }
                return;
            }
            Read::Missing => {
                let why = format!("there is no spec file at {path}");
                return waiters.into_iter().for_each(|w| w.refuse(why.clone()));
            }
            Read::Failed(why) => {
                self.spec_file.error = Some(why.clone());
                return waiters.into_iter().for_each(|w| w.refuse(why.clone()));
            }
            Read::Invalid(stamp, why) => {
                if self.spec_file.seen != Some(stamp) || !waiters.is_empty() {
                    error!(file = %path, "the spec file is rejected, nothing changed: {why}");
                }
                self.spec_file.seen = Some(stamp);
                self.spec_file.error = Some(why.clone());
                let why = format!("the spec file is rejected, nothing changed: {why}");
                return waiters.into_iter().for_each(|w| w.refuse(why.clone()));
            }
            Read::Valid(stamp, v, raw) => {
                self.spec_file.seen = Some(stamp);
                self.spec_file.error = None;
                (*v, raw)
            }
        };
        let hash = v.hash.to_string();
        let mut waiters: Vec<Waiter> = waiters
            .into_iter()
            .filter_map(|w| self.apply.wait_for_file(&hash, w).err())
            .collect();
        // Looking by itself, the agent takes the file in when its content changes: not
        // when it still holds what was last taken from it, even if an API apply has
        // moved on since. Asked to (`reload`), it takes in whatever is not in force.
        let state = self.state.borrow().clone();
        let last_from_file = state
            .generations
            .iter()
            .rev()
            .find(|g| matches!(g.source, Source::File { .. }));
        let current = state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n));
        // Compared with the node spec alone: the one in force may hold a fleet spec's
        // workloads too.
        let in_force = self.current.is_some() && current.is_some_and(|g| g.node_hash() == hash);
        if in_force {
            for w in waiters {
                match current {
                    Some(g) if g.outcome == Outcome::Healthy => w.answer_unchanged(g.number),
                    Some(g) => w.refuse(format!(
                        "generation {} holds the spec file's spec: {}",
                        g.number,
                        outcome_text(&g.outcome)
                    )),
                    None => w.answer_unchanged(0),
                }
            }
            return;
        }
        if waiters.is_empty() && last_from_file.is_some_and(|g| g.node_hash() == hash) {
            return;
        }
        if self.apply.busy().is_some() {
            // Taken in when the running apply ends.
            self.spec_file.deferred = true;
            self.spec_file.waiters.append(&mut waiters);
            return;
        }
        let job = match self.node_job(v, raw, Source::File { path: path.clone() }, true) {
            Ok(job) => job,
            Err(why) => {
                if self.spec_file.error.as_ref() != Some(&why) {
                    error!(file = %path, "the spec file is not applied, nothing changed: {why}");
                }
                self.spec_file.error = Some(why.clone());
                return waiters.into_iter().for_each(|w| w.refuse(why.clone()));
            }
        };
        info!(file = %path, hash, "the spec file changed; applying it");
        let mut waiters = waiters.into_iter();
        self.run_job(job, waiters.next());
        for w in waiters {
            if let Err(w) = self.apply.wait_for_file(&hash, w) {
                w.refuse("the apply of the spec file could not start; see xnoded's log".into());
            }
        }
    }
}

impl Waiter {
    /// The file's spec is the one in force already.
    fn answer_unchanged(self, generation: u64) {
        let note = xnode_api::node::Applied {
            generation,
            outcome: Outcome::Healthy,
            rolled_back_to: None,
            actions: Vec::new(),
            refused: Vec::new(),
            not_realised: std::collections::BTreeMap::new(),
            unchanged: true,
        };
        match self {
            Waiter::Apply(r) | Waiter::Reload(r) | Waiter::Rollback(r, _) => {
                let _ = r.send(Reply::ok(note));
            }
        }
    }
}
