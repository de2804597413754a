//! The fields about how a workload runs and what it is handed (kind, stop, order,
//! state, credentials, environment files): each rule refused at its path, and the
//! unit lines they render to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use serde_json::{Value, json};
use xnode_spec::unit::{UnitFile, render, secret_file};
use xnode_spec::{Credential, Kind, parse_value};

const OWNER: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const AGE: &str = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n-----END AGE ENCRYPTED FILE-----\n";

fn spec(workloads: Value) -> Value {
    json!({"version": 1, "node": {"name": "n1", "owner": OWNER}, "workloads": workloads})
}

fn sleep(extra: Value) -> Value {
    let mut w = json!({"command": ["/bin/sleep", "infinity"]});
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

fn problems(v: &Value) -> Vec<(String, String)> {
    match parse_value(v) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.into_iter().map(|p| (p.path, p.reason)).collect(),
    }
}

#[test]
fn each_rule_refuses_at_its_path() {
    let mesh = json!({"mesh": {"replicas": 1}});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "unknown kind",
            spec(json!({"w": sleep(json!({"kind": "daemon"}))})),
            "workloads.w.kind",
            "not a kind of workload",
        ),
        (
            "oneshot restarted on success",
            spec(json!({"w": sleep(json!({"kind": "oneshot", "restart": {"policy": "always"}}))})),
            "workloads.w.restart.policy",
            "runs to completion",
        ),
        (
            "oneshot with a probe",
            spec(json!({"w": sleep(json!({"kind": "oneshot", "health": {"tcp": {"port": 80}}}))})),
            "workloads.w.health",
            "no probe",
        ),
        (
            "oneshot exposing",
            spec(
                json!({"w": sleep(json!({"kind": "oneshot", "expose": [{"service": "s", "port": 80}]}))}),
            ),
            "workloads.w.expose",
            "serves nothing",
        ),
        (
            "oneshot on the mesh",
            spec(json!({"w": sleep(json!({"kind": "oneshot", "placement": mesh}))})),
            "workloads.w.placement",
            "mesh placement is for services",
        ),
        (
            "unknown signal",
            spec(json!({"w": sleep(json!({"stop": {"signal": "SIGSTOP"}}))})),
            "workloads.w.stop.signal",
            "not a stop signal",
        ),
        (
            "stop timeout unit",
            spec(json!({"w": sleep(json!({"stop": {"timeout": "5 s"}}))})),
            "workloads.w.stop.timeout",
            "not a duration",
        ),
        (
            "stop unknown field",
            spec(json!({"w": sleep(json!({"stop": {"timout": "5s"}}))})),
            "workloads.w.stop.timout",
            "did you mean \"timeout\"",
        ),
        (
            "mesh stop past the margin",
            spec(json!({"w": sleep(json!({"placement": mesh, "stop": {"timeout": "1s"}}))})),
            "workloads.w.stop.timeout",
            "fencing margin",
        ),
        (
            "after a missing workload",
            spec(json!({"w": sleep(json!({"after": ["db"]}))})),
            "workloads.w.after[0]",
            "\"db\" is not a workload of this spec",
        ),
        (
            "requires itself",
            spec(json!({"w": sleep(json!({"requires": ["w"]}))})),
            "workloads.w.requires[0]",
            "cannot depend on itself",
        ),
        (
            "requires a mesh workload",
            spec(
                json!({"w": sleep(json!({"requires": ["m"]})), "m": sleep(json!({"placement": mesh}))}),
            ),
            "workloads.w.requires[0]",
            "reach it by its service name",
        ),
        (
            "a cycle",
            spec(
                json!({"a": sleep(json!({"after": ["b"]})), "b": sleep(json!({"requires": ["c"]})), "c": sleep(json!({"after": ["a"]}))}),
            ),
            "workloads.a",
            "cycle: a → b → c → a",
        ),
        (
            "a bad name in after",
            spec(json!({"w": sleep(json!({"after": ["no/slash"]}))})),
            "workloads.w.after[0]",
            "not a valid workload name",
        ),
        (
            "state not a boolean",
            spec(json!({"w": sleep(json!({"state": "yes"}))})),
            "workloads.w.state",
            "expected true or false",
        ),
        (
            "credential name",
            spec(json!({"w": sleep(json!({"credentials": {"../x": {"file": "/run/keys/x"}}}))})),
            "workloads.w.credentials[\"../x\"]",
            "not a valid credential name",
        ),
        (
            "credential relative file",
            spec(json!({"w": sleep(json!({"credentials": {"db": {"file": "keys/x"}}}))})),
            "workloads.w.credentials.db.file",
            "not an absolute path",
        ),
        (
            "credential both sources",
            spec(json!({"w": sleep(json!({"credentials": {"db": {"file": "/k", "age": AGE}}}))})),
            "workloads.w.credentials.db",
            "exactly one of",
        ),
        (
            "credential no source",
            spec(json!({"w": sleep(json!({"credentials": {"db": {}}}))})),
            "workloads.w.credentials.db",
            "exactly one of",
        ),
        (
            "age not armored",
            spec(json!({"w": sleep(json!({"credentials": {"db": {"age": "hunter2"}}}))})),
            "workloads.w.credentials.db.age",
            "not an ASCII-armored age file",
        ),
        (
            "age too big",
            spec(
                json!({"w": sleep(json!({"credentials": {"db": {"age": format!("{AGE}{}", " ".repeat(70_000))}}}))}),
            ),
            "workloads.w.credentials.db.age",
            "at most 65536",
        ),
        (
            "environment file relative",
            spec(json!({"w": sleep(json!({"environment_files": ["env"]}))})),
            "workloads.w.environment_files[0]",
            "not an absolute path",
        ),
    ];
    let mut failures = Vec::new();
    for (name, doc, path, reason) in cases {
        let got = problems(&doc);
        if !got.iter().any(|(p, r)| p == path && r.contains(reason)) {
            failures.push(format!("{name}: wanted {path}: …{reason}…, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn too_many_credentials_are_refused() {
    let creds: serde_json::Map<String, Value> = (0..=xnode_spec::MAX_CREDENTIALS)
        .map(|i| (format!("c{i}"), json!({"file": "/run/keys/x"})))
        .collect();
    let got = problems(&spec(json!({"w": sleep(json!({"credentials": creds}))})));
    assert!(
        got.iter()
            .any(|(p, r)| p == "workloads.w.credentials" && r.contains("at most 32")),
        "{got:?}"
    );
}

#[test]
fn every_new_field_reads_back() {
    let doc = spec(json!({
        "db": sleep(json!({"state": true, "stop": {"timeout": "30s", "signal": "SIGINT"},
            "credentials": {"password": {"age": AGE}, "tls": {"file": "/run/keys/tls"}},
            "environment_files": ["/etc/db.env"]})),
        "migrate": sleep(json!({"kind": "oneshot", "after": ["db"], "requires": ["db"],
            "restart": {"policy": "no"}})),
    }));
    let s = parse_value(&doc).unwrap().spec;
    let db = &s.workloads["db"];
    assert!(db.state);
    assert_eq!(db.credentials["password"], Credential::Age(AGE.into()));
    assert_eq!(s.workloads["migrate"].kind, Kind::Oneshot);
    // What the spec says is what it writes back.
    let again = parse_value(&serde_json::to_value(&s).unwrap())
        .unwrap()
        .spec;
    assert_eq!(again, s);
    // Defaults are left out when written back.
    let plain = parse_value(&spec(json!({"w": sleep(json!({}))})))
        .unwrap()
        .spec;
    let written = serde_json::to_value(&plain.workloads["w"]).unwrap();
    for key in [
        "kind",
        "state",
        "stop",
        "credentials",
        "after",
        "requires",
        "environment_files",
    ] {
        assert!(written.get(key).is_none(), "{key} written back: {written}");
    }
}

#[test]
fn the_new_fields_render_to_their_directives() {
    let doc = spec(json!({
        "db": sleep(json!({"state": true, "stop": {"timeout": "30s", "signal": "SIGINT"},
            "credentials": {"password": {"age": AGE}, "tls": {"file": "/run/keys/tls"}},
            "environment_files": ["/etc/db.env"]})),
        "migrate": sleep(json!({"kind": "oneshot", "after": ["db"], "requires": ["db"],
            "health": {"timeout": "2min"}})),
        "m": sleep(json!({"placement": {"mesh": {}}, "stop": {"timeout": "200ms"}})),
    }));
    let s = parse_value(&doc).unwrap().spec;
    let db = UnitFile::parse(&render("db", &s.workloads["db"]));
    assert_eq!(db.get("Service", "Type"), ["exec"]);
    assert_eq!(db.get("Service", "StateDirectory"), ["xnode-db"]);
    assert_eq!(db.get("Service", "StateDirectoryMode"), ["0700"]);
    assert_eq!(db.get("Service", "TimeoutStopSec"), ["30000ms"]);
    assert_eq!(db.get("Service", "KillSignal"), ["SIGINT"]);
    assert_eq!(db.get("Service", "EnvironmentFile"), ["/etc/db.env"]);
    let secret = secret_file("db", AGE);
    assert!(secret.starts_with("/run/xnode-secrets/db/"), "{secret}");
    assert_eq!(
        db.get("Service", "LoadCredential"),
        [format!("password:{secret}"), "tls:/run/keys/tls".to_owned()]
    );
    let text = render("db", &s.workloads["db"]);
    assert!(!text.contains("YWdl"), "no ciphertext in the unit file");

    let migrate = UnitFile::parse(&render("migrate", &s.workloads["migrate"]));
    assert_eq!(migrate.get("Service", "Type"), ["oneshot"]);
    assert_eq!(migrate.get("Service", "RemainAfterExit"), ["yes"]);
    assert_eq!(migrate.get("Service", "TimeoutStartSec"), ["120000ms"]);
    assert_eq!(migrate.get("Unit", "After"), ["xnode-db.service"]);
    assert_eq!(migrate.get("Unit", "Requires"), ["xnode-db.service"]);

    let m = UnitFile::parse(&render("m", &s.workloads["m"]));
    assert_eq!(m.get("Service", "TimeoutStopSec"), ["200ms"]);
}

#[test]
fn a_new_ciphertext_restarts_the_workload() {
    let other = AGE.replace("YWdl", "ZWdl");
    let (a, b) = (secret_file("db", AGE), secret_file("db", &other));
    assert_ne!(a, b, "the file is named by the ciphertext");
    let render_with = |age: &str| {
        let s = parse_value(&spec(
            json!({"db": sleep(json!({"credentials": {"p": {"age": age}}}))}),
        ))
        .unwrap()
        .spec;
        render("db", &s.workloads["db"])
    };
    assert_eq!(
        xnode_spec::unit::compare(&render_with(AGE), &render_with(&other)),
        xnode_spec::unit::Difference::Restart(vec!["Service.LoadCredential".into()])
    );
}
