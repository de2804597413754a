//! xnodectl as a user runs it: exit codes, messages, and hostile files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs xnodectl; a run still going after two minutes counts as a hang.
fn xnodectl(args: &[&str]) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_xnodectl"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read its output while it runs (a full pipe would stall it), on a thread, so a
    // hang is a timeout here.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let Ok(out) = finished.recv_timeout(Duration::from_secs(120)) else {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        panic!("xnodectl {args:?} hung");
    };
    let out = out.unwrap();
    let run = Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "xnodectl {args:?} panicked: {}",
        run.stderr
    );
    run
}

/// A file in the temp dir, removed when the test is done with it.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_file(name: &str, bytes: &[u8]) -> TempFile {
    let path = std::env::temp_dir().join(format!("xnodectl-test-{}-{name}", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    TempFile(path)
}

fn path_str(f: &TempFile) -> &str {
    f.0.to_str().unwrap()
}

#[test]
fn the_examples_are_valid() {
    let r = xnodectl(&["validate", "examples/small.json", "examples/large.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2);
    assert!(r.stdout.lines().all(|l| l.contains(": valid (sha256:")));
}

#[test]
fn every_bad_spec_exits_1_naming_its_path_first() {
    let dir = repo().join("tests/specs/bad");
    let manifest = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut fields = line.split('\t');
        let (file, path) = (fields.next().unwrap(), fields.next().unwrap());
        let r = xnodectl(&["validate", &format!("tests/specs/bad/{file}")]);
        assert_eq!(r.code, 1, "{file}");
        let shown = if path.is_empty() { "(document)" } else { path };
        assert!(
            r.stderr
                .lines()
                .any(|l| l.starts_with(&format!("{shown}: "))),
            "{file}: no line starts with {shown}: in\n{}",
            r.stderr
        );
    }
}

#[test]
fn validate_reports_every_file_and_every_problem_as_json() {
    let bad = temp_file(
        "two-problems.json",
        br#"{"version": 1, "node": {"name": "a b"}, "workloads": {"w": {"command": ["x"]}}}"#,
    );
    let r = xnodectl(&[
        "validate",
        "--output",
        "json",
        "examples/small.json",
        path_str(&bad),
    ]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["valid"], true);
    assert!(v[0]["hash"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v[1]["valid"], false);
    let paths: Vec<_> = v[1]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["node.name", "workloads.w.command[0]"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["bogus"][..],
        &["validate"],
        &["plan"],
        &["validate", "--output", "xml", "x.json"],
    ] {
        assert_eq!(xnodectl(args).code, 2, "{args:?}");
    }
}

#[test]
fn a_missing_file_is_a_sentence() {
    let r = xnodectl(&["validate", "/nonexistent/spec.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("xnodectl: cannot open /nonexistent/spec.json: No such file"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_hash_ignores_layout() {
    let compact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("examples/large.json")).unwrap())
            .unwrap();
    let compact = temp_file("compact.json", compact.to_string().as_bytes());
    let a = xnodectl(&["hash", "examples/large.json"]);
    let b = xnodectl(&["hash", path_str(&compact)]);
    assert_eq!(a.code, 0);
    assert!(a.stdout.starts_with("sha256:"));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(xnodectl(&["hash", "tests/specs/bad/null.json"]).code, 1);
}

#[test]
fn plan_from_nothing_creates_and_starts_local_workloads() {
    let r = xnodectl(&["plan", "--spec", "examples/small.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<_> = r
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "create xnode-hello.service",
            "create xnode-ticker.service",
            "daemon-reload unit",
            "start xnode-hello.service",
            "start xnode-ticker.service"
        ]
    );
}

#[test]
fn plan_against_observed_units_as_json() {
    let spec = temp_file("spec.json", br#"{"version": 1, "node": {"name": "n1", "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, "workloads": {"web": {"command": ["/bin/web2"]}, "job": {"command": ["/bin/job"], "placement": {"mesh": {}}}}}"#);
    let observed = serde_json::json!({"units": [
        {"name": "xnode-web.service", "active_state": "active", "file": "[Unit]\nX-Xnode-Workload=web\n[Service]\nExecStart=/bin/web\n"},
        {"name": "xnode-old.service", "active_state": "failed", "file": "[Unit]\nX-Xnode-Workload=old\n"},
        {"name": "xnode-job.service", "active_state": "active", "file": "[Unit]\nDescription=hand made\n"}
    ]});
    let observed = temp_file("observed.json", observed.to_string().as_bytes());
    let r = xnodectl(&[
        "plan",
        "--spec",
        path_str(&spec),
        "--observed",
        path_str(&observed),
        "--placed",
        "job",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps: Vec<String> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["op"].as_str().unwrap(),
                a["unit"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "stop xnode-web.service",
            "remove xnode-old.service",
            "update xnode-web.service",
            "start xnode-web.service"
        ]
    );
    assert_eq!(v["daemon_reload"], true);
    assert_eq!(v["refused"][0]["unit"], "xnode-job.service");
    assert!(
        v["actions"][2]["content"]
            .as_str()
            .unwrap()
            .contains("ExecStart=/bin/web2")
    );
}

#[test]
fn plan_rejects_bad_observed_state_and_bad_placement() {
    let dup = temp_file("dup.json", br#"{"units": [{"name": "a", "active_state": "active"}, {"name": "a", "active_state": "failed"}]}"#);
    let r = xnodectl(&[
        "plan",
        "--spec",
        "examples/small.json",
        "--observed",
        path_str(&dup),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("lists unit a more than once"),
        "{}",
        r.stderr
    );
    let odd = temp_file(
        "odd.json",
        br#"{"units": [{"name": "a", "active_state": "sleepy"}]}"#,
    );
    let r = xnodectl(&[
        "plan",
        "--spec",
        "examples/small.json",
        "--observed",
        path_str(&odd),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown variant `sleepy`"),
        "{}",
        r.stderr
    );
    let r = xnodectl(&["plan", "--spec", "examples/small.json", "--placed", "hello"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is local"), "{}", r.stderr);
}

#[test]
fn hostile_files_are_rejected_without_panic_or_hang() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty.json", Vec::new()),
        ("null.json", b"null".to_vec()),
        ("deep.json", deep.into_bytes()),
        (
            "latin1.json",
            b"{\"version\": 1, \"node\": {\"name\": \"caf\xe9\"}}".to_vec(),
        ),
        ("binary.json", (0..=255u8).cycle().take(4096).collect()),
    ];
    for (name, bytes) in cases {
        let path = temp_file(name, &bytes);
        let r = xnodectl(&["validate", path_str(&path)]);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        assert!(r.stderr.contains("(document): "), "{name}: {}", r.stderr);
    }
}

#[test]
fn a_50_mb_spec_is_read_whole() {
    // 10,000 workloads (the most a node runs), each carrying 5 KB of environment.
    let value = "v".repeat(5_000);
    let mut text = String::from(r#"{"version": 1, "node": {"name": "big"}, "workloads": {"#);
    for i in 0..10_000 {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            r#""w{i}": {{"command": ["/bin/true"], "environment": {{"V": "{value}"}}}}"#
        ));
    }
    text.push_str("}}");
    assert!(text.len() > 50_000_000);
    let path = temp_file("big.json", text.as_bytes());
    let r = xnodectl(&["validate", path_str(&path)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The same document with one bad value deep inside is found and named.
    let broken = text.replacen(
        r#""w9999": {"command": ["/bin/true"]"#,
        r#""w9999": {"command": ["true"]"#,
        1,
    );
    let path = temp_file("big-broken.json", broken.as_bytes());
    let r = xnodectl(&["validate", path_str(&path)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("workloads.w9999.command[0]: \"true\" is not an absolute path"),
        "{}",
        r.stderr
    );
}

#[test]
fn schema_completions_and_man_page() {
    let schema: serde_json::Value = serde_json::from_str(&xnodectl(&["schema"]).stdout).unwrap();
    assert_eq!(schema["title"], "XnodeOS node spec");
    let bash = xnodectl(&["completions", "bash"]);
    assert_eq!(bash.code, 0);
    assert!(bash.stdout.contains("validate") && bash.stdout.contains("plan"));
    let man = xnodectl(&["man"]);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH xnodectl"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    let version = xnodectl(&["--version"]);
    assert_eq!(
        version.stdout.trim(),
        format!("xnodectl {}", env!("CARGO_PKG_VERSION"))
    );
    let help = xnodectl(&["validate", "--help"]);
    assert!(help.stdout.contains("Examples:"));
}

#[test]
fn a_spec_can_come_on_standard_input() {
    let spec = std::fs::read(repo().join("examples/small.json")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xnodectl"))
        .args(["hash", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&spec).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        xnodectl(&["hash", "examples/small.json"]).stdout
    );
}

#[test]
fn ssh_keys_gives_root_the_ed25519_owner_and_nobody_else() {
    const NONE: &str = "/nonexistent/owner";
    let spec = |owner: &str| {
        format!(
            r#"{{"version": 1, "node": {{"name": "n1", "owner": "{owner}"}}, "workloads": {{}}}}"#
        )
    };
    let ed = temp_file(
        "ssh-ed.json",
        spec("ed25519:19lXUErDvu1fpeijRcQg7nwqCHKIUPB+kF7AVUzbrP8=").as_bytes(),
    );
    let run = xnodectl(&["ssh-keys", "--owner-file", NONE, path_str(&ed)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfZV1BKw77tX6Xoo0XEIO58KghyiFDwfpBewFVM26z/ xnode-owner\n"
    );
    let run = xnodectl(&[
        "ssh-keys",
        "--owner-file",
        NONE,
        "--user",
        "alice",
        path_str(&ed),
    ]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));

    let eth = temp_file(
        "ssh-eth.json",
        spec("eth:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").as_bytes(),
    );
    let run = xnodectl(&["ssh-keys", "--owner-file", NONE, path_str(&eth)]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));

    // A node still waiting for its first spec has no owner yet.
    let run = xnodectl(&["ssh-keys", "--owner-file", NONE, "/nonexistent/spec.json"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));

    let bad = temp_file("ssh-bad.json", spec("ed25519:AAAA").as_bytes());
    let run = xnodectl(&["ssh-keys", "--owner-file", NONE, path_str(&bad)]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert!(run.stderr.contains("node.owner"), "{}", run.stderr);

    // The owner xnoded publishes (the spec in force) wins over the spec file's, which
    // a push or an API apply leaves as it was.
    let rotated = temp_file(
        "ssh-owner",
        b"eth:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n",
    );
    let run = xnodectl(&[
        "ssh-keys",
        "--owner-file",
        path_str(&rotated),
        path_str(&ed),
    ]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
    let published = temp_file(
        "ssh-owner-ed",
        b"ed25519:19lXUErDvu1fpeijRcQg7nwqCHKIUPB+kF7AVUzbrP8=\n",
    );
    let run = xnodectl(&[
        "ssh-keys",
        "--owner-file",
        path_str(&published),
        path_str(&eth),
    ]);
    assert!(
        run.stdout.starts_with(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfZV1BKw77tX6Xoo0XEIO58KghyiFDwfpBewFVM26z/"
        ),
        "{}",
        run.stdout
    );
    // A spec in force with no owner: nobody, whatever the spec file says.
    let none = temp_file("ssh-owner-none", b"");
    let run = xnodectl(&["ssh-keys", "--owner-file", path_str(&none), path_str(&ed)]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
}

#[test]
fn key_generate_makes_a_private_key_whose_identity_show_prints() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("xnodectl-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, prefix) in [("ed25519", "ed25519:"), ("eth", "eth:0x")] {
        let file = dir.join(format!("{kind}.key"));
        let file = file.to_str().unwrap();
        let made = xnodectl(&["key", "generate", "--type", kind, file]);
        assert_eq!(made.code, 0, "{}", made.stderr);
        assert!(made.stdout.starts_with(prefix), "{}", made.stdout);
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let shown = xnodectl(&["key", "show", file]);
        assert_eq!((shown.code, &shown.stdout), (0, &made.stdout));

        // The identity is a valid owner: a spec naming it validates.
        let owner = made.stdout.trim();
        let spec = temp_file(
            &format!("owned-{kind}.json"),
            format!(r#"{{"version": 1, "node": {{"name": "n1", "owner": "{owner}"}}}}"#).as_bytes(),
        );
        assert_eq!(xnodectl(&["validate", path_str(&spec)]).code, 0);
        let json: serde_json::Value =
            serde_json::from_str(&xnodectl(&["key", "show", "-o", "json", file]).stdout).unwrap();
        assert_eq!(json["owner"], owner);
        if kind == "ed25519" {
            let ssh = xnodectl(&["ssh-keys", path_str(&spec)]);
            assert_eq!(json["ssh"].as_str().unwrap(), ssh.stdout.trim());
        } else {
            assert!(json.get("ssh").is_none());
        }

        let again = xnodectl(&["key", "generate", "--type", kind, file]);
        assert_eq!(again.code, 1);
        assert!(
            again.stderr.contains("never overwritten"),
            "{}",
            again.stderr
        );
        assert_eq!(
            xnodectl(&["key", "show", file]).stdout,
            made.stdout,
            "untouched"
        );

        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = xnodectl(&["key", "show", file]);
        assert_eq!(open.code, 1);
        assert!(open.stderr.contains("chmod 600"), "{}", open.stderr);
    }
    let junk = dir.join("junk.key");
    std::fs::write(&junk, "hello").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = xnodectl(&["key", "show", junk.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("holds no owner key"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
