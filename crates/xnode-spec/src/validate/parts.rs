//! The parts of a workload that are objects of their own: resources, restart, health,
//! exposed ports, sandbox and placement.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{field, port, read_labels, required};
use crate::model::*;
use crate::path::Path;
use crate::read::Checker;
use crate::rules;
use crate::values::{Capability, Duration, Percent, Size};

/// Below this a process cannot even start; above it is no limit at all.
const MEMORY_RANGE: (u64, u64) = (1 << 20, 1 << 50);
/// The kernel's ceiling on PIDs.
const MAX_TASKS: u64 = 4_194_304;

pub(super) fn read_resources(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Resources> {
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
pub(super) fn duration(
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

pub(super) fn read_restart(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Restart> {
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

pub(super) fn read_health(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Health> {
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

pub(super) fn read_expose(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Expose> {
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

pub(super) fn read_sandbox(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Sandbox> {
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

pub(super) fn read_placement(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Placement> {
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
