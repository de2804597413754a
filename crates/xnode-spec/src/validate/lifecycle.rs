//! The workload fields about how it runs and what it is handed: kind, stop, order
//! between workloads, credentials and environment files.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::field;
use super::parts::duration;
use crate::model::{Credential, Kind, Placement, RestartPolicy, Signal, Stop, Workload};
use crate::path::Path;
use crate::read::Checker;
use crate::rules;
use crate::unit::MESH_STOP_TIMEOUT;
use crate::values::Duration;

/// Most credentials one workload takes.
pub const MAX_CREDENTIALS: usize = 32;
/// Largest age ciphertext: a secret is a key or a password, not a payload.
pub const MAX_AGE_CIPHERTEXT: usize = 64 * 1024;
/// Most workloads one names in `after`, or in `requires`.
pub(super) const MAX_DEPENDENCIES: usize = 64;
/// Most environment files one workload reads.
const MAX_ENVIRONMENT_FILES: usize = 16;
const AGE_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const AGE_END: &str = "-----END AGE ENCRYPTED FILE-----";

pub(super) fn read_kind(c: &mut Checker, v: &Value, p: &Path<'_>) -> Option<Kind> {
    let s = c.string(v, p)?;
    let kind = [Kind::Service, Kind::Oneshot, Kind::Timer]
        .into_iter()
        .find(|k| k.as_str() == s);
    c.check(
        p,
        kind.ok_or_else(|| format!("{s:?} is not a kind of workload (service, oneshot or timer)")),
    )
}

pub(super) fn read_schedule(c: &mut Checker, v: &Value, p: &Path<'_>) -> Option<Option<String>> {
    let s = c.string(v, p)?;
    c.check(p, crate::calendar::schedule(s))?;
    Some(Some(s.to_owned()))
}

pub(super) fn read_stop(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Stop> {
    let map = c.object(v, path, &["timeout", "signal"])?;
    let timeout = field(
        c,
        map,
        path,
        "timeout",
        || None,
        |c, v, p| {
            duration(
                c,
                v,
                p,
                Duration::from_millis(10),
                Duration::from_millis(3_600_000),
            )
            .map(Some)
        },
    );
    let signal = field(
        c,
        map,
        path,
        "signal",
        || None,
        |c, v, p| {
            let s = c.string(v, p)?;
            let found = Signal::ALL.iter().find(|(n, _)| *n == s).map(|(_, g)| *g);
            c.check(
                p,
                found.map(Some).ok_or_else(|| {
                    let names: Vec<_> = Signal::ALL.iter().map(|(n, _)| *n).collect();
                    format!("{s:?} is not a stop signal (one of: {})", names.join(", "))
                }),
            )
        },
    );
    Some(Stop {
        timeout: timeout?,
        signal: signal?,
    })
}

/// A credential's name is a file name in `$CREDENTIALS_DIRECTORY`.
fn credential_name(s: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{s:?} is not a valid credential name: use 1 to 64 letters, digits, '-', '_' or '.', \
             not starting with '.' (it names a file in $CREDENTIALS_DIRECTORY)"
        )
    })
}

/// An ASCII-armored age file, bounded. Whether this node can decrypt it is found when
/// it is applied, before anything changes.
fn age_armor(s: &str) -> Result<(), String> {
    if s.len() > MAX_AGE_CIPHERTEXT {
        return Err(format!(
            "is {} bytes; an age secret is at most {MAX_AGE_CIPHERTEXT}",
            s.len()
        ));
    }
    let t = s.trim();
    if !(t.starts_with(AGE_BEGIN) && t.ends_with(AGE_END)) {
        return Err(format!(
            "is not an ASCII-armored age file ({AGE_BEGIN} … {AGE_END}); \
             make one with `xnodectl secret encrypt --to <peer id>`"
        ));
    }
    Ok(())
}

