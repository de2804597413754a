//! One case per validation rule: a spec breaking exactly that rule must be rejected
//! with a problem at the right path and a reason that says what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use serde_json::{Value, json};
use xnode_spec::{Placement, parse_value};

/// The minimal valid spec, with one workload `w`.
fn base() -> Value {
    json!({"version": 1, "node": {"name": "n1"}, "workloads": {"w": {"command": ["/bin/sleep", "infinity"]}}})
}

/// `base()` with the JSON pointer `at` set to `value`, creating objects on the way.
fn with(at: &str, value: Value) -> Value {
    let mut spec = base();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let mut target = &mut spec;
    for part in parent.split('/').skip(1) {
        target = target
            .as_object_mut()
            .unwrap()
            .entry(part)
            .or_insert_with(|| json!({}));
    }
    target
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    spec
}

fn without(at: &str) -> Value {
    let mut spec = base();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() {
        &mut spec
    } else {
        spec.pointer_mut(parent).unwrap()
    };
    parent.as_object_mut().unwrap().remove(key);
    spec
}

#[test]
fn the_minimal_spec_is_valid_with_safe_defaults() {
    let v = parse_value(&base()).expect("minimal spec");
    let w = &v.spec.workloads["w"];
    assert_eq!(w.placement, Placement::Local);
    assert!(w.user.is_none(), "no user means a dynamic user");
    assert!(w.sandbox.relax.is_empty(), "hardened by default");
    assert_eq!(v.spec.mesh.port, xnode_spec::DEFAULT_MESH_PORT);
}

