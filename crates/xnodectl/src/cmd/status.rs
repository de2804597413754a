//! `xnodectl status`

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;
use xnode_api::Request;

use crate::Outcome;
use crate::cli::{AgentArgs, Output};
use crate::cmd;

pub fn run(args: &AgentArgs) -> Result<Outcome> {
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
        let _ = writeln!(out, "\n{:<width$}  {:<12}  ERROR", "WORKLOAD", "STATE");
        for w in workloads {
            let _ = writeln!(
                out,
                "{:<width$}  {:<12}  {}",
                str_of(w, "name"),
                str_of(w, "active_state"),
                w["error"].as_str().unwrap_or("")
            );
        }
    }
    out
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
}
