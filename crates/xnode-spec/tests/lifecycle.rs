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

#[test]
fn a_timer_needs_a_valid_schedule_and_runs_to_completion() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            sleep(json!({"kind": "timer"})),
            "workloads.w.schedule",
            "missing; a timer runs on a schedule",
        ),
        (
            sleep(json!({"kind": "timer", "schedule": "nightly"})),
            "workloads.w.schedule",
            "not a schedule this node accepts",
        ),
        (
            sleep(json!({"kind": "timer", "schedule": "*-*-* 25:00"})),
            "workloads.w.schedule",
            "hour 25 is out of range",
        ),
        (
            sleep(json!({"schedule": "daily"})),
            "workloads.w.schedule",
            "only for a timer",
        ),
        (
            sleep(json!({"kind": "timer", "schedule": "daily", "restart": {"policy": "always"}})),
            "workloads.w.restart.policy",
            "a timer runs to completion",
        ),
        (
            sleep(json!({"kind": "timer", "schedule": "daily", "placement": {"mesh": {}}})),
            "workloads.w.placement",
            "a timer runs on this node",
        ),
    ];
    for (w, path, reason) in cases {
        let got = problems(&spec(json!({"w": w})));
        assert!(
            got.iter().any(|(p, r)| p == path && r.contains(reason)),
            "{path}: {got:?}"
        );
    }
}

#[test]
fn a_timer_is_a_oneshot_service_and_a_timer_unit() {
    use xnode_spec::plan::{ActiveState, ObservedUnit, Op, plan};
    let s = parse_value(&spec(
        json!({"nightly": sleep(json!({"kind": "timer", "schedule": "*-*-* 02:30:00"}))}),
    ))
    .unwrap()
    .spec;
    let w = &s.workloads["nightly"];
    let files = xnode_spec::unit::units("nightly", w);
    let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["xnode-nightly.service", "xnode-nightly.timer"]);
    let service = UnitFile::parse(&files[0].1);
    assert_eq!(service.get("Service", "Type"), ["oneshot"]);
    assert!(
        service.get("Service", "RemainAfterExit").is_empty(),
        "it must end to run again"
    );
    let timer = UnitFile::parse(&files[1].1);
    assert_eq!(timer.get("Timer", "OnCalendar"), ["*-*-* 02:30:00"]);
    assert_eq!(timer.get("Timer", "Unit"), ["xnode-nightly.service"]);
    assert_eq!(timer.owner(), Some("nightly"));

    // New: both files, then only the timer started.
    let steps = |p: &xnode_spec::plan::Plan| -> Vec<String> {
        p.actions
            .iter()
            .map(|a| format!("{} {}", a.op, a.unit))
            .collect()
    };
    let none = Default::default();
    let p = plan(&s, &[], &none);
    assert_eq!(
        steps(&p),
        [
            "create xnode-nightly.service",
            "create xnode-nightly.timer",
            "start xnode-nightly.timer"
        ]
    );
    // In place, its service between runs: nothing to do; a run under way is left alone.
    let installed = |name: &str, content: &str, state| {
        let mut o = ObservedUnit::new(name, state, Some(content.to_owned()));
        o.sub_state = Some("waiting".into());
        o
    };
    let observed = [
        installed("xnode-nightly.service", &files[0].1, ActiveState::Inactive),
        installed("xnode-nightly.timer", &files[1].1, ActiveState::Active),
    ];
    assert!(plan(&s, &observed, &none).is_empty());
    let running = [
        installed(
            "xnode-nightly.service",
            &files[0].1,
            ActiveState::Activating,
        ),
        installed("xnode-nightly.timer", &files[1].1, ActiveState::Active),
    ];
    assert!(plan(&s, &running, &none).is_empty());
    // Back to a plain service: the timer goes, the service is restarted as one.
    let back = parse_value(&spec(json!({"nightly": sleep(json!({}))})))
        .unwrap()
        .spec;
    let p = plan(&back, &observed, &none);
    assert_eq!(
        steps(&p),
        [
            "stop xnode-nightly.timer",
            "remove xnode-nightly.timer",
            "update xnode-nightly.service",
            "start xnode-nightly.service"
        ]
    );
    assert!(
        p.actions
            .iter()
            .any(|a| a.op == Op::Remove && a.reason.to_string().contains("no longer uses"))
    );
    // Removed: both go.
    let gone = parse_value(&spec(json!({}))).unwrap().spec;
    assert_eq!(
        steps(&plan(&gone, &running, &none)),
        [
            "stop xnode-nightly.service",
            "stop xnode-nightly.timer",
            "remove xnode-nightly.service",
            "remove xnode-nightly.timer"
        ]
    );
}

#[test]
fn a_new_secret_restarts_even_a_workload_that_asks_to_be_reloaded() {
    use xnode_spec::plan::{ActiveState, ObservedUnit, plan};
    let other = AGE.replace("YWdl", "ZWdl");
    let with = |age: &str| {
        parse_value(&spec(json!({"db": sleep(json!({
            "credentials": {"p": {"age": age}},
            "reload": ["/bin/kill", "-HUP", "$MAINPID"], "reload_if_changed": true}))})))
        .unwrap()
        .spec
    };
    let old = with(AGE);
    let installed = ObservedUnit::new(
        "xnode-db.service",
        ActiveState::Active,
        Some(render("db", &old.workloads["db"])),
    );
    let p = plan(&with(&other), &[installed], &Default::default());
    let ops: Vec<String> = p.actions.iter().map(|a| a.op.to_string()).collect();
    assert_eq!(ops, ["stop", "update", "start"], "{p:?}");
}

#[test]
fn files_systemd_reads_for_a_workload_are_plain_and_never_the_agents() {
    for (path, why) in [
        ("/run/keys/x\\", "backslash"),
        ("/run/keys/x ", "whitespace"),
        ("/run/my keys/x", "whitespace"),
        ("/run//keys/x", "not a normalised path"),
        ("/run/keys/", "not a normalised path"),
        ("/var/lib/xnode/mesh.key", "xnoded's own secrets"),
        ("/run/xnode-secrets/db/0123", "xnoded's own secrets"),
        ("/run/xnode/api.sock", "xnoded's own secrets"),
    ] {
        for (field, value) in [
            ("credentials", json!({"k": {"file": path}})),
            ("environment_files", json!([path])),
        ] {
            let got = problems(&spec(json!({"w": sleep(json!({field: value}))})));
            assert!(
                got.iter().any(|(_, r)| r.contains(why)),
                "{field} {path:?}: {got:?}"
            );
        }
    }
    // A directory only named like the agent's is fine.
    assert!(
        problems(&spec(
            json!({"w": sleep(json!({"environment_files": ["/var/lib/xnode-web/env"]}))})
        ))
        .is_empty()
    );
    let s = parse_value(&spec(
        json!({"w": sleep(json!({"environment_files": ["/etc/app/100%.env"]}))}),
    ))
    .unwrap()
    .spec;
    let unit = UnitFile::parse(&render("w", &s.workloads["w"]));
    assert_eq!(
        unit.get("Service", "EnvironmentFile"),
        ["/etc/app/100%%.env"]
    );
}
