//! `xnodectl status`

use std::fmt::Write as _;

use anyhow::Result;
use xnode_api::Request;
use xnode_api::mesh::{FleetView, Placement, Standing};
use xnode_api::node::{Applying, Gated, Outcome as Ended, Phase, Status};

use crate::Outcome;
use crate::cli::{Output, StatusArgs};
use crate::cmd;

pub fn run(args: &StatusArgs) -> Result<Outcome> {
    if args.watch {
        return cmd::wait::watch(args, text);
    }
    let args = &args.agent;
    let status: Status = cmd::call(&args.socket, Request::Status)?;
    match args.output {
        Output::Json => cmd::print_json(&status)?,
        Output::Text => cmd::print(&text(&status))?,
    }
    Ok(Outcome::Success)
}

/// An optional value, or `-`.
fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node        {}", s.node.as_deref().unwrap_or("-"));
    match &s.generation {
        None => {
            let _ = writeln!(out, "generation  none yet");
        }
        Some(g) => {
            let _ = writeln!(
                out,
                "generation  {} ({}, {})",
                g.number,
                outcome_word(&g.outcome),
                g.hash
            );
        }
    }
    let _ = writeln!(
        out,
        "converged   {}",
        if s.converged { "yes" } else { "no" }
    );
    if let Some(Ended::RolledBack { reason } | Ended::Unhealthy { reason }) =
        s.generation.as_ref().map(|g| &g.outcome)
    {
        let _ = writeln!(out, "reason      {reason}");
    }
    if let Some(a) = &s.applying {
        applying(&mut out, a);
    }
    if let Some(e) = &s.spec_file.error {
        let _ = writeln!(out, "spec file   {} rejected: {e}", s.spec_file.path);
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error  {e}");
    }
    if let Some(r) = &s.remote {
        let _ = writeln!(
            out,
            "remote      {} (certificate {})",
            r.address, r.fingerprint
        );
    }
    if let Some(mesh) = &s.mesh {
        if let Some(node) = &mesh.node {
            let _ = writeln!(
                out,
                "mesh        {}: {} alive, {} suspect, {} dead",
                node.peer_id, node.alive, node.suspect, node.dead
            );
        } else if let Some(e) = &mesh.error {
            let _ = writeln!(out, "mesh        not joined: {e}");
        }
        if let Some(f) = &mesh.fleet {
            fleet(&mut out, f);
        }
        if let Some(p) = &mesh.placement {
            placement(&mut out, p);
        }
    }
    if !s.workloads.is_empty() {
        let width = s
            .workloads
            .iter()
            .map(|w| w.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<12}  {:<9}  {:>8}  {:>10}  {:>10}  ERROR",
            "WORKLOAD", "STATE", "HEALTH", "RESTARTS", "MEMORY", "STATE DIR"
        );
        for w in &s.workloads {
            let health = match &w.health {
                Some(h) if h.healthy => "healthy",
                Some(_) => "unhealthy",
                None => "-",
            };
            // A failing probe says why, unless the workload has an error of its own.
            let error = w
                .error
                .as_deref()
                .or_else(|| w.health.as_ref().and_then(|h| h.why.as_deref()))
                .unwrap_or("");
            let size = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), super::state::size);
            let _ = writeln!(
                out,
                "{:<width$}  {:<12}  {:<9}  {:>8}  {:>10}  {:>10}  {}",
                w.name,
                if w.state.is_empty() {
                    &w.active_state
                } else {
                    &w.state
                },
                health,
                or_dash(w.usage.map(|u| u.restarts)),
                size(w.usage.and_then(|u| u.memory_bytes)),
                size(w.state_bytes),
                error
            );
        }
    }
    out
}

/// An outcome in a word.
pub fn outcome_word(o: &Ended) -> &'static str {
    match o {
        Ended::Applying => "applying",
        Ended::Healthy => "healthy",
        Ended::RolledBack { .. } => "rolled_back",
        Ended::Unhealthy { .. } => "unhealthy",
    }
}

/// The apply under way, and each workload its health gate waits on.
fn applying(out: &mut String, a: &Applying) {
    let generation = match a.generation {
        Some(n) => format!("generation {n}"),
        None => "a new generation".into(),
    };
    let _ = writeln!(out, "applying    {generation} ({})", phase_word(a.phase));
    for (name, g) in &a.workloads {
        let _ = match g {
            Gated::Waiting { why } | Gated::Unhealthy { why } => {
                writeln!(out, "  {name:<10} {}: {why}", gated_word(g))
            }
            Gated::Healthy | Gated::Moved => writeln!(out, "  {name:<10} {}", gated_word(g)),
        };
    }
}

/// An apply's phase, for people.
pub fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Preparing => "preparing",
        Phase::Applying => "applying",
        Phase::Gating => "gating",
        Phase::RollingBack => "rolling back",
    }
}

/// Where a gated workload stands, in a word.
pub fn gated_word(g: &Gated) -> &'static str {
    match g {
        Gated::Waiting { .. } => "waiting",
        Gated::Healthy => "healthy",
        Gated::Unhealthy { .. } => "unhealthy",
        Gated::Moved => "moved",
    }
}

