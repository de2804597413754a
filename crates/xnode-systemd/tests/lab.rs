//! xnode-systemd against a real systemd: PID 1 of a container from xnode-lab, driven
//! over the container's system bus from this process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_lab::Container;
use xnode_spec::plan::{ActiveState, Op, Plan, plan};
use xnode_spec::unit::{render, unit_name};
use xnode_spec::{Spec, parse_value};
use xnode_systemd::{
    ApplyOptions, ApplyReport, Bus, Config, Error, JobResult, StepOutcome, Systemd,
};

fn spec(workloads: Value) -> Spec {
    parse_value(&json!({"version": 1, "node": {"name": "lab"}, "workloads": workloads}))
        .expect("valid spec")
        .spec
}

fn sleeper() -> Value {
    json!({"command": ["/bin/sleep", "infinity"]})
}

async fn connect(c: &Container) -> Systemd {
    Systemd::connect(&Config {
        bus: Bus::Address(c.bus_address()),
        root: c.root(),
    })
    .await
    .expect("the container's systemd answers")
}

async fn plan_for(sd: &Systemd, s: &Spec) -> Plan {
    plan(s, &sd.observe().await.unwrap(), &BTreeSet::new())
}

async fn reconcile(sd: &Systemd, s: &Spec) -> (Plan, ApplyReport) {
    let p = plan_for(sd, s).await;
    let report = sd.apply(&p, &ApplyOptions::default()).await.expect("apply");
    (p, report)
}

