//! Workloads: the map of them, each one's command and settings, and the rules that
//! span several workloads.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::lifecycle::{
    self, read_credentials, read_environment_files, read_kind, read_schedule, read_stop,
};
use super::parts::{
    read_expose, read_health, read_placement, read_resources, read_restart, read_sandbox,
};
use super::{field, read_string_map, required};
use crate::model::{Health, Kind, Placement, Relax, Resources, Restart, Sandbox, Stop, Workload};
use crate::path::Path;
use crate::read::Checker;
use crate::rules;

/// Most workloads one node runs.
pub const MAX_WORKLOADS: usize = 10_000;
/// At most this many of them with `placement: mesh`.
pub const MAX_MESH_WORKLOADS: usize = 64;

const WORKLOAD_FIELDS: &[&str] = &[
    "kind",
    "schedule",
    "command",
    "store_paths",
    "environment",
    "environment_files",
    "credentials",
    "state",
    "after",
    "requires",
    "working_directory",
    "user",
    "group",
    "resources",
    "restart",
    "reload",
    "restart_if_changed",
    "reload_if_changed",
    "stop_if_changed",
    "reload_triggers",
    "stop",
    "health",
    "expose",
    "sandbox",
    "placement",
];

pub(super) fn read_workloads(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
) -> Option<BTreeMap<String, Workload>> {
    let map = c.map(v, path)?;
    if map.len() > MAX_WORKLOADS {
        c.report(
            path,
            format_args!(
                "{} workloads is more than a node runs (at most {MAX_WORKLOADS})",
                map.len()
            ),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, w) in map {
        let p = path.key(name);
        let name_ok = c.check(&p, rules::workload_name(name)).is_some();
        match read_workload(c, w, &p) {
            Some(w) if name_ok => {
                out.insert(name.clone(), w);
            }
            _ => ok = false,
        }
    }
    check_exposed_unique(c, map, path);
    if ok {
        lifecycle::check_order(c, &out, path);
    }
    let on_mesh = out
        .values()
        .filter(|w| matches!(w.placement, Placement::Mesh(_)))
        .count();
    if on_mesh > MAX_MESH_WORKLOADS {
        c.report(
            path,
            format_args!(
                "{on_mesh} workloads are placed on the mesh; a node offers at most \
                 {MAX_MESH_WORKLOADS}, all of which it advertises in every heartbeat"
            ),
        );
        return None;
    }
    ok.then_some(out)
}

/// Two workloads cannot both bind a port or answer to a service name on one node.
fn check_exposed_unique(c: &mut Checker, workloads: &Map<String, Value>, path: &Path<'_>) {
    let mut ports: HashMap<(u64, &str), String> = HashMap::new();
    let mut services: HashMap<&str, String> = HashMap::new();
    for (name, w) in workloads {
        let Some(items) = w.get("expose").and_then(Value::as_array) else {
            continue;
        };
        let wpath = path.key(name);
        let epath = wpath.key("expose");
        for (i, e) in items.iter().enumerate() {
            let here = epath.index(i);
            let protocol = e.get("protocol").and_then(Value::as_str).unwrap_or("tcp");
            if let Some(port) = e.get("port").and_then(Value::as_u64) {
                let first = ports
                    .entry((port, protocol))
                    .or_insert_with(|| here.to_string());
                if *first != here.to_string() {
                    c.report(
                        &here.key("port"),
                        format_args!("{protocol} port {port} is already exposed by {first}"),
                    );
                }
            }
            if let Some(service) = e.get("service").and_then(Value::as_str) {
                let first = services.entry(service).or_insert_with(|| here.to_string());
                if *first != here.to_string() {
                    c.report(
                        &here.key("service"),
                        format_args!("service {service:?} is already exposed by {first}"),
                    );
                }
            }
        }
    }
}

fn read_command(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Vec<String>> {
    let args = c.strings(v, path, |s| rules::line_text(s).map(|()| s.to_owned()))?;
    let Some(program) = args.first() else {
        c.report(
            path,
            "is empty; give the absolute path of the program, then its arguments",
        );
        return None;
    };
    let program_path = path.index(0);
    c.check(&program_path, rules::absolute_path(program))?;
    if program.starts_with("/nix/store/") {
        let store_path: String = program.split('/').take(4).collect::<Vec<_>>().join("/");
        c.check(&program_path, rules::store_path(&store_path))?;
    }
    Some(args)
}

fn read_workload(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Workload> {
    let map = c.object(v, path, WORKLOAD_FIELDS)?;
    let kind = field(c, map, path, "kind", Kind::default, read_kind);
    let schedule = field(c, map, path, "schedule", || None, read_schedule);
    let command = required(
        c,
        map,
        path,
        "command",
        "give the program's absolute path, e.g. [\"/bin/sleep\", \"infinity\"]",
        read_command,
    );
    let store_paths = field(c, map, path, "store_paths", Vec::new, |c, v, p| {
        c.strings(v, p, |s| rules::store_path(s).map(|()| s.to_owned()))
    });
    let environment = field(c, map, path, "environment", BTreeMap::new, |c, v, p| {
        read_string_map(c, v, p, rules::env_name, rules::line_text)
    });
    let environment_files = field(
        c,
        map,
        path,
        "environment_files",
        Vec::new,
        read_environment_files,
    );
    let credentials = field(c, map, path, "credentials", BTreeMap::new, read_credentials);
    let state = field(c, map, path, "state", || false, Checker::bool);
    let workload_names = |c: &mut Checker, v: &Value, p: &Path<'_>| {
        let names = c.strings(v, p, |s| rules::workload_name(s).map(|()| s.to_owned()))?;
        if names.len() > lifecycle::MAX_DEPENDENCIES {
            c.report(
                p,
                format_args!(
                    "names {} workloads; at most {}",
                    names.len(),
                    lifecycle::MAX_DEPENDENCIES
                ),
            );
            return None;
        }
        Some(names)
    };
    let after = field(c, map, path, "after", Vec::new, workload_names);
    let requires = field(c, map, path, "requires", Vec::new, workload_names);
    let working_directory = field(
        c,
        map,
        path,
        "working_directory",
        || None,
        |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, rules::working_directory(s))
                .map(|()| Some(s.to_owned()))
        },
    );
    let user = field(c, map, path, "user", || None, optional_user);
    let group = field(c, map, path, "group", || None, optional_user);
    let resources = field(
        c,
        map,
        path,
        "resources",
        Resources::default,
        read_resources,
    );
    let restart = field(c, map, path, "restart", Restart::default, read_restart);
    let reload = field(
        c,
        map,
        path,
        "reload",
        || None,
        |c, v, p| read_command(c, v, p).map(Some),
    );
    let restart_if_changed = field(c, map, path, "restart_if_changed", || true, Checker::bool);
    let reload_if_changed = field(c, map, path, "reload_if_changed", || false, Checker::bool);
    let stop_if_changed = field(c, map, path, "stop_if_changed", || true, Checker::bool);
    let reload_triggers = field(c, map, path, "reload_triggers", Vec::new, |c, v, p| {
        c.strings(v, p, |s| rules::line_text(s).map(|()| s.to_owned()))
    });
    let stop = field(c, map, path, "stop", Stop::default, read_stop);
    let health = field(c, map, path, "health", Health::default, read_health);
    let expose = field(c, map, path, "expose", Vec::new, |c, v, p| {
        c.list(v, p, read_expose)
    });
    let sandbox = field(c, map, path, "sandbox", Sandbox::default, read_sandbox);
    let placement = field(
        c,
        map,
        path,
        "placement",
        Placement::default,
        read_placement,
    );

    if matches!(reload, Some(None)) {
        if reload_if_changed == Some(true) {
            c.report(
                &path.key("reload_if_changed"),
                "needs a \"reload\" command to run; add one or remove this",
            );
        }
        if reload_triggers.as_ref().is_some_and(|t| !t.is_empty()) {
            c.report(
                &path.key("reload_triggers"),
                "needs a \"reload\" command to run; add one or remove these",
            );
        }
    }
    let relaxed = |part| {
        sandbox
            .as_ref()
            .is_some_and(|s: &Sandbox| s.relax.contains(&part))
    };
    if matches!(&user, Some(Some(u)) if u == "root") && !relaxed(Relax::Root) {
        c.report(
            &path.key("user"),
            "runs the workload as root, which must be asked for by name: add \"root\" to sandbox.relax",
        );
    }
    if group.as_ref().is_some_and(Option::is_some) && matches!(user, Some(None)) {
        c.report(&path.key("group"), "needs \"user\" as well; without a user the workload runs as a dynamic user with its own group");
    }

    let workload = Workload {
        kind: kind?,
        schedule: schedule?,
        command: command?,
        store_paths: store_paths?,
        environment: environment?,
        environment_files: environment_files?,
        credentials: credentials?,
        state: state?,
        after: after?,
        requires: requires?,
        working_directory: working_directory?,
        user: user?,
        group: group?,
        resources: resources?,
        restart: restart?,
        reload: reload?,
        restart_if_changed: restart_if_changed?,
        reload_if_changed: reload_if_changed?,
        stop_if_changed: stop_if_changed?,
        reload_triggers: reload_triggers?,
        stop: stop?,
        health: health?,
        expose: expose?,
        sandbox: sandbox?,
        placement: placement?,
    };
    lifecycle::check_kind(c, &workload, path);
    Some(workload)
}

fn optional_user(c: &mut Checker, v: &Value, p: &Path<'_>) -> Option<Option<String>> {
    let s = c.string(v, p)?;
    c.check(p, rules::user_name(s)).map(|()| Some(s.to_owned()))
}