/// This node's standing in its fleet: a member (and a warning when nothing will renew
/// it in time), or why not and what to do.
fn fleet(out: &mut String, f: &FleetView) {
    let Some(owner) = &f.owner else {
        let _ = writeln!(
            out,
            "fleet       none: node.owner is not set, so this node holds no mesh workload"
        );
        return;
    };
    match &f.standing {
        Some(Standing::Member {
            admitted_by,
            warning,
            ..
        }) => {
            let _ = writeln!(
                out,
                "fleet       member of {owner}'s fleet ({} known, admitted by {admitted_by})",
                f.members.len()
            );
            if let Some(w) = warning {
                let _ = writeln!(out, "            WARNING: {w}");
            }
        }
        Some(Standing::Outside { why }) => {
            let _ = writeln!(out, "fleet       NOT A MEMBER: {why}");
        }
        None => {
            let _ = writeln!(out, "fleet       NOT A MEMBER: -");
        }
    }
}

/// The mesh workloads: who should run each, who does, and whether this node is fenced.
fn placement(out: &mut String, p: &Placement) {
    let quorum = if p.quorate {
        format!(
            "quorate ({} voters), settled {:.0} s",
            p.voters, p.settled_secs
        )
    } else {
        format!(
            "FENCED: fewer than a majority of {} voters in sight; no mesh workload runs here",
            p.voters
        )
    };
    let _ = writeln!(out, "placement   {quorum}");
    if p.workloads.is_empty() {
        return;
    }
    let names = |list: &[String]| {
        if list.is_empty() {
            "-".to_owned()
        } else {
            list.join(",")
        }
    };
    let width = p
        .workloads
        .iter()
        .map(|w| w.name.len())
        .max()
        .unwrap_or(8)
        .max(13);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<8}  {:<24}  {:<24}  HERE",
        "MESH WORKLOAD", "REPLICAS", "OWNERS", "RUNNING ON"
    );
    for w in &p.workloads {
        let _ = writeln!(
            out,
            "{:<width$}  {:<8}  {:<24}  {:<24}  {}",
            w.name,
            w.replicas,
            names(&w.owners),
            names(&w.running_on),
            w.here
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> Status {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn status_shows_owners_and_where_mesh_workloads_run() {
        let placement = |quorate: bool| {
            json!({"node": "n1", "mesh": {"peer_id": "12D3KooWx", "alive": 4, "suspect": 0, "dead": 1,
                "placement": {"quorate": quorate, "settled_secs": 12.4, "hold_down_secs": 5.0, "voters": 5,
                    "workloads": [{"name": "db", "replicas": 1, "owners": ["n3"], "running_on": ["n3"], "here": "no"},
                                  {"name": "cache", "replicas": 3, "owners": ["n1", "n2", "n4"],
                                   "running_on": [], "here": "waiting"}]}}})
        };
        let out = text(&status(placement(true)));
        assert!(
            out.contains("placement   quorate (5 voters), settled 12 s"),
            "{out}"
        );
        assert!(out.contains("MESH WORKLOAD"), "{out}");
        let db = out.lines().find(|l| l.starts_with("db ")).unwrap();
        assert!(db.contains("n3") && db.ends_with("no"), "{db}");
        let cache = out.lines().find(|l| l.starts_with("cache")).unwrap();
        assert!(
            cache.contains("n1,n2,n4") && cache.contains(" - "),
            "{cache}"
        );
        assert!(text(&status(placement(false))).contains("FENCED"));
    }

    #[test]
    fn status_says_whether_the_node_is_in_its_fleet_and_what_to_do_if_not() {
        let with = |fleet: serde_json::Value| {
            text(&status(json!({"node": "n1", "mesh": {"fleet": fleet}})))
        };
        let out = with(json!({"owner": "ed25519:x", "members": [{}, {}],
            "standing": {"state": "member", "admitted_by": "owner", "expires": 1, "warning": "renew me"}}));
        assert!(
            out.contains("member of ed25519:x's fleet (2 known, admitted by owner)"),
            "{out}"
        );
        assert!(out.contains("WARNING: renew me"), "{out}");
        let out = with(json!({"owner": "ed25519:x", "members": [],
            "standing": {"state": "outside", "why": "admit it: xnodectl fleet admit"}}));
        assert!(
            out.contains("NOT A MEMBER: admit it: xnodectl fleet admit"),
            "{out}"
        );
        let out = with(json!({"owner": null, "members": []}));
        assert!(out.contains("node.owner is not set"), "{out}");
    }

    #[test]
    fn an_apply_under_way_shows_each_gated_workload_and_a_finished_one_shows_exited() {
        let s = json!({
            "node": "n1",
            "applying": {"generation": 7, "phase": "gating", "workloads": {
                "web": {"state": "waiting", "why": "running, but its probe fails"},
                "db": {"state": "healthy"}
            }},
            "workloads": [{"name": "job", "active_state": "active", "state": "exited"}]
        });
        let out = text(&status(s));
        assert!(out.contains("applying    generation 7 (gating)"), "{out}");
        assert!(
            out.contains("  web        waiting: running, but its probe fails"),
            "{out}"
        );
        assert!(out.contains("  db         healthy"), "{out}");
        let job = out.lines().find(|l| l.starts_with("job")).unwrap();
        assert!(job.contains("exited"), "{job}");
    }
}
