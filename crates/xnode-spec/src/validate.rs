//! From a parsed JSON value to a [`Spec`], recording every problem on the way.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use crate::model::*;
use crate::path::Path;
use crate::read::Checker;
use crate::rules;
use crate::values::{Capability, Duration, Owner, Percent, Size};

/// Most workloads one node runs.
pub const MAX_WORKLOADS: usize = 10_000;

const SPEC_FIELDS: &[&str] = &["version", "node", "mesh", "workloads"];
const NODE_FIELDS: &[&str] = &["name", "owner", "labels"];
const MESH_FIELDS: &[&str] = &["listen", "bootstrap", "mdns", "port"];
const WORKLOAD_FIELDS: &[&str] = &[
    "command",
    "store_paths",
    "environment",
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
    "health",
    "expose",
    "sandbox",
    "placement",
];

/// Validates a whole document; `Err` holds every problem in document order.
pub(crate) fn spec(v: &Value) -> Result<Spec, Vec<crate::Problem>> {
    let mut c = Checker::default();
    let spec = read_spec(&mut c, v);
    match spec {
        Some(spec) if c.problems.is_empty() => Ok(spec),
        _ => Err(c.problems),
    }
}

/// Reads an optional field with `read`, or returns `default` when it is absent.
fn field<T>(
    c: &mut Checker,
    map: &Map<String, Value>,
    path: &Path<'_>,
    key: &str,
    default: impl FnOnce() -> T,
    read: impl FnOnce(&mut Checker, &Value, &Path<'_>) -> Option<T>,
) -> Option<T> {
    match map.get(key) {
        Some(v) => read(c, v, &path.key(key)),
        None => Some(default()),
    }
}

/// Reads a required field, reporting it as missing with a hint.
fn required<T>(
    c: &mut Checker,
    map: &Map<String, Value>,
    path: &Path<'_>,
    key: &str,
    hint: &str,
    read: impl FnOnce(&mut Checker, &Value, &Path<'_>) -> Option<T>,
) -> Option<T> {
    match map.get(key) {
        Some(v) => read(c, v, &path.key(key)),
        None => {
            c.report(&path.key(key), format_args!("missing; {hint}"));
            None
        }
    }
}

fn read_spec(c: &mut Checker, v: &Value) -> Option<Spec> {
    let root = Path::ROOT;
    let map = c.object(v, &root, SPEC_FIELDS)?;
    let version = required(c, map, &root, "version", "add \"version\": 1", |c, v, p| {
        let n = c.integer(v, p, 0, u64::MAX)?;
        c.check(
            p,
            (n == VERSION).then_some(n).ok_or_else(|| {
                format!("version {n} is not supported (this build reads version {VERSION})")
            }),
        )
    });
    let node = required(
        c,
        map,
        &root,
        "node",
        "add \"node\": {\"name\": \"...\"}",
        read_node,
    );
    let mesh = field(c, map, &root, "mesh", Mesh::default, read_mesh);
    let workloads = field(c, map, &root, "workloads", BTreeMap::new, read_workloads);
    Some(Spec {
        version: version?,
        node: node?,
        mesh: mesh?,
        workloads: workloads?,
    })
}

fn read_node(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Node> {
    let map = c.object(v, path, NODE_FIELDS)?;
    let name = required(
        c,
        map,
        path,
        "name",
        "give the node a name such as \"n1\"",
        |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, rules::dns_label(s).map(|()| s.to_owned()))
        },
    );
    let owner = field(
        c,
        map,
        path,
        "owner",
        || None,
        |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, Owner::parse(s)).map(Some)
        },
    );
    let labels = field(c, map, path, "labels", BTreeMap::new, read_labels);
    Some(Node {
        name: name?,
        owner: owner?,
        labels: labels?,
    })
}