/// A property as `systemctl show` prints it: test-side observation only.
fn show(c: &Container, unit: &str, property: &str) -> String {
    c.sh(&format!("systemctl show -p {property} --value {unit}"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A unit's journal with systemd's own messages about it, for a failure's message.
fn journal(c: &Container, unit: &str) -> String {
    c.sh(&format!(
        "journalctl -u {unit} -o short-monotonic --no-pager | tail -n 40"
    ))
    .unwrap_or_default()
}

fn ops(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| format!("{} {}", a.op, a.unit))
        .collect()
}

async fn wait_for_state(sd: &Systemd, unit: &str, state: &str) -> xnode_systemd::UnitStatus {
    for _ in 0..100 {
        let s = sd.status(unit).await.unwrap();
        if s.active_state == state {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{unit} never became {state}");
}

#[tokio::test]
async fn three_workloads_from_nothing_all_active_and_a_reapply_does_nothing() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    let s = spec(json!({"a": sleeper(), "b": sleeper(), "c": sleeper()}));
    let (p, report) = reconcile(&sd, &s).await;
    assert_eq!(p.actions.len(), 6);
    assert!(report.all_done(), "{report:#?}");
    assert!(report.daemon_reloaded);
    for unit in ["xnode-a.service", "xnode-b.service", "xnode-c.service"] {
        let st = report.units.iter().find(|u| u.name == unit).unwrap();
        assert_eq!(
            (st.active_state.as_str(), st.sub_state.as_str()),
            ("active", "running"),
            "{unit}"
        );
        assert_eq!(show(&c, unit, "Slice"), "xnode.slice");
        assert_eq!(show(&c, unit, "DynamicUser"), "yes");
        let file = std::fs::read_to_string(c.path(format!("/run/systemd/system/{unit}"))).unwrap();
        assert_eq!(file, render(&unit[6..7], &s.workloads[&unit[6..7]]));
    }
    let before = sd.mutations();
    let (again, report) = reconcile(&sd, &s).await;
    assert!(again.is_empty(), "{:?}", ops(&again));
    assert_eq!(report, ApplyReport::default());
    assert_eq!(
        sd.mutations(),
        before,
        "a no-op re-apply makes no mutating call"
    );
}

#[tokio::test]
async fn a_changed_command_restarts_only_its_unit_and_a_trigger_reloads() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    let hup = json!({
        "command": ["/bin/sh", "-c", "trap 'echo reloaded' HUP; while :; do sleep 1 & wait; done"],
        "reload": ["/bin/sh", "-c", "kill -HUP $MAINPID"],
        "reload_triggers": ["v1"]
    });
    let s1 = spec(json!({"a": sleeper(), "b": sleeper(), "r": hup}));
    reconcile(&sd, &s1).await;
    let ids = |c: &Container| ["a", "b", "r"].map(|w| show(c, &unit_name(w), "InvocationID"));
    let before = ids(&c);
    let main_pid_r = show(&c, "xnode-r.service", "MainPID");

    let mut s2 = s1.clone();
    s2.workloads.get_mut("a").unwrap().command = vec!["/bin/sleep".into(), "100000".into()];
    let (p, report) = reconcile(&sd, &s2).await;
    assert_eq!(
        ops(&p),
        [
            "stop xnode-a.service",
            "update xnode-a.service",
            "start xnode-a.service"
        ]
    );
    assert!(
        report.all_done(),
        "{report:#?}\n{}",
        journal(&c, "xnode-a.service")
    );
    let after = ids(&c);
    assert_ne!(after[0], before[0], "a restarted");
    assert_eq!(after[1..], before[1..], "b and r untouched");
    assert_eq!(show(&c, "xnode-a.service", "ExecMainStatus"), "0");

    let mut s3 = s2.clone();
    s3.workloads.get_mut("r").unwrap().reload_triggers = vec!["v2".into()];
    let (p, report) = reconcile(&sd, &s3).await;
    assert_eq!(
        ops(&p),
        ["update xnode-r.service", "reload xnode-r.service"]
    );
    assert!(report.all_done(), "{report:#?}");
    assert_eq!(ids(&c), after, "a reload is not a restart");
    assert_eq!(show(&c, "xnode-r.service", "MainPID"), main_pid_r);
    assert_eq!(
        wait_for_state(&sd, "xnode-r.service", "active")
            .await
            .sub_state,
        "running"
    );
}

#[tokio::test]
async fn a_removed_workload_is_stopped_and_its_file_deleted() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    reconcile(&sd, &spec(json!({"a": sleeper(), "b": sleeper()}))).await;
    let (p, report) = reconcile(&sd, &spec(json!({"a": sleeper()}))).await;
    assert_eq!(ops(&p), ["stop xnode-b.service", "remove xnode-b.service"]);
    assert!(report.all_done(), "{report:#?}");
    assert!(!c.path("/run/systemd/system/xnode-b.service").exists());
    assert_eq!(show(&c, "xnode-b.service", "ActiveState"), "inactive");
    assert_eq!(show(&c, "xnode-b.service", "LoadState"), "not-found");
    assert_eq!(show(&c, "xnode-a.service", "ActiveState"), "active");
    let observed = sd.observe().await.unwrap();
    assert!(
        observed
            .iter()
            .all(|u| u.name != "xnode-b.service" || u.file.is_none())
    );
}

#[tokio::test]
async fn drift_by_hand_is_undone_by_the_next_apply() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    let s = spec(json!({"a": sleeper(), "b": sleeper()}));
    reconcile(&sd, &s).await;

    c.sh("systemctl stop xnode-a.service").unwrap();
    let (p, report) = reconcile(&sd, &s).await;
    assert_eq!(ops(&p), ["start xnode-a.service"]);
    assert!(report.all_done());
    assert_eq!(show(&c, "xnode-a.service", "ActiveState"), "active");

    let path = c.path("/run/systemd/system/xnode-b.service");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        original.replace("ExecStart=/bin/sleep infinity", "ExecStart=/bin/sleep 7"),
    )
    .unwrap();
    c.sh("systemctl daemon-reload && systemctl restart xnode-b.service")
        .unwrap();
    assert!(show(&c, "xnode-b.service", "ExecStart").contains("argv[]=/bin/sleep 7 "));
    let (p, report) = reconcile(&sd, &s).await;
    assert_eq!(
        ops(&p),
        [
            "stop xnode-b.service",
            "update xnode-b.service",
            "start xnode-b.service"
        ]
    );
    assert!(report.all_done());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert!(show(&c, "xnode-b.service", "ExecStart").contains("infinity"));
}

