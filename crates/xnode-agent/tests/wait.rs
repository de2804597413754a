//! `xnodectl wait` and `xnodectl status --watch` against xnoded under systemd: a wait
//! for a generation ends when it converged, fails when it was rolled back, and the
//! watch prints the status; an apply's progress and the node's changes are streamed
//! (`xnodectl events`), `apply --detach` leaves the apply to run; `XNODE_SOCKET` names
//! the socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;

use serde_json::json;
use std::time::Duration;

use xnode_lab::node::{boot_node, wait_status, write_spec};

fn spec(workloads: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"version": 1, "node": {"name": "waiting"}, "workloads": workloads}))
        .unwrap()
}

/// Runs xnodectl in the container: (exit code, standard output and error).
fn xnodectl(c: &xnode_lab::Container, args: &str) -> (i32, String) {
    let out = c
        .exec(&["/bin/sh", "-c", &format!("/opt/xnode/xnodectl {args} 2>&1")])
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn xnodectl_waits_for_a_generation_and_watches_the_status() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let dir = bin.parent().unwrap();
    assert!(
        dir.join("xnodectl").exists(),
        "this test runs xnodectl: cargo build -p xnodectl"
    );
    let c = boot_node(
        dir,
        &spec(json!({"a": {"command": ["/bin/sleep", "infinity"]}})),
    )
    .unwrap();
    // Generation 1 first, so that the next spec file is generation 2.
    wait_status(&c, "generation 1", Duration::from_secs(60), |s| {
        s["converged"] == true && s["generation"]["number"] == 1
    })
    .unwrap();

    // A workload that takes a few seconds to answer its probe: the wait sees the apply
    // and ends once generation 2 converged.
    write_spec(
        &c,
        &spec(json!({
            "a": {"command": ["/bin/sleep", "infinity"]},
            "slow": {"command": ["/bin/sh", "-c",
                        "sleep 3; exec /usr/bin/systemd-socket-activate -l 127.0.0.1:9231 --inetd -a /bin/true"],
                     "health": {"tcp": {"port": 9231}}}
        })),
    )
    .unwrap();
    let (code, out) = xnodectl(&c, "wait --generation 2 --timeout 120");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.trim_end()
            .ends_with("The node converged on generation 2."),
        "{out}"
    );

    // A generation that never becomes healthy is rolled back: the wait for it fails,
    // and says why.
    write_spec(
        &c,
        &spec(json!({
            "a": {"command": ["/bin/sleep", "infinity"]},
            "bad": {"command": ["/bin/sleep", "infinity"],
                    "health": {"tcp": {"port": 9232}, "timeout": "3s"}}
        })),
    )
    .unwrap();
    let (code, out) = xnodectl(&c, "wait --generation 3 --timeout 120");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("generation 3 was unhealthy and was rolled back"),
        "{out}"
    );
    let (code, out) = xnodectl(&c, "wait --timeout 60");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("converged on generation 4"), "{out}");

    // An apply shows its progress while its workloads come up.
    let next = spec(json!({
        "a": {"command": ["/bin/sleep", "infinity"]},
        "slower": {"command": ["/bin/sh", "-c",
                    "sleep 3; exec /usr/bin/systemd-socket-activate -l 127.0.0.1:9233 --inetd -a /bin/true"],
                   "health": {"tcp": {"port": 9233}}}
    }));
    std::fs::write(c.path("/root/next.json"), &next).unwrap();
    // The node's changes are streamed meanwhile.
    c.sh("systemd-run --unit=events sh -c '/opt/xnode/xnodectl events --output json > /root/events.jsonl'")
        .unwrap();
    let (code, out) = xnodectl(&c, "apply /root/next.json");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("applying generation 5 (gating): slower"),
        "{out}"
    );
    assert!(out.contains("Generation 5 is healthy"), "{out}");
    // The stream told the apply from its start to its end, in order.
    std::thread::sleep(Duration::from_secs(1));
    c.sh("systemctl stop events").unwrap();
    let events: Vec<serde_json::Value> = std::fs::read_to_string(c.path("/root/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |what: &str, test: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(test)
            .unwrap_or_else(|| panic!("no {what} in {events:#?}"))
    };
    assert_eq!(events[0]["kind"], "snapshot", "{events:#?}");
    let recorded = at("generation 5 applying", &|e| {
        e["kind"] == "generation"
            && e["generation"]["number"] == 5
            && e["generation"]["outcome"]["state"] == "applying"
    });
    let gating = at("the gate waiting on slower", &|e| {
        e["kind"] == "progress"
            && e["applying"]["phase"] == "gating"
            && e["applying"]["workloads"]["slower"]["state"] == "waiting"
    });
    let healthy = at("generation 5 healthy", &|e| {
        e["kind"] == "generation"
            && e["generation"]["number"] == 5
            && e["generation"]["outcome"]["state"] == "healthy"
    });
    let converged = events
        .iter()
        .rposition(|e| e["kind"] == "converged" && e["converged"] == true)
        .unwrap_or(0);
    assert!(
        recorded < gating && gating < healthy && healthy <= converged,
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "workload" && e["name"] == "slower"),
        "{events:#?}"
    );

    // --detach returns once the apply is recorded; the wait sees it through.
    std::fs::write(c.path("/root/again.json"), spec(json!({
        "a": {"command": ["/bin/sleep", "infinity"]},
        "slower": {"command": ["/bin/sh", "-c",
                    "sleep 4; exec /usr/bin/systemd-socket-activate -l 127.0.0.1:9234 --inetd -a /bin/true"],
                   "health": {"tcp": {"port": 9234}}}
    })))
    .unwrap();
    let (code, out) = xnodectl(&c, "apply --detach /root/again.json");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Generation 6 is being applied"), "{out}");
    let (code, out) = xnodectl(&c, "wait --generation 6 --timeout 120");
    assert_eq!(code, 0, "{out}");

    // Not on a terminal, the watch prints the status, and again only when it changes
    // (it looks four times here; a usage sample may change it once).
    let (code, out) = xnodectl(&c, "status --watch --every 1 & sleep 4; kill $!");
    assert_eq!(code, 0, "{out}");
    let pages = out.matches("converged   yes").count();
    assert!((1..=2).contains(&pages), "{pages} pages:\n{out}");

    // XNODE_SOCKET names the socket.
    let (code, out) = xnodectl(
        &c,
        "status --help >/dev/null; XNODE_SOCKET=/run/nothing /opt/xnode/xnodectl status",
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("/run/nothing"), "{out}");
}
