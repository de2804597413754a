//! The plan, rule by rule: each case is a spec, the units observed on a node, and the
//! exact actions that must come out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::collections::BTreeSet;

use serde_json::{Value, json};
use xnode_spec::plan::{ActiveState, ObservedUnit, Op, Plan, Reason, plan};
use xnode_spec::unit::{self, Difference, compare, render};
use xnode_spec::{Spec, parse_value};

/// An owner: specs that place workloads on the mesh name one.
const OWNER: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn spec(workloads: Value) -> Spec {
    let node = json!({"name": "n1", "owner": OWNER});
    parse_value(&json!({"version": 1, "node": node, "workloads": workloads}))
        .expect("test spec is valid")
        .spec
}

fn web(extra: Value) -> Value {
    let mut w = json!({"command": ["/bin/web", "--port", "80"], "reload": ["/bin/kill", "-HUP", "$MAINPID"]});
    w.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    w
}

/// The unit as the agent would have installed it for `workload` of `s`.
fn installed(s: &Spec, workload: &str, state: ActiveState) -> ObservedUnit {
    ObservedUnit::new(
        unit::unit_name(workload),
        state,
        Some(render(workload, &s.workloads[workload])),
    )
}

/// As [`installed`], with systemd's record of how its process ended.
fn ended(s: &Spec, workload: &str, state: ActiveState, sub: &str, result: &str) -> ObservedUnit {
    ObservedUnit {
        sub_state: Some(sub.into()),
        result: Some(result.into()),
        ..installed(s, workload, state)
    }
}

fn foreign(name: &str, state: ActiveState, file: Option<&str>) -> ObservedUnit {
    ObservedUnit::new(name, state, file.map(str::to_owned))
}

/// The plan as `op unit` lines.
fn steps(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| format!("{} {}", a.op, a.unit))
        .collect()
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

use ActiveState::{Active, Failed, Inactive};