#[tokio::test]
async fn a_unit_that_is_not_ours_is_refused_and_untouched() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    c.sh("printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/xnode-web.service && systemctl daemon-reload && systemctl start xnode-web.service").unwrap();
    let id = show(&c, "xnode-web.service", "InvocationID");
    let s = spec(json!({"web": {"command": ["/bin/sleep", "5"]}, "other": sleeper()}));
    let (p, report) = reconcile(&sd, &s).await;
    assert_eq!(p.refused.len(), 1);
    assert!(p.refused[0].reason.contains("was not written by xnoded"));
    assert!(report.steps.iter().all(|s| s.unit == "xnode-other.service"));
    assert_eq!(show(&c, "xnode-web.service", "InvocationID"), id);
    assert_eq!(
        std::fs::read_to_string(c.path("/etc/systemd/system/xnode-web.service")).unwrap(),
        "[Service]\nExecStart=/bin/sleep infinity\n"
    );
    assert!(!c.path("/run/systemd/system/xnode-web.service").exists());

    // A foreign file that systemd has not loaded yet, in a directory that takes
    // precedence, would run instead of ours: refused before anything changes.
    c.sh(
        "printf '[Service]\\nExecStart=/bin/sleep 1\\n' > /etc/systemd/system/xnode-hidden.service",
    )
    .unwrap();
    let p = plan_for(&sd, &spec(json!({"hidden": sleeper(), "other": sleeper()}))).await;
    assert_eq!(
        ops(&p),
        ["create xnode-hidden.service", "start xnode-hidden.service"]
    );
    match sd.apply(&p, &ApplyOptions::default()).await {
        Err(e @ Error::Shadowed { .. }) => assert!(
            e.to_string()
                .contains("/etc/systemd/system/xnode-hidden.service"),
            "{e}"
        ),
        other => panic!("expected Shadowed, got {other:?}"),
    }
    assert!(!c.path("/run/systemd/system/xnode-hidden.service").exists());

    // A foreign file that appears after the plan was made is not overwritten either.
    let p = plan_for(&sd, &spec(json!({"late": sleeper(), "other": sleeper()}))).await;
    c.sh("printf '[Service]\\nExecStart=/bin/true\\n' > /run/systemd/system/xnode-late.service")
        .unwrap();
    let before = sd.mutations();
    match sd.apply(&p, &ApplyOptions::default()).await {
        Err(Error::NotOwned { workload, .. }) => assert_eq!(workload, "late"),
        other => panic!("expected NotOwned, got {other:?}"),
    }
    assert_eq!(sd.mutations(), before);
    assert_eq!(
        std::fs::read_to_string(c.path("/run/systemd/system/xnode-late.service")).unwrap(),
        "[Service]\nExecStart=/bin/true\n"
    );
}

#[tokio::test]
async fn a_failing_workload_is_reported_with_its_exit_status_and_the_others_run() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    let s = spec(json!({
        "ok": sleeper(),
        "exits": {"command": ["/bin/sh", "-c", "sleep 0.2; exit 1"], "restart": {"policy": "no"}},
        "missing": {"command": ["/nonexistent/program"], "restart": {"policy": "no"}}
    }));
    let (_, report) = reconcile(&sd, &s).await;
    let job = |unit: &str| {
        report
            .steps
            .iter()
            .find(|s| s.unit == unit && s.op == Op::Start)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(job("xnode-ok.service"), StepOutcome::Job(JobResult::Done));
    assert_eq!(
        job("xnode-missing.service"),
        StepOutcome::Job(JobResult::Failed)
    );
    let missing = report
        .units
        .iter()
        .find(|u| u.name == "xnode-missing.service")
        .unwrap();
    assert_eq!(missing.active_state, "failed");
    assert_eq!(missing.exit_status, 203, "systemd's EXIT_EXEC");
    let exits = wait_for_state(&sd, "xnode-exits.service", "failed").await;
    assert_eq!(
        (exits.result.as_str(), exits.exit_code, exits.exit_status),
        ("exit-code", Some("exited"), 1)
    );
    assert_eq!(
        sd.status("xnode-ok.service").await.unwrap().active_state,
        "active"
    );
    let observed = sd.observe().await.unwrap();
    let unit = |n: &str| observed.iter().find(|u| u.name == n).unwrap();
    assert_eq!(
        unit("xnode-exits.service").active_state,
        ActiveState::Failed
    );
    assert_eq!(
        unit("xnode-exits.service").result.as_deref(),
        Some("exit-code")
    );
    assert_eq!(
        unit("xnode-ok.service").sub_state.as_deref(),
        Some("running")
    );
    // Their restart policy is `no`: the next pass leaves them failed.
    assert!(plan_for(&sd, &s).await.is_empty());
    // Under `on-failure` the planner starts them again.
    let again = spec(json!({
        "ok": sleeper(),
        "exits": {"command": ["/bin/sh", "-c", "sleep 0.2; exit 1"], "restart": {"policy": "no"}},
        "missing": {"command": ["/nonexistent/program"], "restart": {"policy": "on-failure"}}
    }));
    let p = plan_for(&sd, &again).await;
    assert_eq!(
        ops(&p),
        [
            "update xnode-missing.service",
            "start xnode-missing.service"
        ]
    );
}