pub(super) fn read_credentials(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
) -> Option<BTreeMap<String, Credential>> {
    let map = c.map(v, path)?;
    if map.len() > MAX_CREDENTIALS {
        c.report(
            path,
            format_args!(
                "{} credentials; a workload takes at most {MAX_CREDENTIALS}",
                map.len()
            ),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, v) in map {
        let p = path.key(name);
        let name_ok = c.check(&p, credential_name(name)).is_some();
        match read_credential(c, v, &p) {
            Some(cred) if name_ok => {
                out.insert(name.clone(), cred);
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_credential(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Credential> {
    let map = c.object(v, path, &["file", "age"])?;
    match (map.get("file"), map.get("age")) {
        (Some(v), None) => {
            let p = path.key("file");
            let s = c.string(v, &p)?;
            c.check(&p, rules::loaded_file(s))?;
            Some(Credential::File(s.to_owned()))
        }
        (None, Some(v)) => {
            let p = path.key("age");
            let s = c.string(v, &p)?;
            c.check(&p, age_armor(s))?;
            Some(Credential::Age(s.to_owned()))
        }
        _ => {
            c.report(
                path,
                "give exactly one of \"file\" (a path on the node) or \"age\" (an encrypted secret)",
            );
            None
        }
    }
}

pub(super) fn read_environment_files(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
) -> Option<Vec<String>> {
    let files = c.strings(v, path, |s| rules::loaded_file(s).map(|()| s.to_owned()))?;
    if files.len() > MAX_ENVIRONMENT_FILES {
        c.report(
            path,
            format_args!(
                "{} files; a workload reads at most {MAX_ENVIRONMENT_FILES}",
                files.len()
            ),
        );
        return None;
    }
    Some(files)
}

/// The rules between one workload's own fields that its kind and placement set.
pub(super) fn check_kind(c: &mut Checker, w: &Workload, path: &Path<'_>) {
    let mesh = matches!(w.placement, Placement::Mesh(_));
    if mesh
        && w.stop
            .timeout
            .is_some_and(|t| t.as_millis() > MESH_STOP_TIMEOUT.as_millis() as u64)
    {
        let stop = path.key("stop");
        c.report(
            &stop.key("timeout"),
            format_args!(
                "a mesh workload must stop within {} ms, its share of the fencing margin, \
                 or it could still run when another node takes it over",
                MESH_STOP_TIMEOUT.as_millis()
            ),
        );
    }
    match (w.kind, &w.schedule) {
        (Kind::Timer, None) => c.report(
            &path.key("schedule"),
            "missing; a timer runs on a schedule, e.g. \"daily\" or \"*-*-* 02:30:00\"",
        ),
        (Kind::Service | Kind::Oneshot, Some(_)) => c.report(
            &path.key("schedule"),
            "is only for a timer; add \"kind\": \"timer\" or remove this",
        ),
        _ => {}
    }
    if !w.kind.runs_to_completion() {
        return;
    }
    let kind = w.kind.as_str();
    if matches!(
        w.restart.policy,
        RestartPolicy::Always | RestartPolicy::OnSuccess
    ) {
        let restart = path.key("restart");
        c.report(
            &restart.key("policy"),
            format_args!("a {kind} runs to completion, so it cannot be restarted after it succeeds; use \"no\" or \"on-failure\""),
        );
    }
    if w.health.http.is_some() || w.health.tcp.is_some() {
        c.report(
            &path.key("health"),
            format_args!("a {kind} is healthy when it exits 0; it has no probe"),
        );
    }
    if !w.expose.is_empty() {
        c.report(
            &path.key("expose"),
            format_args!("a {kind} serves nothing once it has run; expose ports from a service"),
        );
    }
    if mesh {
        c.report(
            &path.key("placement"),
            format_args!("a {kind} runs on this node; mesh placement is for services"),
        );
    }
    if w.kind == Kind::Timer && w.reload.is_some() {
        c.report(
            &path.key("reload"),
            "a timer's run has nothing to reload; remove this",
        );
    }
}

/// `after` and `requires` name other workloads of the node, never a mesh workload as a
/// requirement (placement may put it on another node), and never form a cycle.
pub(super) fn check_order(
    c: &mut Checker,
    workloads: &BTreeMap<String, Workload>,
    path: &Path<'_>,
) {
    for (name, w) in workloads {
        let wpath = path.key(name);
        for (key, names) in [("after", &w.after), ("requires", &w.requires)] {
            let p = wpath.key(key);
            for (i, other) in names.iter().enumerate() {
                let here = p.index(i);
                match workloads.get(other) {
                    _ if other == name => c.report(&here, "a workload cannot depend on itself"),
                    None => c.report(
                        &here,
                        format_args!("{other:?} is not a workload of this spec"),
                    ),
                    Some(o) if key == "requires" && o.kind == Kind::Timer => c.report(
                        &here,
                        format_args!(
                            "{other:?} is a timer: requiring it would run its job at every start of this one; use \"after\""
                        ),
                    ),
                    Some(o) if key == "requires" && matches!(o.placement, Placement::Mesh(_)) => c
                        .report(
                            &here,
                            format_args!(
                                "{other:?} is placed on the mesh and may run on another node; \
                                 reach it by its service name instead"
                            ),
                        ),
                    Some(_) => {}
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(workloads) {
        let first = cycle.first().cloned().unwrap_or_default();
        c.report(
            &path.key(&first),
            format_args!(
                "the workloads wait on each other in a cycle: {}",
                cycle.join(" → ")
            ),
        );
    }
}

/// A cycle through `after` and `requires`, as its names with the first repeated at
/// the end; the first found in name order.
fn find_cycle(workloads: &BTreeMap<String, Workload>) -> Option<Vec<String>> {
    let graph: BTreeMap<&str, Vec<&String>> = workloads
        .iter()
        .map(|(n, w)| {
            let out: BTreeSet<&String> = w
                .after
                .iter()
                .chain(&w.requires)
                .filter(|o| workloads.contains_key(*o) && *o != n)
                .collect();
            (n.as_str(), out.into_iter().collect())
        })
        .collect();
    let edges = |n: &str| graph.get(n).map_or(&[][..], Vec::as_slice);
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in workloads.keys() {
        if done.contains(start.as_str()) {
            continue;
        }
        // Depth first with an explicit stack: (node, next edge to follow).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        let mut on_path: Vec<&str> = vec![start];
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            let next = edges(node).get(top.1).copied();
            top.1 += 1;
            match next {
                Some(n) if on_path.contains(&n.as_str()) => {
                    let from = on_path.iter().position(|p| *p == n).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        on_path[from..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(n.clone());
                    return Some(cycle);
                }
                Some(n) if !done.contains(n.as_str()) => {
                    stack.push((n, 0));
                    on_path.push(n);
                }
                Some(_) => {}
                None => {
                    done.insert(node);
                    stack.pop();
                    on_path.pop();
                }
            }
        }
    }
    None
}
