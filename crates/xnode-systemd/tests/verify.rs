//! The unit files xnode-spec renders, checked by systemd's own verifier in a container
//! from xnode-lab.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use xnode_lab::Container;
use xnode_spec::unit::{render, unit_name};

#[test]
fn systemd_analyze_verify_accepts_every_unit_rendered_from_the_examples() {
    let c = Container::boot().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let dir = c.path("/run/xnode-verify");
    std::fs::create_dir_all(&dir).unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let spec = xnode_spec::parse(&std::fs::read(path).unwrap())
            .unwrap()
            .spec;
        for (name, w) in &spec.workloads {
            std::fs::write(dir.join(unit_name(name)), render(name, w)).unwrap();
            units.push(format!("/run/xnode-verify/{}", unit_name(name)));
            // verify checks that programs exist; the examples' store paths are not in
            // this container, so stand-ins take their place.
            for program in std::iter::once(&w.command[0]).chain(w.reload.as_ref().map(|r| &r[0])) {
                let stub = c.path(program);
                if !stub.exists() {
                    std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
                    std::fs::write(&stub, "#!/bin/sh\n").unwrap();
                    c.sh(&format!("chmod 755 {program}")).unwrap();
                }
            }
        }
    }
    assert!(units.len() >= 15);
    // Mesh workloads are bound to xnoded's lease unit; the agent's own lab tests
    // verify the real one, a stand-in does here.
    std::fs::write(
        c.path("/run/systemd/system/xnoded-lease.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let mut argv = vec!["systemd-analyze", "verify"];
    argv.extend(units.iter().map(String::as_str));
    let out = c.exec(&argv).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

/// A working directory with a space and a `%` in it: systemd loads the unit and the
/// process runs there (once it refused the unit, as the path was written quoted).
#[test]
fn a_working_directory_with_a_space_and_a_percent_sign_is_where_the_workload_runs() {
    let c = Container::boot().unwrap();
    let dir = "/srv/my dir/100%";
    let spec = serde_json::json!({"version": 1, "node": {"name": "n1"},
        "workloads": {"w": {"command": ["/bin/sleep", "infinity"], "working_directory": dir}}});
    let spec = xnode_spec::parse_value(&spec).unwrap().spec;
    let unit = render("w", &spec.workloads["w"]);
    std::fs::create_dir_all(c.path(dir)).unwrap();
    std::fs::write(c.path("/run/systemd/system").join(unit_name("w")), unit).unwrap();
    c.sh("systemctl daemon-reload").unwrap();
    c.sh(&format!("systemctl start {}", unit_name("w")))
        .unwrap();
    let pid = c
        .sh(&format!("systemctl show -P MainPID {}", unit_name("w")))
        .unwrap();
    let cwd = c.sh(&format!("readlink /proc/{}/cwd", pid.trim())).unwrap();
    assert_eq!(cwd.trim(), dir);
}
