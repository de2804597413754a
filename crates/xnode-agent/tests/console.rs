//! The console in a real browser (headless Chromium) against xnoded under systemd,
//! over HTTPS: the owner signs in with an ed25519 key in the page; the node's page
//! shows its workloads, and a workload stopped by hand comes back in it; a spec
//! pasted in is checked, planned, signed in the page and applied, with its progress
//! to healthy, and going back to the first generation from the history is the same,
//! signed. Screenshots of each page go to `target/console/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_lab::browser::Browser;
use xnode_lab::node::wait_status;

const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0 \
                     --join-key /etc/xnode/join.key";
const WAIT: Duration = Duration::from_secs(60);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console")
}

/// Signs the planned spec in the page and applies it: the verdict on generation
/// `generation`.
fn sign_and_apply(b: &mut Browser, generation: u64) -> Value {
    b.eval("document.getElementById('sign-apply').click()")
        .unwrap();
    let verdict = format!(
        "(t => t.startsWith('Generation {generation}:') && t)(document.getElementById('verdict')?.textContent ?? '')"
    );
    b.wait_for(
        &format!("generation {generation}'s outcome"),
        &verdict,
        WAIT,
    )
    .unwrap()
}

#[test]
fn the_owner_watches_and_changes_the_node_from_the_console() {
    let owner = xnode_lab::fleet::owner();
    let (mesh_port, https_port) = (xnode_lab::node::free_port(), xnode_lab::node::free_port());
    let spec = |workloads: Value| {
        json!({"version": 1, "node": {"name": "console", "owner": owner.owner().to_string()},
               "mesh": {"listen": [format!("/ip4/127.0.0.1/tcp/{mesh_port}")]},
               "workloads": workloads})
    };
    let web = json!({"command": ["/bin/sh", "-c", "echo web starts; exec sleep infinity"]});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node_with(
        bin.parent().unwrap(),
        &serde_json::to_vec(&spec(json!({"web": web}))).unwrap(),
        &format!("{FLAGS} --http-listen 127.0.0.1:{https_port}"),
    )
    .unwrap();
    wait_status(&c, "convergence", WAIT, |s| {
        s["converged"] == true && s["mesh"]["peer_id"].is_string()
    })
    .unwrap();

    let mut b = Browser::start().unwrap();
    b.navigate(&format!("https://127.0.0.1:{https_port}/"))
        .unwrap();
    // Signed out, the page asks for a signature of this node's challenge.
    b.wait_for(
        "the challenge",
        "document.getElementById('challenge')?.textContent.startsWith('xnode-session/1')",
        WAIT,
    )
    .unwrap();
    b.screenshot(&shots().join("sign-in.png")).unwrap();
    let secret = owner.to_secret_string();
    b.eval(&format!(
        "document.getElementById('owner-key').value = {}; document.getElementById('use-key').click()",
        json!(secret)
    ))
    .unwrap();

    // The node's page: its workload, running.
    let row = "document.querySelector('tr[data-workload=\"web\"] .state')?.textContent";
    let state = b.wait_for("the workloads", row, WAIT).unwrap();
    assert_eq!(state, "active");
    b.wait_for(
        "a CPU reading",
        "document.querySelector('[aria-label^=\"CPU: \"]:not([aria-label=\"CPU: -\"])') !== null",
        WAIT,
    )
    .unwrap();
    b.screenshot(&shots().join("node.png")).unwrap();

    // A workload stopped by hand comes back, as its page shows: live logs with a
    // second start, and its state active again.
    b.navigate(&format!("https://127.0.0.1:{https_port}/#/workloads/web"))
        .unwrap();
    let starts = "(document.getElementById('logs')?.textContent.match(/web starts/g) || []).length";
    b.wait_for("the workload's log", &format!("{starts} >= 1"), WAIT)
        .unwrap();
    c.sh("systemctl stop xnode-web.service").unwrap();
    b.wait_for("the workload back", &format!("{starts} >= 2"), WAIT)
        .unwrap();
    b.wait_for(
        "the state active",
        "document.querySelector('dd.ok')?.textContent === 'active'",
        WAIT,
    )
    .unwrap();
    b.screenshot(&shots().join("workload.png")).unwrap();

    // Apply: paste, check (a bad spec shows its problems), plan, sign in the page, apply.
    b.navigate(&format!("https://127.0.0.1:{https_port}/#/apply"))
        .unwrap();
    b.wait_for(
        "the apply page",
        "document.getElementById('spec') !== null",
        WAIT,
    )
    .unwrap();
    let paste = |b: &mut Browser, v: &Value| {
        b.eval(&format!(
            "document.getElementById('spec').value = {}; document.getElementById('check').click()",
            json!(serde_json::to_string_pretty(v).unwrap())
        ))
        .unwrap();
    };
    paste(
        &mut b,
        &json!({"version": 1, "node": {"name": "console"},
        "workloads": {"bad": {"command": ["sleep"]}}}),
    );
    let problems = b
        .wait_for(
            "the spec's problems",
            "document.getElementById('problems')?.textContent",
            WAIT,
        )
        .unwrap();
    assert!(
        problems.as_str().unwrap().contains("workloads.bad.command"),
        "{problems}"
    );
    let next = spec(json!({"web": web, "api": {"command": ["/bin/sleep", "infinity"]}}));
    paste(&mut b, &next);
    b.wait_for(
        "the plan",
        "document.getElementById('plan')?.textContent.includes('xnode-api.service')",
        WAIT,
    )
    .unwrap();
    b.screenshot(&shots().join("apply-plan.png")).unwrap();
    // The key the owner signed in with is still this page's: sign and apply.
    b.wait_for(
        "the apply button",
        "!document.getElementById('sign-apply').disabled",
        WAIT,
    )
    .unwrap();
    assert_eq!(sign_and_apply(&mut b, 2), "Generation 2: healthy");
    b.screenshot(&shots().join("apply-done.png")).unwrap();
    let status = xnode_lab::node::api(&c, xnode_api::Request::Status).unwrap();
    assert_eq!(status["generation"]["source"]["kind"], "mesh", "{status:#}");
    assert!(
        status["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "api" && w["state"] == "active"),
        "{status:#}"
    );

    // History, the mesh, and the node at a phone's width.
    b.navigate(&format!("https://127.0.0.1:{https_port}/#/history"))
        .unwrap();
    b.wait_for(
        "the history",
        "document.querySelectorAll('#history tbody tr').length >= 2",
        WAIT,
    )
    .unwrap();
    b.screenshot(&shots().join("history.png")).unwrap();
    // Going back to generation 1: its spec, pushed again, signed in the page.
    b.eval("document.querySelector('a[data-back=\"1\"]').click()")
        .unwrap();
    b.wait_for(
        "generation 1's plan",
        "document.getElementById('plan')?.textContent.includes('xnode-api.service') \
         && !document.getElementById('sign-apply').disabled",
        WAIT,
    )
    .unwrap();
    assert_eq!(sign_and_apply(&mut b, 3), "Generation 3: healthy");
    let status = xnode_lab::node::api(&c, xnode_api::Request::Status).unwrap();
    assert!(
        !status["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "api"),
        "{status:#}"
    );
    b.navigate(&format!("https://127.0.0.1:{https_port}/#/mesh"))
        .unwrap();
    b.wait_for(
        "the mesh",
        "document.querySelector('h1')?.textContent === 'Mesh and fleet' \
         && document.body.innerText.includes('Peer id') \
         && document.getElementById('members') !== null",
        WAIT,
    )
    .unwrap();
    b.screenshot(&shots().join("mesh.png")).unwrap();
    b.resize(390, 844, true).unwrap();
    b.navigate(&format!("https://127.0.0.1:{https_port}/#/"))
        .unwrap();
    b.wait_for("the node at a phone's width", row, WAIT)
        .unwrap();
    let overflow = b
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .unwrap();
    assert_eq!(overflow, json!(true), "the page is wider than a phone");
    b.screenshot(&shots().join("node-phone.png")).unwrap();
}
