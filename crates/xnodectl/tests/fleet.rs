//! `xnodectl fleet join-key`: a private file, never overwritten, that xnoded accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use xnode_spec::fleet::JoinKey;

fn xnodectl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xnodectl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_join_key_is_private_never_overwritten_and_names_its_fleet() {
    let dir = std::env::temp_dir().join(format!("xnodectl-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (code, owner, err) = xnodectl(&["key", "generate", &path("owner.key")]);
    assert_eq!(code, 0, "{err}");
    let args = [
        "fleet",
        "join-key",
        "--key",
        &path("owner.key"),
        "--expires",
    ];
    let (code, out, err) = xnodectl(&[&args[..], &["2d", &path("join.key")]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(owner.trim()), "{out}");
    let file = dir.join("join.key");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = JoinKey::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(key.owner.to_string(), owner.trim());
    let before = std::fs::read(&file).unwrap();
    let (code, _, err) = xnodectl(&[&args[..], &["2d", &path("join.key")]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let (code, _, err) = xnodectl(&[&args[..], &["soon", &path("other.key")]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("not a duration"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn admitting_a_peer_without_its_node_name_is_refused_before_anything_is_signed() {
    let dir = std::env::temp_dir().join(format!("xnodectl-admit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("owner.key").to_str().unwrap().to_owned();
    assert_eq!(xnodectl(&["key", "generate", &key]).0, 0);
    let socket = dir.join("no.sock").to_str().unwrap().to_owned();
    for (arg, why) in [
        ("12D3KooWQ", "name the node too, as NAME=PEER_ID"),
        ("Not A Name=12D3KooWQ", "not a valid"),
    ] {
        let (code, _, err) = xnodectl(&["fleet", "admit", "--key", &key, "--socket", &socket, arg]);
        assert_ne!(code, 0);
        assert!(err.contains(why), "{arg}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_fleet_spec_is_reported_before_anything_is_signed_or_sent() {
    let dir = std::env::temp_dir().join(format!("xnodectl-fleet-spec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (code, _, err) = xnodectl(&["key", "generate", &path("owner.key")]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        dir.join("fleet.json"),
        r#"{"version": 1, "workloads": {"web": {"command": ["/bin/true"]}}}"#,
    )
    .unwrap();
    let (code, _, err) = xnodectl(&[
        "fleet",
        "apply",
        "--key",
        &path("owner.key"),
        "--socket",
        &path("no-such.sock"),
        &path("fleet.json"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("workloads.web.placement") && err.contains("run on the mesh"),
        "{err}"
    );
    let (code, schema, err) = xnodectl(&["fleet", "schema"]);
    assert_eq!(code, 0, "{err}");
    assert!(schema.contains("XnodeOS fleet spec"), "{schema}");
    std::fs::remove_dir_all(&dir).unwrap();
}
