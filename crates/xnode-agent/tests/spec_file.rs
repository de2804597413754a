//! The spec file as NixOS writes it: a link into the Nix store, where every file's
//! mtime is 1, swapped to another file of the same length by `nixos-rebuild switch`.
//! xnoded takes the new spec in without a restart, and `reload` (what the switch runs)
//! waits for the apply and fails when the node rolled back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_api::Request;
use xnode_lab::Container;
use xnode_lab::node::{active, api, generation, wait_status};

fn spec(seconds: &str, extra: Value) -> Vec<u8> {
    let mut workloads = json!({"web": {"command": ["/bin/sleep", seconds]}});
    workloads
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::to_vec(&json!({"version": 1, "node": {"name": "nixos"}, "workloads": workloads}))
        .unwrap()
}

/// Writes `bytes` as a store file with the store's mtime and points the spec link at
/// it, as a switch does (a new link renamed over the old one).
fn switch_to(c: &Container, name: &str, bytes: &[u8]) {
    let store = format!("/nix/store/{name}-xnode-spec.json");
    c.sh("mkdir -p /nix/store").unwrap();
    std::fs::write(c.path(&store), bytes).unwrap();
    c.sh(&format!(
        "touch -h -d @1 {store} && chmod 444 {store} \
         && ln -sfn {store} /etc/xnode/.spec.link && mv -T /etc/xnode/.spec.link /etc/xnode/spec.json"
    ))
    .unwrap();
}

fn wait_for(c: &Container, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_status(c, what, Duration::from_secs(60), check).unwrap_or_else(|e| panic!("{e}"))
}

fn main_pid(c: &Container) -> String {
    c.sh("systemctl show -p MainPID --value xnoded.service")
        .unwrap()
}

#[test]
fn a_swapped_store_link_of_the_same_length_is_applied_and_reload_reports_the_outcome() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node(bin.parent().unwrap(), &spec("100001", json!({}))).unwrap();
    wait_for(&c, "convergence", |s| s["converged"] == true);
    let a = spec("100002", json!({}));
    let b = spec("100003", json!({}));
    assert_eq!(a.len(), b.len());
    switch_to(&c, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &a);
    wait_for(&c, "generation 2", |s| {
        generation(s) == 2 && s["converged"] == true
    });
    let pid = main_pid(&c);
    let stamp = |p: &str| c.sh(&format!("stat -L -c '%s %Y' {p}")).unwrap();
    let before = stamp("/etc/xnode/spec.json");

    // Same length, same mtime: only the file the link resolves to differs.
    switch_to(&c, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", &b);
    assert_eq!(stamp("/etc/xnode/spec.json"), before);
    let s = wait_for(&c, "generation 3", |s| {
        generation(s) == 3 && s["converged"] == true
    });
    assert_eq!(s["generation"]["source"]["kind"], "file");
    assert_eq!(
        c.sh("systemctl show -p ExecStart --value xnode-web.service | grep -o 100003")
            .unwrap()
            .trim(),
        "100003"
    );
    assert_eq!(main_pid(&c), pid, "xnoded was not restarted");

    // `reload`: unchanged says so.
    let r = api(&c, Request::Reload).unwrap();
    assert_eq!(
        (r["unchanged"].clone(), r["generation"].clone()),
        (json!(true), json!(3))
    );
    // A spec that rolls back fails the reload, whether xnoded's own look at the file
    // started the apply or the reload did; and again when asked again.
    let failing =
        json!({"bad": {"command": ["/bin/sh", "-c", "exit 1"], "restart": {"policy": "no"}}});
    switch_to(
        &c,
        "cccccccccccccccccccccccccccccccc",
        &spec("100003", failing),
    );
    let err = api(&c, Request::Reload).unwrap_err().to_string();
    assert!(
        err.contains("rolled back") && err.contains("bad: failed"),
        "{err}"
    );
    // Asked again, xnoded applies it again (it is not in force), with the same verdict.
    let err = api(&c, Request::Reload).unwrap_err().to_string();
    assert!(
        err.contains("generation 6: rolled back") && err.contains("bad: failed"),
        "{err}"
    );
    // An invalid file fails it too, and changes nothing.
    switch_to(&c, "dddddddddddddddddddddddddddddddd", b"{\"version\": 1}");
    let err = api(&c, Request::Reload).unwrap_err().to_string();
    assert!(
        err.contains("the spec file is rejected") && err.contains("node"),
        "{err}"
    );
    // A good one passes.
    switch_to(
        &c,
        "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        &spec("100004", json!({})),
    );
    let r = api(&c, Request::Reload).unwrap();
    // (When xnoded's own look already finished the apply, it says unchanged.)
    assert!(
        r["outcome"]["state"] == "healthy" || r["unchanged"] == true,
        "{r:#}"
    );
    assert_eq!(active(&c, "xnode-web.service"), "active");
    assert_eq!(main_pid(&c), pid, "xnoded was not restarted");
}