#[test]
fn every_rule_rejects_with_its_path() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        // document shape
        (
            "not an object",
            json!([1]),
            "",
            "expected an object, found an array",
        ),
        (
            "unknown top-level field",
            with("/extra", json!(1)),
            "extra",
            "unknown field",
        ),
        (
            "typo suggests the field",
            with("/workloads/w/comand", json!([])),
            "workloads.w.comand",
            "did you mean \"command\"",
        ),
        ("version missing", without("/version"), "version", "missing"),
        (
            "version unsupported",
            with("/version", json!(2)),
            "version",
            "version 2 is not supported",
        ),
        (
            "version wrong type",
            with("/version", json!("1")),
            "version",
            "expected a whole number, found a string",
        ),
        ("node missing", without("/node"), "node", "missing"),
        // node
        (
            "node name missing",
            with("/node", json!({})),
            "node.name",
            "missing",
        ),
        (
            "node name invalid",
            with("/node/name", json!("n 1")),
            "node.name",
            "not a valid name",
        ),
        (
            "node name too long",
            with("/node/name", json!("a".repeat(64))),
            "node.name",
            "1 to 63",
        ),
        (
            "owner bad prefix",
            with("/node/owner", json!("rsa:AAAA")),
            "node.owner",
            "is not an owner",
        ),
        (
            "owner short key",
            with("/node/owner", json!("ed25519:AAAA")),
            "node.owner",
            "32 bytes",
        ),
        (
            "owner bad eth",
            with("/node/owner", json!("eth:0x1234")),
            "node.owner",
            "40 hex digits",
        ),
        (
            "owner bad checksum",
            with(
                "/node/owner",
                json!("eth:0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            "node.owner",
            "EIP-55",
        ),
        (
            "label key",
            with("/node/labels", json!({"bad key": "x"})),
            "node.labels[\"bad key\"]",
            "not a valid label key",
        ),
        (
            "label value",
            with("/node/labels", json!({"zone": "a b"})),
            "node.labels.zone",
            "not a valid label value",
        ),
        (
            "label value type",
            with("/node/labels", json!({"zone": 1})),
            "node.labels.zone",
            "expected a string",
        ),
        // mesh
        (
            "listen not multiaddr",
            with("/mesh/listen", json!(["0.0.0.0:7720"])),
            "mesh.listen[0]",
            "not a multiaddr",
        ),
        (
            "listen without transport",
            with("/mesh/listen", json!(["/ip4/0.0.0.0"])),
            "mesh.listen[0]",
            "needs a transport",
        ),
        (
            "listen port differs from mesh.port",
            json!({"version": 1, "node": {"name": "n1"}, "mesh": {"port": 4001, "listen": ["/ip4/0.0.0.0/tcp/4002"]}}),
            "mesh.listen[0]",
            "mesh.port is 4001",
        ),
        (
            "bootstrap bad peer id",
            with(
                "/mesh/bootstrap",
                json!(["/ip4/10.0.0.1/tcp/7720/p2p/nope"]),
            ),
            "mesh.bootstrap[0]",
            "not a multiaddr",
        ),
        (
            "bootstrap port 0",
            with("/mesh/bootstrap", json!(["/ip4/10.0.0.1/tcp/0"])),
            "mesh.bootstrap[0]",
            "port 0",
        ),
        (
            "mdns not bool",
            with("/mesh/mdns", json!("yes")),
            "mesh.mdns",
            "expected true or false",
        ),
        (
            "mesh port 0",
            with("/mesh/port", json!(0)),
            "mesh.port",
            "out of range (1 to 65535)",
        ),
        (
            "mesh port too big",
            with("/mesh/port", json!(70000)),
            "mesh.port",
            "out of range",
        ),
        // workloads
        (
            "workloads not an object",
            with("/workloads", json!([])),
            "workloads",
            "expected an object",
        ),
        (
            "workload name",
            with("/workloads/we b", json!({"command": ["/bin/true"]})),
            "workloads[\"we b\"]",
            "not a valid workload name",
        ),
        (
            "workload name template",
            with("/workloads/web@1", json!({"command": ["/bin/true"]})),
            "workloads[\"web@1\"]",
            "not a valid workload name",
        ),
        (
            "command missing",
            with("/workloads/w", json!({})),
            "workloads.w.command",
            "missing",
        ),
        (
            "command empty",
            with("/workloads/w/command", json!([])),
            "workloads.w.command",
            "is empty",
        ),
        (
            "command relative",
            with("/workloads/w/command", json!(["sleep", "1"])),
            "workloads.w.command[0]",
            "not an absolute path",
        ),
        (
            "command dotdot",
            with("/workloads/w/command", json!(["/bin/../sbin/x"])),
            "workloads.w.command[0]",
            "'..'",
        ),
        (
            "command arg newline",
            with(
                "/workloads/w/command",
                json!(["/bin/echo", "a\nExecStartPre=/bin/rm"]),
            ),
            "workloads.w.command[1]",
            "control character",
        ),
        (
            "command arg type",
            with("/workloads/w/command", json!(["/bin/echo", 1])),
            "workloads.w.command[1]",
            "expected a string",
        ),
        (
            "command in bad store path",
            with(
                "/workloads/w/command",
                json!(["/nix/store/abc-web/bin/web"]),
            ),
            "workloads.w.command[0]",
            "not a Nix store path",
        ),
        (
            "store path hash",
            with(
                "/workloads/w/store_paths",
                json!(["/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x"]),
            ),
            "workloads.w.store_paths[0]",
            "base-32",
        ),
        (
            "store path not store",
            with("/workloads/w/store_paths", json!(["/usr/bin"])),
            "workloads.w.store_paths[0]",
            "not under /nix/store/",
        ),
        (
            "env name",
            with("/workloads/w/environment", json!({"1X": "a"})),
            "workloads.w.environment.1X",
            "not a valid environment variable name",
        ),
        (
            "env value newline",
            with("/workloads/w/environment", json!({"X": "a\nb"})),
            "workloads.w.environment.X",
            "control character",
        ),
        (
            "working directory relative",
            with("/workloads/w/working_directory", json!("var/lib")),
            "workloads.w.working_directory",
            "not an absolute path",
        ),
        (
            "working directory ends with a space",
            with("/workloads/w/working_directory", json!("/srv/dir ")),
            "workloads.w.working_directory",
            "ends with whitespace",
        ),
        (
            "root without asking",
            with("/workloads/w/user", json!("root")),
            "workloads.w.user",
            "add \"root\" to sandbox.relax",
        ),
        (
            "user name",
            with("/workloads/w/user", json!("0day")),
            "workloads.w.user",
            "not a valid user",
        ),
        (
            "group without user",
            with("/workloads/w/group", json!("web")),
            "workloads.w.group",
            "needs \"user\"",
        ),
        (
            "memory size",
            with("/workloads/w/resources", json!({"memory": "12XB"})),
            "workloads.w.resources.memory",
            "\"12XB\" is not a size (use e.g. \"512M\")",
        ),
        (
            "memory too small",
            with("/workloads/w/resources", json!({"memory": "1K"})),
            "workloads.w.resources.memory",
            "out of range",
        ),
        (
            "memory type",
            with("/workloads/w/resources", json!({"memory": true})),
            "workloads.w.resources.memory",
            "expected a size",
        ),
        (
            "cpu not percent",
            with("/workloads/w/resources", json!({"cpu": "2 cores"})),
            "workloads.w.resources.cpu",
            "not a CPU quota",
        ),
        (
            "cpu zero",
            with("/workloads/w/resources", json!({"cpu": "0%"})),
            "workloads.w.resources.cpu",
            "out of range",
        ),
        (
            "tasks zero",
            with("/workloads/w/resources", json!({"tasks": 0})),
            "workloads.w.resources.tasks",
            "out of range",
        ),
        (
            "tasks too many",
            with("/workloads/w/resources", json!({"tasks": 5_000_000})),
            "workloads.w.resources.tasks",
            "out of range",
        ),
        (
            "restart policy",
            with("/workloads/w/restart", json!({"policy": "sometimes"})),
            "workloads.w.restart.policy",
            "not a restart policy",
        ),
        (
            "restart delay",
            with("/workloads/w/restart", json!({"delay": "5"})),
            "workloads.w.restart.delay",
            "not a duration",
        ),
        (
            "restart delay too long",
            with("/workloads/w/restart", json!({"delay": "2h"})),
            "workloads.w.restart.delay",
            "out of range",
        ),
        (
            "reload relative",
            with("/workloads/w/reload", json!(["kill"])),
            "workloads.w.reload[0]",
            "not an absolute path",
        ),
        (
            "reload_if_changed without reload",
            with("/workloads/w/reload_if_changed", json!(true)),
            "workloads.w.reload_if_changed",
            "needs a \"reload\" command",
        ),
        (
            "reload triggers without reload",
            with("/workloads/w/reload_triggers", json!(["x"])),
            "workloads.w.reload_triggers",
            "needs a \"reload\" command",
        ),
        (
            "restart_if_changed type",
            with("/workloads/w/restart_if_changed", json!(0)),
            "workloads.w.restart_if_changed",
            "expected true or false",
        ),
        (
            "health timeout short",
            with("/workloads/w/health", json!({"timeout": "10ms"})),
            "workloads.w.health.timeout",
            "out of range",
        ),
        (
            "health both probes",
            with(
                "/workloads/w/health",
                json!({"http": {"port": 80}, "tcp": {"port": 80}}),
            ),
            "workloads.w.health.tcp",
            "not both",
        ),
        (
            "http probe port missing",
            with("/workloads/w/health", json!({"http": {}})),
            "workloads.w.health.http.port",
            "missing",
        ),
        (
            "http probe path",
            with(
                "/workloads/w/health",
                json!({"http": {"port": 80, "path": "health"}}),
            ),
            "workloads.w.health.http.path",
            "not a request path",
        ),
        (
            "tcp probe timeout",
            with(
                "/workloads/w/health",
                json!({"tcp": {"port": 80, "timeout": "5min"}}),
            ),
            "workloads.w.health.tcp.timeout",
            "out of range",
        ),
        (
            "expose port 0",
            with(
                "/workloads/w/expose",
                json!([{"service": "web", "port": 0}]),
            ),
            "workloads.w.expose[0].port",
            "out of range",
        ),
        (
            "expose service name",
            with(
                "/workloads/w/expose",
                json!([{"service": "web_1", "port": 80}]),
            ),
            "workloads.w.expose[0].service",
            "not a valid name",
        ),
        (
            "expose protocol",
            with(
                "/workloads/w/expose",
                json!([{"service": "web", "port": 80, "protocol": "sctp"}]),
            ),
            "workloads.w.expose[0].protocol",
            "not a protocol",
        ),
        (
            "duplicate port",
            with(
                "/workloads/w/expose",
                json!([{"service": "a", "port": 80}, {"service": "b", "port": 80}]),
            ),
            "workloads.w.expose[1].port",
            "already exposed by workloads.w.expose[0]",
        ),
        (
            "duplicate service",
            with(
                "/workloads/w/expose",
                json!([{"service": "a", "port": 80}, {"service": "a", "port": 81}]),
            ),
            "workloads.w.expose[1].service",
            "already exposed",
        ),
        (
            "sandbox relax name",
            with("/workloads/w/sandbox", json!({"relax": ["everything"]})),
            "workloads.w.sandbox.relax[0]",
            "not a sandbox part",
        ),
        (
            "sandbox writable relative",
            with("/workloads/w/sandbox", json!({"writable_paths": ["data"]})),
            "workloads.w.sandbox.writable_paths[0]",
            "not an absolute path",
        ),
        (
            "sandbox capability",
            with(
                "/workloads/w/sandbox",
                json!({"capabilities": ["NET_ADMIN"]}),
            ),
            "workloads.w.sandbox.capabilities[0]",
            "not a Linux capability",
        ),
        (
            "placement word",
            with("/workloads/w/placement", json!("anywhere")),
            "workloads.w.placement",
            "not a placement",
        ),
        (
            "placement object",
            with("/workloads/w/placement", json!({})),
            "workloads.w.placement",
            "expected \"local\"",
        ),
        (
            "replicas zero",
            with("/workloads/w/placement", json!({"mesh": {"replicas": 0}})),
            "workloads.w.placement.mesh.replicas",
            "out of range (1 to 1024)",
        ),
        (
            "replicas fraction",
            with("/workloads/w/placement", json!({"mesh": {"replicas": 1.5}})),
            "workloads.w.placement.mesh.replicas",
            "not a whole number",
        ),
        (
            "mesh without an owner",
            with("/workloads/w/placement", json!({"mesh": {}})),
            "workloads.w.placement",
            "node.owner is not set",
        ),
        (
            "placement labels",
            with(
                "/workloads/w/placement",
                json!({"mesh": {"labels": {"zone": "a b"}}}),
            ),
            "workloads.w.placement.mesh.labels.zone",
            "not a valid label value",
        ),
        (
            "placement unknown",
            with("/workloads/w/placement", json!({"mesh": {"replica": 2}})),
            "workloads.w.placement.mesh.replica",
            "did you mean \"replicas\"",
        ),
    ];
    let mut failures = Vec::new();
    for (name, spec, path, reason) in &cases {
        match parse_value(spec) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(invalid) => {
                let hit = invalid
                    .problems
                    .iter()
                    .any(|p| p.path == *path && p.reason.contains(reason));
                if !hit {
                    failures.push(format!(
                        "{name}: wanted {path}: …{reason}…, got {:?}",
                        invalid.problems
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let spec = json!({
        "version": 2,
        "node": {"name": "bad name", "owner": "nobody"},
        "workloads": {
            "web": {"command": ["web"], "resources": {"memory": "12XB", "cpu": "lots"}},
            "db": {"command": ["/bin/db"], "placement": {"mesh": {"replicas": 0}}, "colour": "red"}
        }
    });
    let problems = parse_value(&spec).unwrap_err().problems;
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "version",
            "node.name",
            "node.owner",
            "workloads.db.colour",
            "workloads.db.placement.mesh.replicas",
            "workloads.web.command[0]",
            "workloads.web.resources.cpu",
            "workloads.web.resources.memory",
        ]
    );
}

#[test]
fn display_puts_the_path_first() {
    let problems = parse_value(&with("/workloads/w/resources", json!({"memory": "12XB"})))
        .unwrap_err()
        .problems;
    assert_eq!(
        problems[0].to_string(),
        r#"workloads.w.resources.memory: "12XB" is not a size (use e.g. "512M")"#
    );
}
