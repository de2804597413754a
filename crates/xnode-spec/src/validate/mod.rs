//! From a parsed JSON value to a [`Spec`], recording every problem on the way.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::model::{DEFAULT_MESH_PORT, Mesh, Node, Placement, Spec, VERSION};
use crate::path::Path;
use crate::read::Checker;
use crate::rules;
use crate::values::Owner;

mod fleet_spec;
mod lifecycle;
mod parts;
mod workload;

pub(crate) use fleet_spec::fleet_spec;

pub use lifecycle::{MAX_AGE_CIPHERTEXT, MAX_CREDENTIALS};
pub use parts::MAX_REPLICAS;
pub use workload::{MAX_MESH_WORKLOADS, MAX_WORKLOADS};

const SPEC_FIELDS: &[&str] = &["version", "node", "mesh", "workloads"];
const NODE_FIELDS: &[&str] = &["name", "owner", "labels"];
const MESH_FIELDS: &[&str] = &["listen", "bootstrap", "mdns", "port"];

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
pub(super) fn field<T>(
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
pub(super) fn required<T>(
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
    let workloads = field(
        c,
        map,
        &root,
        "workloads",
        BTreeMap::new,
        workload::read_workloads,
    );
    let (node, workloads) = (node?, workloads?);
    if node.owner.is_none() {
        // Only nodes their owner admitted run mesh workloads: without an owner there is
        // no fleet to run them in.
        for (name, w) in &workloads {
            if matches!(w.placement, Placement::Mesh(_)) {
                c.report(
                    &root.key("workloads").key(name).key("placement"),
                    "placed on the mesh, but node.owner is not set: mesh workloads run only \
                     on nodes their owner admitted to a fleet; add node.owner",
                );
            }
        }
    }
    Some(Spec {
        version: version?,
        node,
        mesh: mesh?,
        workloads,
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

pub(super) fn read_labels(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
) -> Option<BTreeMap<String, String>> {
    read_string_map(c, v, path, rules::label_key, rules::label_value)
}

/// A map of strings whose keys and values are each checked.
pub(super) fn read_string_map(
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

pub(super) fn port(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<u16> {
    c.integer(v, path, 1, u16::MAX.into())
        .and_then(|n| u16::try_from(n).ok())
}
