//! The closures of mesh workloads this node holds, and fetching them ahead of need:
//! the members that own a workload and the next-ranked that stand by for it realise
//! its store paths (from the fleet's members, through the local binary cache), one
//! workload at a time, beside the loop. Placement puts a workload here only once its
//! closure is here, so a failover onto a standby waits for no download.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use xnode_mesh::placement::Wanted;

use super::Done;
use crate::nix::Realise;
use crate::placement;
use crate::units::Units;

/// How long a workload whose closure could not be fetched is neither fetched again nor
/// offered, so placement looks elsewhere.
pub(super) const RETRY: Duration = Duration::from_secs(30);

/// How long this node must have been an owner or standby of a workload before it
/// fetches its closure: while a new spec reaches the members one by one, owners change
/// for a moment, and each would otherwise fetch what it is not to hold.
pub(super) const STEADY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(super) struct Holding {
    /// Each mesh workload's roots held here.
    held: BTreeMap<String, BTreeSet<String>>,
    /// The fetch under way: its task and workload.
    fetching: Option<(tokio::task::Id, String)>,
    /// Fetches that failed: why, and when.
    failed: BTreeMap<String, (String, Instant)>,
    /// Since when this node has been to hold each workload, without a break.
    since: BTreeMap<String, Instant>,
    /// [`Holding::due`] as of the last placement, for the loop's wake-up.
    next_due: Option<Instant>,
}

impl Holding {
    /// Whether `w`'s closure is here (a workload without store paths always is).
    pub(super) fn holds(&self, w: &Wanted) -> bool {
        w.roots.is_empty() || self.held.get(&w.name) == Some(&w.roots)
    }

    /// Notes which workloads this node is to hold as of `now`.
    pub(super) fn should_hold(&mut self, to_hold: &BTreeSet<String>, now: Instant) {
        self.since.retain(|name, _| to_hold.contains(name));
        for name in to_hold {
            self.since.entry(name.clone()).or_insert(now);
        }
    }

    /// When the next fetch may start, if one is waiting (for [`STEADY`], or [`RETRY`]
    /// after a failure) and none runs: when to look again.
    pub(super) fn due(&self, wanted: &[Wanted]) -> Option<Instant> {
        if self.fetching.is_some() {
            return None;
        }
        wanted
            .iter()
            .filter(|w| !self.holds(w))
            .filter_map(|w| {
                let steady = *self.since.get(&w.name)? + STEADY;
                let retry = self.failed.get(&w.name).map(|(_, at)| *at + RETRY);
                Some(retry.map_or(steady, |r| r.max(steady)))
            })
            .min()
    }

    /// Notes when the next fetch is due, as placement leaves things.
    pub(super) fn remember_due(&mut self, wanted: &[Wanted]) {
        self.next_due = self.due(wanted);
    }

    /// When the next fetch is due, as of the last placement.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    /// The workload to fetch next, if no fetch runs: the first this node has been to
    /// hold for [`STEADY`], not held, and not failed within [`RETRY`].
    pub(super) fn next<'a>(&self, wanted: &'a [Wanted], now: Instant) -> Option<&'a Wanted> {
        if self.fetching.is_some() {
            return None;
        }
        wanted.iter().find(|w| {
            self.since
                .get(&w.name)
                .is_some_and(|since| now.duration_since(*since) >= STEADY)
                && !self.holds(w)
                && self
                    .failed
                    .get(&w.name)
                    .is_none_or(|(_, at)| now.duration_since(*at) >= RETRY)
        })
    }

    pub(super) fn started(&mut self, id: tokio::task::Id, name: &str) {
        self.fetching = Some((id, name.to_owned()));
    }

    /// Whether `id` is the fetch under way.
    pub(super) fn is_fetch(&self, id: tokio::task::Id) -> bool {
        self.fetch_of(id).is_some()
    }

    /// The workload whose fetch `id` is.
    pub(super) fn fetch_of(&self, id: tokio::task::Id) -> Option<String> {
        self.fetching
            .as_ref()
            .filter(|(f, _)| *f == id)
            .map(|(_, name)| name.clone())
    }

    /// The fetch of `name`'s `roots` ended.
    pub(super) fn done(
        &mut self,
        name: &str,
        roots: BTreeSet<String>,
        result: Result<(), String>,
        now: Instant,
    ) {
        self.fetching = None;
        match result {
            Ok(()) => {
                info!(workload = %name, "{name}'s closure is here, ready for placement");
                self.failed.remove(name);
                self.held.insert(name.to_owned(), roots);
            }
            Err(why) => {
                warn!(workload = %name, "cannot fetch {name}'s closure: {why}");
                self.held.remove(name);
                self.failed.insert(name.to_owned(), (why, now));
            }
        }
    }

    /// The fetch under way ended, and what it fetched is no longer wanted.
    pub(super) fn abandon(&mut self) {
        self.fetching = None;
    }

    /// The fetches that failed within [`RETRY`], and why: not offered meanwhile.
    pub(super) fn failing(&self, now: Instant) -> BTreeMap<String, String> {
        self.failed
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) < RETRY)
            .map(|(name, (why, _))| (name.clone(), why.clone()))
            .collect()
    }

    /// Every root held, for the mesh to know what members may fetch from here.
    pub(super) fn roots(&self) -> BTreeSet<String> {
        self.held.values().flatten().cloned().collect()
    }

    /// Forgets workloads no longer wanted.
    pub(super) fn retain(&mut self, wanted: &[Wanted]) {
        let names: BTreeSet<&String> = wanted.iter().map(|w| &w.name).collect();
        self.held.retain(|n, _| names.contains(n));
        self.failed.retain(|n, _| names.contains(n));
    }
}