#[test]
fn table() {
    let old = spec(json!({"web": web(json!({}))}));
    let no_restart = spec(json!({"web": web(json!({"restart": {"policy": "no"}}))}));
    let on_abort = spec(json!({"web": web(json!({"restart": {"policy": "on-abort"}}))}));
    let cases: Vec<(&str, Spec, Vec<ObservedUnit>, Vec<&str>)> = vec![
        (
            "new workload is created and started",
            old.clone(),
            vec![],
            vec!["create xnode-web.service", "start xnode-web.service"],
        ),
        (
            "converged: nothing to do",
            old.clone(),
            vec![installed(&old, "web", Active)],
            vec![],
        ),
        (
            "activating counts as running",
            old.clone(),
            vec![installed(&old, "web", ActiveState::Activating)],
            vec![],
        ),
        (
            "stopped by hand: started again",
            old.clone(),
            vec![installed(&old, "web", Inactive)],
            vec!["start xnode-web.service"],
        ),
        (
            "failed: started again",
            old.clone(),
            vec![installed(&old, "web", Failed)],
            vec!["start xnode-web.service"],
        ),
        (
            "exited by itself, cleanly: finished, left alone",
            old.clone(),
            vec![ended(&old, "web", Active, "exited", "success")],
            vec![],
        ),
        (
            "exited, and its definition changed: run again",
            spec(json!({"web": web(json!({"command": ["/bin/web2"]}))})),
            vec![ended(&old, "web", Active, "exited", "success")],
            vec![
                "stop xnode-web.service",
                "update xnode-web.service",
                "start xnode-web.service",
            ],
        ),
        (
            "failed under restart policy no: left failed",
            no_restart.clone(),
            vec![ended(&no_restart, "web", Failed, "failed", "exit-code")],
            vec![],
        ),
        (
            "failed as it was stopped (exit 143 on SIGTERM), under no: started again",
            no_restart.clone(),
            vec![ObservedUnit {
                stopped: true,
                ..ended(&no_restart, "web", Failed, "failed", "exit-code")
            }],
            vec!["start xnode-web.service"],
        ),
        (
            "failed past systemd's start limit: started again",
            no_restart.clone(),
            vec![ended(
                &no_restart,
                "web",
                Failed,
                "failed",
                "start-limit-hit",
            )],
            vec!["start xnode-web.service"],
        ),
        (
            "failed with an exit code, on-abort: left failed",
            on_abort.clone(),
            vec![ended(&on_abort, "web", Failed, "failed", "exit-code")],
            vec![],
        ),
        (
            "killed by a signal, on-abort: started again",
            on_abort.clone(),
            vec![ended(&on_abort, "web", Failed, "failed", "signal")],
            vec!["start xnode-web.service"],
        ),
        (
            "command changed: stop, write, start",
            spec(json!({"web": web(json!({"command": ["/bin/web", "--port", "81"]}))})),
            vec![installed(&old, "web", Active)],
            vec![
                "stop xnode-web.service",
                "update xnode-web.service",
                "start xnode-web.service",
            ],
        ),
        (
            "memory changed: restart too",
            spec(json!({"web": web(json!({"resources": {"memory": "1G"}}))})),
            vec![installed(&old, "web", Active)],
            vec![
                "stop xnode-web.service",
                "update xnode-web.service",
                "start xnode-web.service",
            ],
        ),
        (
            "stop_if_changed false: one restart",
            spec(json!({"web": web(json!({"command": ["/bin/web2"], "stop_if_changed": false}))})),
            vec![installed(&old, "web", Active)],
            vec!["update xnode-web.service", "restart xnode-web.service"],
        ),
        (
            "reload_if_changed: reload instead",
            spec(json!({"web": web(json!({"command": ["/bin/web2"], "reload_if_changed": true}))})),
            vec![installed(&old, "web", Active)],
            vec!["update xnode-web.service", "reload xnode-web.service"],
        ),
        (
            "restart_if_changed false: file only",
            spec(
                json!({"web": web(json!({"command": ["/bin/web2"], "restart_if_changed": false}))}),
            ),
            vec![installed(&old, "web", Active)],
            vec!["update xnode-web.service"],
        ),
        (
            "changed while stopped: write and start",
            spec(json!({"web": web(json!({"command": ["/bin/web2"]}))})),
            vec![installed(&old, "web", Inactive)],
            vec!["update xnode-web.service", "start xnode-web.service"],
        ),
        (
            "only reload triggers changed: reload",
            spec(json!({"web": web(json!({"reload_triggers": ["/etc/web.conf:v2"]}))})),
            vec![installed(&old, "web", Active)],
            vec!["update xnode-web.service", "reload xnode-web.service"],
        ),
        (
            "reload triggers changed while stopped: start",
            spec(json!({"web": web(json!({"reload_triggers": ["v2"]}))})),
            vec![installed(&old, "web", Failed)],
            vec!["update xnode-web.service", "start xnode-web.service"],
        ),
        (
            "workload removed: stop and remove",
            spec(json!({})),
            vec![installed(&old, "web", Active)],
            vec!["stop xnode-web.service", "remove xnode-web.service"],
        ),
        (
            "workload removed while stopped: remove only",
            spec(json!({})),
            vec![installed(&old, "web", Failed)],
            vec!["remove xnode-web.service"],
        ),
        (
            "someone else's unit of ours by name, not in spec: untouched",
            spec(json!({})),
            vec![foreign(
                "xnode-web.service",
                Active,
                Some("[Service]\nExecStart=/bin/web\n"),
            )],
            vec![],
        ),
        (
            "units outside the xnode- prefix are ignored even with a marker",
            spec(json!({})),
            vec![foreign(
                "web.service",
                Active,
                Some("[Unit]\nX-Xnode-Workload=web\n"),
            )],
            vec![],
        ),
        (
            "no file and stopped: created",
            old.clone(),
            vec![foreign("xnode-web.service", Inactive, None)],
            vec!["create xnode-web.service", "start xnode-web.service"],
        ),
        (
            "mesh workload not placed here: its unit kept ready, not started",
            spec(json!({"job": {"command": ["/bin/job"], "placement": {"mesh": {"replicas": 2}}}})),
            vec![],
            vec!["create xnode-job.service"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, spec, observed, want) in cases {
        let got = steps(&plan(&spec, &observed, &none()));
        if got != want {
            failures.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reasons_name_what_changed() {
    let old = spec(json!({"web": web(json!({}))}));
    let new =
        spec(json!({"web": web(json!({"command": ["/bin/web2"], "resources": {"memory": "1G"}}))}));
    let p = plan(&new, &[installed(&old, "web", Active)], &none());
    let keys = vec![
        "Service.ExecStart".to_owned(),
        "Service.MemoryMax".to_owned(),
    ];
    assert!(
        p.actions
            .iter()
            .all(|a| a.reason == Reason::Changed(keys.clone()))
    );
    assert_eq!(
        p.actions[0].reason.to_string(),
        "changed: Service.ExecStart, Service.MemoryMax"
    );
    let update = &p.actions[1];
    assert_eq!(update.op, Op::Update);
    assert_eq!(
        update.content.as_deref(),
        Some(render("web", &new.workloads["web"]).as_str())
    );
    assert!(p.needs_daemon_reload());
}

#[test]
fn a_file_edited_on_disk_is_restored_and_restarted() {
    let s = spec(json!({"web": web(json!({}))}));
    let mut edited = installed(&s, "web", Active);
    edited.file = edited
        .file
        .map(|f| f.replace("ExecStart=/bin/web --port 80", "ExecStart=/bin/evil"));
    let p = plan(&s, &[edited], &none());
    assert_eq!(
        steps(&p),
        [
            "stop xnode-web.service",
            "update xnode-web.service",
            "start xnode-web.service"
        ]
    );
    assert_eq!(
        p.actions[0].reason,
        Reason::Changed(vec!["Service.ExecStart".into()])
    );
}

#[test]
fn a_comment_edit_rewrites_the_file_without_touching_the_process() {
    let s = spec(json!({"web": web(json!({}))}));
    let mut edited = installed(&s, "web", Active);
    edited.file = edited.file.map(|f| {
        format!("# hello\n{f}").replace("Description=xnode workload web", "Description=mine")
    });
    let p = plan(&s, &[edited], &none());
    assert_eq!(steps(&p), ["update xnode-web.service"]);
    assert_eq!(p.actions[0].reason, Reason::Cosmetic);
}

#[test]
fn units_that_are_not_ours_are_refused_and_untouched() {
    let s = spec(json!({"web": web(json!({}))}));
    let cases = [
        (
            foreign(
                "xnode-web.service",
                Active,
                Some("[Unit]\nDescription=hand made\n[Service]\nExecStart=/bin/x\n"),
            ),
            "was not written by xnoded",
        ),
        (
            foreign(
                "xnode-web.service",
                Inactive,
                Some("[Unit]\nX-Xnode-Workload=db\n"),
            ),
            "belongs to workload \"db\"",
        ),
        (
            foreign("xnode-web.service", Active, None),
            "running without a unit file",
        ),
    ];
    for (observed, why) in cases {
        let p = plan(&s, &[observed], &none());
        assert!(p.actions.is_empty(), "{why}: {:?}", p.actions);
        assert_eq!(p.refused.len(), 1);
        assert!(p.refused[0].reason.contains(why), "{}", p.refused[0].reason);
        assert!(p.refused[0].reason.starts_with("xnode-web.service "));
    }
}

#[test]
fn mesh_workloads_follow_placement() {
    let s = spec(json!({"job": {"command": ["/bin/job"], "placement": {"mesh": {"replicas": 1}}}}));
    let here: BTreeSet<String> = ["job".to_owned()].into();
    assert_eq!(
        steps(&plan(&s, &[], &here)),
        ["create xnode-job.service", "start xnode-job.service"]
    );
    let running = installed(&s, "job", Active);
    assert!(plan(&s, std::slice::from_ref(&running), &here).is_empty());
    let moved = plan(&s, std::slice::from_ref(&running), &none());
    assert_eq!(steps(&moved), ["stop xnode-job.service"], "its file stays");
    assert!(
        moved
            .actions
            .iter()
            .all(|a| a.reason == Reason::NotPlacedHere)
    );
    // Placed here again, taking it over is a start: no file to write, no reload.
    let standby = installed(&s, "job", ActiveState::Inactive);
    let back = plan(&s, std::slice::from_ref(&standby), &here);
    assert_eq!(steps(&back), ["start xnode-job.service"]);
    assert!(!back.needs_daemon_reload());
    assert!(plan(&s, &[standby], &none()).is_empty());
    // Gone from the spec, it goes.
    assert_eq!(
        steps(&plan(&spec(json!({})), &[running], &none())),
        ["stop xnode-job.service", "remove xnode-job.service"]
    );
}

#[test]
fn actions_run_in_phases_across_units() {
    let old = spec(json!({"a": web(json!({})), "b": web(json!({})), "gone": web(json!({}))}));
    let new = spec(
        json!({"a": web(json!({"command": ["/bin/a2"]})), "b": web(json!({"command": ["/bin/b2"], "stop_if_changed": false})), "fresh": web(json!({}))}),
    );
    let observed = [
        installed(&old, "a", Active),
        installed(&old, "b", Active),
        installed(&old, "gone", Active),
    ];
    let p = plan(&new, &observed, &none());
    assert_eq!(
        steps(&p),
        [
            "stop xnode-a.service",
            "stop xnode-gone.service",
            "remove xnode-gone.service",
            "create xnode-fresh.service",
            "update xnode-a.service",
            "update xnode-b.service",
            "restart xnode-b.service",
            "start xnode-a.service",
            "start xnode-fresh.service",
        ]
    );
}

#[test]
fn an_empty_plan_needs_no_daemon_reload() {
    let s = spec(json!({"web": web(json!({}))}));
    let p = plan(&s, &[installed(&s, "web", Active)], &none());
    assert!(p.is_empty());
    assert!(!p.needs_daemon_reload());
}

#[test]
fn compare_follows_switch_to_configuration() {
    let base = "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/a\nEnvironment=\"A=1\"\n";
    let cases = [
        (base, Difference::None),
        (
            "# c\n[Unit]\nDescription=b\nX-Xnode-Workload=w\n\n[Service]\nExecStart=/bin/a\nEnvironment=\"A=1\"\n",
            Difference::Cosmetic,
        ),
        (
            "[Unit]\nDescription=a\nX-Xnode-Workload=w\nX-Reload-Triggers=v2\n[Service]\nExecStart=/bin/a\nEnvironment=\"A=1\"\n",
            Difference::Reload,
        ),
        (
            "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/b\nEnvironment=\"A=1\"\n",
            Difference::Restart(vec!["Service.ExecStart".into()]),
        ),
        (
            "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/a\n",
            Difference::Restart(vec!["Service.Environment".into()]),
        ),
        (
            "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/a\nEnvironment=\"A=1\"\nX-StopIfChanged=false\n",
            Difference::Cosmetic,
        ),
        (
            "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/a\nEnvironment=\"A=1\"\n[Install]\nWantedBy=x\n",
            Difference::Restart(vec!["[Install]".into()]),
        ),
        (
            "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/a \\\n  --flag\nEnvironment=\"A=1\"\n",
            Difference::Restart(vec!["Service.ExecStart".into()]),
        ),
    ];
    for (installed, want) in cases {
        assert_eq!(compare(installed, base), want, "{installed}");
    }
    // What an agent that adds the lease and RemainAfterExit= writes differs only in
    // keys a running process does not see: rewritten, not restarted.
    let leased = "[Unit]\nDescription=a\nX-Xnode-Workload=w\nBindsTo=xnoded-lease.service\nAfter=xnoded-lease.service\n[Service]\nExecStart=/bin/a\nEnvironment=\"A=1\"\nRemainAfterExit=yes\nTimeoutStopSec=400ms\n";
    assert_eq!(compare(base, leased), Difference::Cosmetic);
    // A continuation joins lines, as systemd reads them.
    let joined = "[Unit]\nDescription=a\nX-Xnode-Workload=w\n[Service]\nExecStart=/bin/a \\\n\nEnvironment=\"A=1\"\n";
    assert_eq!(compare(joined, base), Difference::Cosmetic);
}