#[tokio::test]
async fn a_read_only_run_is_a_clear_error_and_changes_nothing() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    reconcile(&sd, &spec(json!({"a": sleeper()}))).await;
    let id = show(&c, "xnode-a.service", "InvocationID");
    c.sh("mount --bind /run/systemd/system /run/systemd/system && mount -o remount,bind,ro /run/systemd/system").unwrap();
    let s = spec(json!({"a": {"command": ["/bin/sleep", "99"]}, "b": sleeper()}));
    let p = plan_for(&sd, &s).await;
    let before = sd.mutations();
    let err = sd.apply(&p, &ApplyOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
    assert!(
        err.to_string().contains("Read-only file system")
            && err.to_string().contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(sd.mutations(), before);
    assert_eq!(
        show(&c, "xnode-a.service", "InvocationID"),
        id,
        "a was not stopped"
    );
    assert_eq!(show(&c, "xnode-b.service", "LoadState"), "not-found");
    c.sh("umount /run/systemd/system").unwrap();
    let leftovers = c.sh("ls -A /run/systemd/system").unwrap();
    assert!(!leftovers.contains(".xnode-new"), "{leftovers}");
    let (_, report) = reconcile(&sd, &s).await;
    assert!(
        report.all_done(),
        "once writable again, the apply goes through"
    );
}

#[tokio::test]
async fn a_job_that_outlives_the_deadline_is_cancelled_and_reported() {
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    let stubborn = json!({"command": ["/bin/sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 1; done"]});
    reconcile(&sd, &spec(json!({"stubborn": stubborn, "a": sleeper()}))).await;
    // Stopped before its shell ignores TERM, it would simply end: wait for the trap.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while c
        .sh("journalctl -u xnode-stubborn.service -o cat --no-pager | grep -qx trapped")
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stubborn unit never set its trap"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = plan_for(&sd, &spec(json!({}))).await;
    let options = ApplyOptions {
        job_timeout: Duration::from_secs(2),
    };
    let started = std::time::Instant::now();
    let report = sd.apply(&p, &options).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the apply did not wait for systemd's 90 s stop timeout"
    );
    let stop = |u: &str| {
        report
            .steps
            .iter()
            .find(|s| s.unit == u && s.op == Op::Stop)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(
        stop("xnode-stubborn.service"),
        StepOutcome::Job(JobResult::NoAnswer)
    );
    assert_eq!(stop("xnode-a.service"), StepOutcome::Job(JobResult::Done));
    assert!(!report.all_done());
}

#[tokio::test]
async fn an_unreachable_systemd_is_a_clear_error() {
    let err = Systemd::connect(&Config {
        bus: Bus::Address("unix:path=/nonexistent/xnode-test/bus".into()),
        root: "/".into(),
    })
    .await
    .err()
    .expect("no bus there");
    assert!(matches!(err, Error::Unreachable { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot reach systemd on unix:path=/nonexistent/xnode-test/bus"),
        "{err}"
    );
}

#[tokio::test]
async fn more_units_than_the_bus_allows_pending_calls_all_start() {
    // dbus-daemon refuses more than 128 pending replies per connection.
    let c = Container::boot().unwrap();
    let sd = connect(&c).await;
    let workloads: serde_json::Map<String, Value> =
        (0..150).map(|i| (format!("w{i}"), sleeper())).collect();
    let s = spec(Value::Object(workloads));
    let (_, report) = reconcile(&sd, &s).await;
    assert!(
        report.all_done(),
        "{:?}",
        report.steps.iter().find(|s| !matches!(
            s.outcome,
            StepOutcome::Written | StepOutcome::Job(JobResult::Done)
        ))
    );
    assert_eq!(
        report
            .units
            .iter()
            .filter(|u| u.active_state == "active")
            .count(),
        150
    );
    assert_eq!(sd.observe().await.unwrap().len(), 150);
    assert!(plan_for(&sd, &s).await.is_empty());
}
