//! The flake's NixOS test (tests/nixos/mesh.nix) needs nixpkgs and KVM; its
//! scenario runs here instead, as far as it can: the same spec, rendered by the
//! module's own renderer from the same Nix file (with Debian's /usr for the packages),
//! applied by a real xnoded under systemd, checked by the same script.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use xnode_lab::Container;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// tests/nixos/spec.nix as the module renders it, with the module's default version.
fn rendered_spec() -> Vec<u8> {
    let expr = r#"import ./modules/render-spec.nix ({ version = 1; }
        // import ./tests/nixos/spec.nix { pkgs = { coreutils = "/usr"; bash = "/usr"; }; })"#;
    let out = Command::new("nix-instantiate")
        .args(["--option", "build-users-group", ""])
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .current_dir(repo())
        .output()
        .expect("nix-instantiate runs (scripts/setup installs nix-bin)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json.as_str().unwrap().as_bytes().to_vec()
}

/// The test driver's `wait_until_succeeds`: runs `command` until it succeeds.
fn wait_until_succeeds(c: &Container, command: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match c.sh(command) {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("{command} never succeeded: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[test]
fn the_nixos_test_scenario_runs_in_the_lab() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let bin_dir = bin.parent().unwrap();
    assert!(
        bin_dir.join("xnodectl").exists(),
        "the check script needs xnodectl: cargo build -p xnodectl"
    );
    let c = xnode_lab::node::boot_node(bin_dir, &rendered_spec()).unwrap();
    let script = std::fs::read(repo().join("tests/nixos/converged.sh")).unwrap();
    std::fs::write(c.path("/root/converged.sh"), script).unwrap();

    // The NixOS test's script, line by line.
    c.sh("systemctl is-active xnoded.service").unwrap();
    wait_until_succeeds(&c, "bash /root/converged.sh sleeper ticker");
    c.sh("test -f /etc/xnode/spec.json").unwrap();
    let invocation = || {
        c.sh("systemctl show -p InvocationID --value xnode-sleeper.service")
            .unwrap()
    };
    let before = invocation();
    c.sh("systemctl stop xnode-sleeper.service").unwrap();
    wait_until_succeeds(&c, "bash /root/converged.sh sleeper ticker");
    assert_ne!(invocation(), before, "the workload was started again");
}
