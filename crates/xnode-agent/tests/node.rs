//! xnoded as it runs on a node: a Type=notify systemd service in a lab container,
//! watching its spec file and answering its API, with faults thrown at it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::Container;
use xnode_lab::node::{active, api, generation};

/// A container with xnoded installed and started on `spec`.
fn node(spec: &Value) -> Container {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    xnode_lab::node::boot_node(
        bin.parent().unwrap(),
        &serde_json::to_vec_pretty(spec).unwrap(),
    )
    .unwrap()
}

fn status(c: &Container) -> Value {
    api(c, Request::Status).unwrap()
}

fn write_spec(c: &Container, bytes: &[u8]) {
    xnode_lab::node::write_spec(c, bytes).unwrap();
}

/// Waits until `check` holds for the node's status.
fn wait_for(c: &Container, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    xnode_lab::node::wait_status(c, what, Duration::from_secs(60), check)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn spec(workloads: Value) -> Value {
    json!({"version": 1, "node": {"name": "lab-node"}, "workloads": workloads})
}

fn sleeper() -> Value {
    json!({"command": ["/bin/sleep", "infinity"]})
}

/// The metrics page, from the address `status` reports (containers share the host's
/// loopback).
fn metrics(status: &Value) -> String {
    use std::io::{Read as _, Write as _};
    let addr = status["metrics_address"].as_str().unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page
}

fn is_path(p: &Path) -> bool {
    p.exists()
}

#[test]
fn a_node_converges_to_its_spec_file_and_reports_it() {
    let c = node(&spec(json!({"a": sleeper(), "b": sleeper()})));
    // Type=notify: the start job finished only after the first reconcile.
    assert_eq!(active(&c, "xnoded.service"), "active");
    let s = wait_for(&c, "convergence", |s| s["converged"] == true);
    assert_eq!(s["node"], "lab-node");
    assert_eq!(generation(&s), 1);
    assert_eq!(s["generation"]["outcome"]["state"], "healthy");
    assert_eq!(s["generation"]["source"]["kind"], "file");
    assert_eq!(active(&c, "xnode-a.service"), "active");
    assert!(is_path(&c.path("/var/lib/xnode/generations/1.json")));

    // A new spec file is a new generation.
    write_spec(
        &c,
        &serde_json::to_vec(&spec(json!({"a": sleeper(), "c": sleeper()}))).unwrap(),
    );
    let s = wait_for(&c, "generation 2", |s| {
        generation(s) == 2 && s["converged"] == true
    });
    assert_eq!(s["workloads"].as_array().unwrap().len(), 2);
    assert_eq!(active(&c, "xnode-b.service"), "inactive");
    assert_eq!(active(&c, "xnode-c.service"), "active");

    // A workload's logs come from the journal.
    write_spec(&c, &serde_json::to_vec(&spec(json!({"a": sleeper(), "c": sleeper(), "talker": {"command": ["/bin/sh", "-c", "echo hello from talker; sleep infinity"]}}))).unwrap());
    wait_for(&c, "generation 3", |s| {
        generation(s) == 3 && s["converged"] == true
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = api(
            &c,
            Request::Logs {
                workload: "talker".into(),
                lines: 10,
            },
        )
        .unwrap();
        if lines
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "hello from talker")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no log line: {lines:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = api(
        &c,
        Request::Logs {
            workload: "nope".into(),
            lines: 10,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no workload \"nope\""), "{err}");

    // Drift is undone by the periodic pass.
    c.sh("systemctl stop xnode-a.service").unwrap();
    wait_for(&c, "a restarted", |_| {
        active(&c, "xnode-a.service") == "active"
    });
}

#[test]
fn garbage_in_the_spec_file_is_rejected_and_changes_nothing() {
    let c = node(&spec(json!({"a": sleeper()})));
    wait_for(&c, "convergence", |s| s["converged"] == true);
    let id = c
        .sh("systemctl show -p InvocationID --value xnode-a.service")
        .unwrap();
    write_spec(
        &c,
        b"{\"version\": 1, \"node\": {\"name\": \"lab node\"}, \"workloads\": 7}",
    );
    let s = wait_for(&c, "the rejection", |s| !s["spec_file"]["error"].is_null());
    let error = s["spec_file"]["error"].as_str().unwrap();
    assert!(
        error.contains("node.name") && error.contains("workloads: expected an object"),
        "{error}"
    );
    assert_eq!(generation(&s), 1);
    assert_eq!(s["converged"], true);
    assert_eq!(
        c.sh("systemctl show -p InvocationID --value xnode-a.service")
            .unwrap(),
        id
    );
    let logged = c
        .sh("journalctl -u xnoded.service --no-pager -o cat")
        .unwrap();
    assert!(logged.contains("the spec file is rejected"), "{logged}");
}

#[test]
fn an_unhealthy_apply_through_the_api_is_rolled_back() {
    let c = node(&spec(json!({"a": sleeper(), "b": sleeper()})));
    wait_for(&c, "convergence", |s| s["converged"] == true);
    let ids = || {
        c.sh("systemctl show -p InvocationID --value xnode-a.service xnode-b.service")
            .unwrap()
    };
    let before = ids();
    let bad = spec(json!({
        "a": sleeper(),
        "b": {"command": ["/bin/sh", "-c", "sleep 0.3; exit 1"], "restart": {"policy": "no"}},
        "extra": sleeper()
    }));
    let result = api(
        &c,
        Request::Apply {
            spec: bad,
            no_rollback: false,
        },
    )
    .unwrap();
    assert_eq!(result["outcome"]["state"], "rolled_back", "{result:#}");
    assert!(
        result["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("b: failed (exit status 1)"),
        "{result:#}"
    );
    let s = wait_for(&c, "convergence after the rollback", |s| {
        s["converged"] == true
    });
    assert_eq!(generation(&s), 3);
    assert_eq!(s["generation"]["source"]["kind"], "rollback");
    assert_eq!(active(&c, "xnode-extra.service"), "inactive");
    assert!(!is_path(&c.path("/run/systemd/system/xnode-extra.service")));
    assert_eq!(active(&c, "xnode-b.service"), "active");
    assert_ne!(ids(), before, "b was restarted with its good command");
    let history = api(&c, Request::History).unwrap();
    let outcomes: Vec<&str> = history["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["outcome"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["healthy", "rolled_back", "healthy"]);
    let page = metrics(&s);
    for line in [
        "xnode_rollbacks_total 1",
        "xnode_failed_applies_total 1",
        "xnode_generation 3",
    ] {
        assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
    }
    assert!(page.contains("xnode_units{state=\"active\"} 2"), "{page}");
    for line in [
        "xnode_applies_total{outcome=\"rolled_back\"} 1",
        "xnode_converged 1",
        "xnode_workload_up{workload=\"b\"} 1",
        concat!(
            "xnode_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1"
        ),
    ] {
        assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
    }

    // A bad request is refused with the spec's own problems, and changes nothing.
    let err = api(
        &c,
        Request::Apply {
            spec: json!({"version": 1}),
            no_rollback: false,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("node: missing"), "{err}");
    assert_eq!(generation(&status(&c)), 3);
}

#[test]
fn killed_in_the_middle_of_an_apply_it_converges_on_restart() {
    let c = node(&spec(json!({"a": sleeper()})));
    wait_for(&c, "convergence", |s| s["converged"] == true);
    // A workload that takes a while to pass its probe keeps the apply in its health gate.
    let slow = spec(json!({
        "a": sleeper(),
        "slow": {"command": ["/bin/sleep", "infinity"], "health": {"timeout": "20s", "tcp": {"port": 1}}},
        "fresh": sleeper()
    }));
    let socket = c.path("/run/xnode/api.sock");
    let applying = std::thread::spawn(move || {
        xnode_api::call::<serde_json::Value>(
            &socket,
            Request::Apply {
                spec: slow,
                no_rollback: false,
            },
            Duration::from_secs(60),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while active(&c, "xnode-fresh.service") != "active" {
        assert!(
            Instant::now() < deadline,
            "the apply never started its units"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.sh("systemctl kill --kill-who=main --signal=SIGKILL xnoded.service")
        .unwrap();
    assert!(
        applying.join().unwrap().is_err(),
        "the client saw the agent die"
    );
    // systemd restarts it; it finishes generation 2 (unhealthy: nothing listens on
    // port 1) by rolling back to generation 1, with no unit left over.
    let s = wait_for(&c, "the interrupted generation settled", |s| {
        s["converged"] == true && generation(s) == 3
    });
    assert_eq!(s["generation"]["source"]["to"], 1);
    let history = api(&c, Request::History).unwrap();
    assert_eq!(history["generations"][1]["outcome"]["state"], "rolled_back");
    for gone in ["xnode-slow.service", "xnode-fresh.service"] {
        assert_eq!(active(&c, gone), "inactive", "{gone}");
        assert!(
            !is_path(&c.path(format!("/run/systemd/system/{gone}"))),
            "{gone} orphaned"
        );
    }
    assert_eq!(active(&c, "xnode-a.service"), "active");
}

#[test]
fn after_dbus_restarts_under_it_it_reconnects_and_carries_on() {
    let c = node(&spec(json!({"a": sleeper()})));
    wait_for(&c, "convergence", |s| s["converged"] == true);
    c.sh("systemctl restart dbus.service").unwrap();
    write_spec(
        &c,
        &serde_json::to_vec(&spec(json!({"a": sleeper(), "b": sleeper()}))).unwrap(),
    );
    let s = wait_for(&c, "generation 2 after the bus restart", |s| {
        generation(s) == 2 && s["converged"] == true
    });
    assert_eq!(s["generation"]["outcome"]["state"], "healthy");
    assert_eq!(active(&c, "xnode-b.service"), "active");
    assert_eq!(active(&c, "xnoded.service"), "active", "it did not crash");
    let logged = c
        .sh("journalctl -u xnoded.service --no-pager -o cat")
        .unwrap();
    assert!(logged.contains("connected to systemd again"), "{logged}");
}

#[test]
fn a_full_state_dir_is_a_clear_error_and_the_previous_generation_stays() {
    let c = node(&spec(json!({"a": sleeper()})));
    wait_for(&c, "convergence", |s| s["converged"] == true);
    // The state dir moves onto a 64 KiB tmpfs, filled to the brim.
    c.sh(
        "systemctl stop xnoded.service && cp -a /var/lib/xnode /run/xnode-state \
          && mount -t tmpfs -o size=64k,mode=0700 xnode-state /var/lib/xnode \
          && cp -a /run/xnode-state/. /var/lib/xnode/ \
          && (dd if=/dev/zero of=/var/lib/xnode/filler bs=1k count=1024 2>/dev/null || true) \
          && systemctl start xnoded.service",
    )
    .unwrap();
    wait_for(&c, "the agent back", |s| {
        generation(s) == 1 && s["converged"] == true
    });
    let bigger = spec(json!({"a": sleeper(), "b": sleeper()}));
    let err = api(
        &c,
        Request::Apply {
            spec: bigger,
            no_rollback: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("No space left on device"), "{err}");
    let s = status(&c);
    assert_eq!(
        generation(&s),
        1,
        "the previous generation is still in force"
    );
    assert_eq!(s["converged"], true);
    assert_eq!(active(&c, "xnode-b.service"), "inactive");
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("/var/lib/xnode/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["current"], 1, "state.json is whole and unchanged");
    let leftovers = c
        .sh("ls -A /var/lib/xnode /var/lib/xnode/generations")
        .unwrap();
    assert!(!leftovers.contains(".tmp"), "{leftovers}");
}

#[test]
fn a_unit_stopped_by_hand_is_restarted_on_the_systemd_event_not_the_timer() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let s = serde_json::to_vec(&spec(json!({"a": sleeper(), "b": sleeper()}))).unwrap();
    // An hour between timed passes: only the unit's own change can bring it back.
    let flags = "--file-poll 200 --interval 3600 --metrics-address 127.0.0.1:0 --no-mesh";
    let c = xnode_lab::node::boot_node_with(bin.parent().unwrap(), &s, flags).unwrap();
    wait_for(&c, "convergence", |s| s["converged"] == true);
    std::thread::sleep(Duration::from_secs(1));
    let before = c
        .sh("systemctl show -p InvocationID --value xnode-a.service")
        .unwrap();
    c.sh("systemctl stop xnode-a.service").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while active(&c, "xnode-a.service") != "active" {
        assert!(Instant::now() < deadline, "not restarted on the event");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        c.sh("systemctl show -p InvocationID --value xnode-a.service")
            .unwrap(),
        before
    );
    // And the agent does not spin: a few passes for the stop and start, not hundreds.
    std::thread::sleep(Duration::from_secs(3));
    let page = metrics(&status(&c));
    let passes: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("xnode_reconciles_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(passes < 20.0, "{passes} passes");
}

#[test]
fn store_paths_are_realised_from_the_nodes_nix_and_a_missing_one_is_an_error() {
    let c = node(&spec(json!({"a": sleeper()})));
    wait_for(&c, "convergence", |s| s["converged"] == true);
    // A real store path in the container's Nix store: a program that stays up.
    let program = c
        .sh("printf '#!/bin/sh\\nexec /bin/sleep infinity\\n' > /tmp/app && chmod 755 /tmp/app && nix-store --add /tmp/app")
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        program.starts_with("/nix/store/") && program.ends_with("-app"),
        "{program}"
    );
    // The lab's Nix has no substituters, so this one cannot be had.
    let missing = "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-missing-1.0";
    write_spec(
        &c,
        &serde_json::to_vec(&spec(json!({
            "a": sleeper(),
            "app": {"command": [program], "store_paths": [program]},
            "broken": {"command": ["/bin/sleep", "infinity"], "store_paths": [missing]}
        })))
        .unwrap(),
    );
    let s = wait_for(&c, "generation 2", |s| {
        generation(s) == 2 && s["generation"]["outcome"]["state"] == "healthy"
    });
    let workload = |name: &str| {
        s["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()
            .clone()
    };
    let app = workload("app");
    assert_eq!(app["active_state"], "active", "{app:#}");
    assert!(app["error"].is_null(), "{app:#}");
    let broken = workload("broken");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("nix-store --realise failed"),
        "{broken:#}"
    );
    assert_eq!(broken["active_state"], "absent");
    assert_eq!(active(&c, "xnode-a.service"), "active");
    assert_eq!(s["converged"], false, "the spec is not wholly in force");
    // Restarted, the agent still does not start what it cannot realise.
    c.sh("systemctl restart xnoded.service").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(active(&c, "xnode-broken.service"), "inactive");
    assert!(!is_path(
        &c.path("/run/systemd/system/xnode-broken.service")
    ));
    assert_eq!(active(&c, "xnode-app.service"), "active");
}