fn read_labels(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<BTreeMap<String, String>> {
    read_string_map(c, v, path, rules::label_key, rules::label_value)
}

/// A map of strings whose keys and values are each checked.
fn read_string_map(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
    key_rule: fn(&str) -> Result<(), String>,
    value_rule: fn(&str) -> Result<(), String>,
) -> Option<BTreeMap<String, String>> {
    let map = c.map(v, path)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in map {
        let p = path.key(k);
        let key = c.check(&p, key_rule(k));
        let value = c
            .string(v, &p)
            .and_then(|s| c.check(&p, value_rule(s)).map(|()| s));
        match (key, value) {
            (Some(()), Some(s)) => {
                out.insert(k.clone(), s.to_owned());
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_mesh(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Mesh> {
    let map = c.object(v, path, MESH_FIELDS)?;
    let listen = field(c, map, path, "listen", Vec::new, |c, v, p| {
        c.strings(v, p, |s| {
            rules::listen_addr(s).map(|port| (s.to_owned(), port))
        })
    });
    let bootstrap = field(c, map, path, "bootstrap", Vec::new, |c, v, p| {
        c.strings(v, p, |s| rules::bootstrap_addr(s).map(|()| s.to_owned()))
    });
    let mdns = field(c, map, path, "mdns", || false, Checker::bool);
    let port = field(c, map, path, "port", || DEFAULT_MESH_PORT, port);
    // An explicit port is what the firewall opens, so listening elsewhere would be
    // unreachable.
    if let (Some(listen), Some(port), true) = (&listen, port, map.contains_key("port")) {
        let listen_path = path.key("listen");
        for (i, (addr, p)) in listen.iter().enumerate() {
            if *p != 0 && *p != port {
                c.report(
                    &listen_path.index(i),
                    format_args!("{addr:?} uses port {p}, but mesh.port is {port}, the port the firewall opens; use the same port"),
                );
            }
        }
    }
    Some(Mesh {
        listen: listen?.into_iter().map(|(addr, _)| addr).collect(),
        bootstrap: bootstrap?,
        mdns: mdns?,
        port: port?,
    })
}

fn port(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<u16> {
    c.integer(v, path, 1, u16::MAX.into())
        .and_then(|n| u16::try_from(n).ok())
}

fn read_workloads(
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
    let working_directory = field(
        c,
        map,
        path,
        "working_directory",
        || None,
        |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, rules::absolute_path(s))
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
    if group.as_ref().is_some_and(Option::is_some) && matches!(user, Some(None)) {
        c.report(&path.key("group"), "needs \"user\" as well; without a user the workload runs as a dynamic user with its own group");
    }

    Some(Workload {
        command: command?,
        store_paths: store_paths?,
        environment: environment?,
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
        health: health?,
        expose: expose?,
        sandbox: sandbox?,
        placement: placement?,
    })
}

fn optional_user(c: &mut Checker, v: &Value, p: &Path<'_>) -> Option<Option<String>> {
    let s = c.string(v, p)?;
    c.check(p, rules::user_name(s)).map(|()| Some(s.to_owned()))
}

/// Below this a process cannot even start; above it is no limit at all.
const MEMORY_RANGE: (u64, u64) = (1 << 20, 1 << 50);
/// The kernel's ceiling on PIDs.
const MAX_TASKS: u64 = 4_194_304;

fn read_resources(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Resources> {
    let map = c.object(v, path, &["cpu", "memory", "tasks"])?;
    let cpu = field(
        c,
        map,
        path,
        "cpu",
        || None,
        |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, Percent::parse(s)).map(Some)
        },
    );
    let memory = field(
        c,
        map,
        path,
        "memory",
        || None,
        |c, v, p| {
            let size = match v {
                Value::String(s) => c.check(p, Size::parse(s))?,
                Value::Number(_) => Size(c.integer(v, p, 0, u64::MAX)?),
                _ => {
                    c.report(p, "expected a size such as \"512M\", or a number of bytes");
                    return None;
                }
            };
            let (min, max) = MEMORY_RANGE;
            c.check(
                p,
                (min..=max)
                    .contains(&size.0)
                    .then_some(Some(size))
                    .ok_or_else(|| {
                        format!("{size} is out of range ({} to {})", Size(min), Size(max))
                    }),
            )
        },
    );
    let tasks = field(
        c,
        map,
        path,
        "tasks",
        || None,
        |c, v, p| {
            c.integer(v, p, 1, MAX_TASKS)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
        },
    );
    Some(Resources {
        cpu: cpu?,
        memory: memory?,
        tasks: tasks?,
    })
}

/// A duration string within `min..=max`.
fn duration(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let s = c.string(v, path)?;
    let d = c.check(path, Duration::parse(s))?;
    c.check(
        path,
        (min..=max)
            .contains(&d)
            .then_some(d)
            .ok_or_else(|| format!("{s:?} is out of range ({min} to {max})")),
    )
}

fn read_restart(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Restart> {
    let map = c.object(v, path, &["policy", "delay"])?;
    let policy = field(c, map, path, "policy", RestartPolicy::default, |c, v, p| {
        let s = c.string(v, p)?;
        let found = RestartPolicy::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, policy)| *policy);
        c.check(
            p,
            found.ok_or_else(|| {
                let names: Vec<_> = RestartPolicy::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "{s:?} is not a restart policy (one of: {})",
                    names.join(", ")
                )
            }),
        )
    });
    let delay = field(
        c,
        map,
        path,
        "delay",
        || DEFAULT_RESTART_DELAY,
        |c, v, p| {
            duration(
                c,
                v,
                p,
                Duration::from_millis(0),
                Duration::from_millis(3_600_000),
            )
        },
    );
    Some(Restart {
        policy: policy?,
        delay: delay?,
    })
}

const MAX_HEALTH_TIMEOUT: Duration = Duration::from_millis(3_600_000);
const PROBE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(60_000));

fn read_health(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Health> {
    let map = c.object(v, path, &["timeout", "http", "tcp"])?;
    let timeout = field(
        c,
        map,
        path,
        "timeout",
        || DEFAULT_HEALTH_TIMEOUT,
        |c, v, p| duration(c, v, p, Duration::from_millis(1000), MAX_HEALTH_TIMEOUT),
    );
    let probe_timeout = |c: &mut Checker, map: &Map<String, Value>, p: &Path<'_>| {
        field(
            c,
            map,
            p,
            "timeout",
            || DEFAULT_PROBE_TIMEOUT,
            |c, v, p| duration(c, v, p, PROBE_TIMEOUT_RANGE.0, PROBE_TIMEOUT_RANGE.1),
        )
    };
    let http = field(
        c,
        map,
        path,
        "http",
        || None,
        |c, v, p| {
            let m = c.object(v, p, &["port", "path", "timeout"])?;
            let port = required(c, m, p, "port", "give the port on 127.0.0.1 to probe", port);
            let http_path = field(
                c,
                m,
                p,
                "path",
                || "/".to_owned(),
                |c, v, p| {
                    let s = c.string(v, p)?;
                    let ok =
                        s.starts_with('/') && !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
                    c.check(
                        p,
                        ok.then(|| s.to_owned()).ok_or_else(|| {
                            format!("{s:?} is not a request path (start it with '/', no spaces)")
                        }),
                    )
                },
            );
            let timeout = probe_timeout(c, m, p);
            Some(Some(HttpProbe {
                port: port?,
                path: http_path?,
                timeout: timeout?,
            }))
        },
    );
    let tcp = field(
        c,
        map,
        path,
        "tcp",
        || None,
        |c, v, p| {
            let m = c.object(v, p, &["port", "timeout"])?;
            let port = required(c, m, p, "port", "give the port on 127.0.0.1 to probe", port);
            let timeout = probe_timeout(c, m, p);
            Some(Some(TcpProbe {
                port: port?,
                timeout: timeout?,
            }))
        },
    );
    if map.contains_key("http") && map.contains_key("tcp") {
        c.report(
            &path.key("tcp"),
            "a workload has one probe; keep \"http\" or \"tcp\", not both",
        );
        return None;
    }
    Some(Health {
        timeout: timeout?,
        http: http?,
        tcp: tcp?,
    })
}

fn read_expose(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Expose> {
    let map = c.object(v, path, &["service", "port", "protocol"])?;
    let service = required(
        c,
        map,
        path,
        "service",
        "name the service, e.g. \"web\"",
        |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, rules::dns_label(s).map(|()| s.to_owned()))
        },
    );
    let port = required(
        c,
        map,
        path,
        "port",
        "give the port the workload listens on",
        port,
    );
    let protocol = field(
        c,
        map,
        path,
        "protocol",
        Protocol::default,
        |c, v, p| match c.string(v, p)? {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            other => {
                c.report(
                    p,
                    format_args!("{other:?} is not a protocol (\"tcp\" or \"udp\")"),
                );
                None
            }
        },
    );
    Some(Expose {
        service: service?,
        port: port?,
        protocol: protocol?,
    })
}

fn read_sandbox(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Sandbox> {
    let map = c.object(v, path, &["relax", "writable_paths", "capabilities"])?;
    let relax = field(c, map, path, "relax", BTreeSet::new, |c, v, p| {
        c.strings(v, p, |s| {
            Relax::ALL
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, r)| *r)
                .ok_or_else(|| {
                    let names: Vec<_> = Relax::ALL.iter().map(|(n, _)| *n).collect();
                    format!("{s:?} is not a sandbox part (one of: {})", names.join(", "))
                })
        })
        .map(BTreeSet::from_iter)
    });
    let writable_paths = field(c, map, path, "writable_paths", Vec::new, |c, v, p| {
        c.strings(v, p, |s| rules::absolute_path(s).map(|()| s.to_owned()))
    });
    let capabilities = field(c, map, path, "capabilities", BTreeSet::new, |c, v, p| {
        c.strings(v, p, Capability::parse).map(BTreeSet::from_iter)
    });
    Some(Sandbox {
        relax: relax?,
        writable_paths: writable_paths?,
        capabilities: capabilities?,
    })
}

/// Most replicas of one mesh workload.
pub const MAX_REPLICAS: u64 = 1024;

fn read_placement(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Placement> {
    if let Value::String(s) = v {
        return if s == "local" {
            Some(Placement::Local)
        } else {
            c.report(
                path,
                format_args!(
                    "{s:?} is not a placement (\"local\", or {{\"mesh\": {{\"replicas\": N}}}})"
                ),
            );
            None
        };
    }
    let map = c.object(v, path, &["mesh"])?;
    let p = path.key("mesh");
    let Some(mesh) = map.get("mesh") else {
        c.report(
            path,
            "expected \"local\" or {\"mesh\": {\"replicas\": N, \"labels\": {...}}}",
        );
        return None;
    };
    let m = c.object(mesh, &p, &["replicas", "labels"])?;
    let replicas = field(
        c,
        m,
        &p,
        "replicas",
        || 1,
        |c, v, p| {
            let n = c.integer(v, p, 1, MAX_REPLICAS)?;
            u32::try_from(n).ok()
        },
    );
    let labels = field(c, m, &p, "labels", BTreeMap::new, read_labels);
    Some(Placement::Mesh(MeshPlacement {
        replicas: replicas?,
        labels: labels?,
    }))
}