/// The loop's side: fetches started beside it, and their ends.
impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// Fetches `w`'s closure beside the loop, as Nix realises any store path (through
    /// the local binary cache, from the fleet's members).
    pub(super) fn fetch_ahead(&mut self, w: Wanted) {
        let Some(spec) = self.target() else { return };
        let Some(paths) = spec
            .spec
            .workloads
            .get(&w.name)
            .map(|d| d.store_paths.clone())
        else {
            return;
        };
        let (nix, _) = self.apply.readiers();
        let name = w.name.clone();
        let handle = self.tasks.spawn(async move {
            let result = nix.realise(&paths).await;
            Done::Held(w.name, w.roots, result)
        });
        if let Some(mesh) = &mut self.mesh {
            mesh.holding.started(handle.id(), &name);
        }
    }

    /// A fetch ahead ended: placement may now put the workload here, and the mesh
    /// hears that this node holds it.
    pub(super) fn held(
        &mut self,
        id: tokio::task::Id,
        name: &str,
        roots: BTreeSet<String>,
        result: Result<(), String>,
    ) {
        // What the spec wants of it now: a fetch of an older definition's paths
        // says nothing of the new one's.
        let current = self
            .target()
            .and_then(|spec| {
                placement::wanted(&spec.spec)
                    .into_iter()
                    .find(|w| w.name == name)
            })
            .map(|w| w.roots);
        let Some(mesh) = &mut self.mesh else { return };
        if !mesh.holding.is_fetch(id) {
            return;
        }
        if current.as_ref() == Some(&roots) {
            mesh.holding
                .done(name, roots, result, std::time::Instant::now());
        } else {
            mesh.holding.abandon();
        }
    }

    /// A fetch ahead whose task died failed.
    pub(super) fn fetch_lost(&mut self, id: tokio::task::Id) {
        let Some(mesh) = &mut self.mesh else { return };
        if let Some(name) = mesh.holding.fetch_of(id) {
            let why = "the fetch's task failed".to_owned();
            mesh.holding
                .done(&name, BTreeSet::new(), Err(why), std::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(name: &str, roots: &[&str]) -> Wanted {
        Wanted {
            name: name.into(),
            replicas: 1,
            labels: BTreeMap::new(),
            hash: "0123456789abcdef".into(),
            roots: roots.iter().map(|r| r.repeat(32)).collect(),
        }
    }

    #[test]
    fn what_to_hold_is_fetched_one_at_a_time_and_a_failure_waits_its_turn() {
        let t0 = Instant::now();
        let ws = [wanted("a", &["a"]), wanted("b", &["b"]), wanted("c", &[])];
        let to_hold: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let mut h = Holding::default();
        assert!(h.holds(&ws[2]), "nothing to fetch");
        h.should_hold(&to_hold, t0);
        assert!(h.next(&ws, t0).is_none(), "not before it has been steady");
        assert_eq!(h.due(&ws), Some(t0 + STEADY));
        let t0 = t0 + STEADY;
        assert_eq!(h.next(&ws, t0).unwrap().name, "a");
        let id = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(async {}).id() });
        h.started(id, "a");
        assert!(h.is_fetch(id));
        assert!(h.next(&ws, t0).is_none(), "one at a time");
        assert_eq!(h.due(&ws), None, "nothing starts while a fetch runs");
        h.done("a", ws[0].roots.clone(), Err("no member has it".into()), t0);
        assert_eq!(h.next(&ws, t0).unwrap().name, "b", "a waits");
        assert_eq!(h.failing(t0).keys().collect::<Vec<_>>(), ["a"]);
        h.done("b", ws[1].roots.clone(), Ok(()), t0);
        assert!(h.holds(&ws[1]));
        assert!(h.next(&ws, t0).is_none());
        assert_eq!(h.due(&ws), Some(t0 + RETRY), "a failure waits its turn");
        assert_eq!(h.next(&ws, t0 + RETRY).unwrap().name, "a");
        assert!(h.failing(t0 + RETRY).is_empty());
        // A new definition with other store paths is not held.
        let b2 = wanted("b", &["x"]);
        assert!(!h.holds(&b2));
        // Taken off the list, a workload starts its wait afresh.
        h.should_hold(&BTreeSet::new(), t0);
        h.should_hold(&to_hold, t0 + RETRY);
        assert!(h.next(&ws, t0 + RETRY).is_none());
        assert_eq!(h.roots(), ws[1].roots);
        h.retain(&ws[..1]);
        assert!(h.roots().is_empty());
    }
}
