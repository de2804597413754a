//! `xnodectl status`

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{Output, StatusArgs};
use crate::cmd;

pub fn run(args: &StatusArgs) -> Result<Outcome> {
    if args.watch {
        return cmd::wait::watch(args, text);
    }
    let args = &args.agent;
    let status = cmd::call(&args.socket, Request::Status)?;
    match args.output {
        Output::Json => cmd::print_json(&status)?,
        Output::Text => cmd::print(&text(&status))?,
    }
    Ok(Outcome::Success)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn text(s: &Value) -> String {
    let mut out = String::new();
    let g = &s["generation"];
    let _ = writeln!(out, "node        {}", str_of(s, "node"));
    if g.is_null() {
        let _ = writeln!(out, "generation  none yet");
    } else {
        let outcome = g["outcome"]["state"].as_str().unwrap_or("-");
        let _ = writeln!(
            out,
            "generation  {} ({outcome}, {})",
            g["number"],
            str_of(g, "hash")
        );
    }
    let _ = writeln!(
        out,
        "converged   {}",
        if s["converged"] == true { "yes" } else { "no" }
    );
    if let Some(reason) = g["outcome"]["reason"].as_str() {
        let _ = writeln!(out, "reason      {reason}");
    }
    applying(&mut out, &s["applying"]);
    if let Some(e) = s["spec_file"]["error"].as_str() {
        let _ = writeln!(
            out,
            "spec file   {} rejected: {e}",
            str_of(&s["spec_file"], "path")
        );
    }
    if let Some(e) = s["last_error"].as_str() {
        let _ = writeln!(out, "last error  {e}");
    }
    let mesh = &s["mesh"];
    if let Some(peer) = mesh["peer_id"].as_str() {
        let _ = writeln!(
            out,
            "mesh        {peer}: {} alive, {} suspect, {} dead",
            mesh["alive"], mesh["suspect"], mesh["dead"]
        );
    } else if let Some(e) = mesh["error"].as_str() {
        let _ = writeln!(out, "mesh        not joined: {e}");
    }
    fleet(&mut out, &mesh["fleet"]);
    placement(&mut out, &mesh["placement"]);
    let workloads = s["workloads"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !workloads.is_empty() {
        let width = workloads
            .iter()
            .map(|w| str_of(w, "name").len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<12}  {:<9}  {:>8}  {:>10}  {:>10}  ERROR",
            "WORKLOAD", "STATE", "HEALTH", "RESTARTS", "MEMORY", "STATE DIR"
        );
        for w in workloads {
            let health = match w["health"]["healthy"].as_bool() {
                Some(true) => "healthy",
                Some(false) => "unhealthy",
                None => "-",
            };
            // A failing probe says why, unless the workload has an error of its own.
            let error = w["error"]
                .as_str()
                .or_else(|| w["health"]["why"].as_str())
                .unwrap_or("");
            let size = |v: &Value| {
                v.as_u64()
                    .map_or_else(|| "-".to_owned(), super::state::size)
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:<12}  {:<9}  {:>8}  {:>10}  {:>10}  {}",
                str_of(w, "name"),
                w["state"]
                    .as_str()
                    .unwrap_or_else(|| str_of(w, "active_state")),
                health,
                w["usage"]["restarts"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                size(&w["usage"]["memory_bytes"]),
                size(&w["state_bytes"]),
                error
            );
        }
    }
    out
}

/// The apply under way, and each workload its health gate waits on.
fn applying(out: &mut String, a: &Value) {
    if a.is_null() {
        return;
    }
    let generation = match a["generation"].as_u64() {
        Some(n) => format!("generation {n}"),
        None => "a new generation".into(),
    };
    let phase = a["phase"].as_str().unwrap_or("-").replace('_', " ");
    let _ = writeln!(out, "applying    {generation} ({phase})");
    if let Some(workloads) = a["workloads"].as_object() {
        for (name, g) in workloads {
            let state = g["state"].as_str().unwrap_or("-");
            match g["why"].as_str() {
                Some(why) => writeln!(out, "  {name:<10} {state}: {why}"),
                None => writeln!(out, "  {name:<10} {state}"),
            }
            .ok();
        }
    }
}

/// This node's standing in its fleet: a member (and a warning when nothing will renew
/// it in time), or why not and what to do.
fn fleet(out: &mut String, f: &Value) {
    if f.is_null() {
        return;
    }
    let Some(owner) = f["owner"].as_str() else {
        let _ = writeln!(
            out,
            "fleet       none: node.owner is not set, so this node holds no mesh workload"
        );
        return;
    };
    let standing = &f["standing"];
    if standing["state"] == "member" {
        let members = f["members"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "fleet       member of {owner}'s fleet ({members} known, admitted by {})",
            str_of(standing, "admitted_by")
        );
        if let Some(w) = standing["warning"].as_str() {
            let _ = writeln!(out, "            WARNING: {w}");
        }
    } else {
        let _ = writeln!(out, "fleet       NOT A MEMBER: {}", str_of(standing, "why"));
    }
}

/// The mesh workloads: who should run each, who does, and whether this node is fenced.
fn placement(out: &mut String, p: &Value) {
    let Some(workloads) = p["workloads"].as_array() else {
        return;
    };
    let quorum = if p["quorate"] == true {
        format!(
            "quorate ({} voters), settled {:.0} s",
            p["voters"],
            p["settled_secs"].as_f64().unwrap_or(0.0)
        )
    } else {
        format!(
            "FENCED: fewer than a majority of {} voters in sight; no mesh workload runs here",
            p["voters"]
        )
    };
    let _ = writeln!(out, "placement   {quorum}");
    if workloads.is_empty() {
        return;
    }
    let names = |v: &Value| {
        let list: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if list.is_empty() {
            "-".to_owned()
        } else {
            list.join(",")
        }
    };
    let width = workloads
        .iter()
        .map(|w| str_of(w, "name").len())
        .max()
        .unwrap_or(8)
        .max(13);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<8}  {:<24}  {:<24}  HERE",
        "MESH WORKLOAD", "REPLICAS", "OWNERS", "RUNNING ON"
    );
    for w in workloads {
        let _ = writeln!(
            out,
            "{:<width$}  {:<8}  {:<24}  {:<24}  {}",
            str_of(w, "name"),
            w["replicas"].to_string(),
            names(&w["owners"]),
            names(&w["running_on"]),
            str_of(w, "here")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_shows_owners_and_where_mesh_workloads_run() {
        let placement = |quorate: bool| {
            json!({"node": "n1", "mesh": {"peer_id": "12D3KooWx", "alive": 4, "suspect": 0, "dead": 1,
                "placement": {"quorate": quorate, "settled_secs": 12.4, "hold_down_secs": 5.0, "voters": 5,
                    "workloads": [{"name": "db", "replicas": 1, "owners": ["n3"], "running_on": ["n3"], "here": "no"},
                                  {"name": "cache", "replicas": 3, "owners": ["n1", "n2", "n4"],
                                   "running_on": [], "here": "waiting"}]}}})
        };
        let out = text(&placement(true));
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
        assert!(text(&placement(false)).contains("FENCED"));
    }

    #[test]
    fn status_says_whether_the_node_is_in_its_fleet_and_what_to_do_if_not() {
        let with =
            |fleet: serde_json::Value| text(&json!({"node": "n1", "mesh": {"fleet": fleet}}));
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
        let out = text(&s);
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
