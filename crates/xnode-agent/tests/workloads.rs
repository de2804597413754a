//! Drift repair that honours the restart policy: a workload that ran to its end under
//! `no` or `on-failure` stays stopped, shown as exited, and ran once; one stopped by
//! hand is started again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_lab::node::{active, wait_status};
use xnode_lab::runs::runs;

fn state(s: &Value, workload: &str) -> String {
    s["workloads"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == workload))
        .and_then(|w| w["state"].as_str())
        .unwrap_or("-")
        .to_owned()
}

#[test]
fn a_clean_exit_stays_stopped_under_no_and_on_failure_and_a_hand_stop_is_undone() {
    // Up long enough to pass the health gate (up for 2 s, looked at every 250 ms, on a
    // loaded machine), then done.
    let once = |policy: &str| json!({"command": ["/bin/sh", "-c", "echo ran; sleep 10; exit 0"], "restart": {"policy": policy}});
    let spec = json!({"version": 1, "node": {"name": "policies"}, "workloads": {
        "no": once("no"),
        "on-failure": once("on-failure"),
        "stay": {"command": ["/bin/sleep", "infinity"]},
        // Exits 143 on SIGTERM, as a JVM does: stopped by hand, it fails on the way
        // down, and is still started again whatever its policy.
        "graceful": {"command": ["/bin/sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.2; done"],
                     "restart": {"policy": "no"}}
    }});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node(bin.parent().unwrap(), &serde_json::to_vec(&spec).unwrap())
        .unwrap();
    let wait = |what: &str, check: &dyn Fn(&Value) -> bool| {
        wait_status(&c, what, Duration::from_secs(60), check).unwrap_or_else(|e| panic!("{e}"))
    };
    let s = wait("both ran to their end", &|s| {
        s["converged"] == true && state(s, "no") == "exited" && state(s, "on-failure") == "exited"
    });
    assert_eq!(s["generation"]["outcome"]["state"], "healthy", "{s:#}");
    // Several passes later (one every 2 s), still exited: each ran once.
    std::thread::sleep(Duration::from_secs(7));
    let s = wait("still converged", &|s| s["converged"] == true);
    for w in ["no", "on-failure"] {
        assert_eq!(state(&s, w), "exited", "{s:#}");
        let unit = format!("xnode-{w}.service");
        assert_eq!(runs(&c, &unit).unwrap().len(), 1, "{unit} ran once");
        let said = c
            .sh(&format!(
                "journalctl -u {unit} --no-pager -o cat | grep -c '^ran$' || true"
            ))
            .unwrap();
        assert_eq!(said.trim(), "1", "{unit}");
    }
    // Stopped by hand, a workload is started again.
    c.sh("systemctl stop xnode-stay.service").unwrap();
    wait("stay restored", &|_| {
        active(&c, "xnode-stay.service") == "active"
    });
    assert_eq!(runs(&c, "xnode-stay.service").unwrap().len(), 2);
    c.sh("systemctl stop xnode-graceful.service; true").unwrap();
    wait("graceful restored", &|_| {
        active(&c, "xnode-graceful.service") == "active"
            && runs(&c, "xnode-graceful.service").is_ok_and(|r| r.len() == 2)
    });
}
