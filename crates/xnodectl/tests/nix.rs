//! The flake's side, as far as it runs without nixpkgs: every Nix file parses, and the
//! module's spec rendering (modules/render-spec.nix, evaluated by a real Nix) gives
//! what xnoded accepts. The image scripts are in images.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn nix_instantiate(args: &[&str]) -> Output {
    Command::new("nix-instantiate")
        .args(["--option", "build-users-group", ""])
        .args(args)
        .current_dir(repo())
        .output()
        .expect("nix-instantiate runs (Debian's nix-bin; scripts/setup installs it)")
}

/// Evaluates a Nix expression in the repository and returns its JSON value.
fn eval(expr: &str) -> Value {
    let out = nix_instantiate(&["--eval", "--strict", "--json", "--expr", expr]);
    assert!(
        out.status.success(),
        "{expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON text that the module writes to /etc/xnode/spec.json for `spec` (Nix).
fn render(spec: &str) -> String {
    let rendered = eval(&format!("import ./modules/render-spec.nix ({spec})"));
    rendered
        .as_str()
        .expect("the rendering is a string")
        .to_owned()
}

fn xnodectl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xnodectl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn assert_valid(json: &str) {
    let out = xnodectl(&["validate", "-"], json);
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nix_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() && !name.starts_with('.') && name != "target" {
            nix_files(&path, found);
        } else if name.ends_with(".nix") {
            found.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(&repo(), &mut files);
    assert!(files.len() >= 20, "found only {files:?}");
    for file in files {
        let out = nix_instantiate(&["--parse", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_flake_lock_pins_a_nixos_release_of_25_05_or_later() {
    let lock: Value =
        serde_json::from_slice(&std::fs::read(repo().join("flake.lock")).unwrap()).unwrap();
    let nixpkgs = &lock["nodes"]["nixpkgs"];
    assert_eq!(
        lock["nodes"]["root"]["inputs"],
        json!({"nixpkgs": "nixpkgs"})
    );
    let branch = nixpkgs["original"]["ref"].as_str().unwrap();
    let release: f64 = branch.strip_prefix("nixos-").unwrap().parse().unwrap();
    assert!(release >= 25.05, "{branch}");
    let rev = nixpkgs["locked"]["rev"].as_str().unwrap();
    assert_eq!(rev.len(), 40, "{rev}");
    assert!(
        nixpkgs["locked"]["narHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256-")
    );
}

#[test]
fn the_module_renders_the_example_specs_as_xnoded_reads_them() {
    for example in ["examples/small.json", "examples/large.json"] {
        let rendered = render(&format!(
            "builtins.fromJSON (builtins.readFile ./{example})"
        ));
        assert_valid(&rendered);
        // The same spec, whatever the layout: equal content hashes.
        let ours = xnodectl(&["hash", "-"], &rendered);
        let theirs = xnodectl(&["hash", &repo().join(example).to_string_lossy()], "");
        assert_eq!(ours.stdout, theirs.stdout, "{example}");
        assert!(ours.status.success());
    }
}

/// Package stand-ins: what `${pkgs.x}` gives inside a real NixOS evaluation.
const FAKE_PKGS: &str = r#"{
  python3 = "/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9";
  bash = "/nix/store/4bj2kxdm1462fzcc2i2s4dn33g2angcc-bash-5.2p37";
  coreutils = "/nix/store/87fck6hm17chxjlcdf9lr0ifr8gxhcq8-coreutils-9.7";
}"#;

#[test]
fn the_example_nixos_spec_renders_valid_with_the_store_paths_it_names() {
    let rendered = render(&format!(
        "(import ./examples/nixos/spec.nix {{ pkgs = {FAKE_PKGS}; }}) // {{ version = 1; node = {{ name = \"example\"; labels.region = \"eu-west\"; }}; }}"
    ));
    assert_valid(&rendered);
    let spec: Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(
        spec["workloads"]["web"]["store_paths"],
        json!(["/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9"])
    );
    assert_eq!(
        spec["workloads"]["ticker"]["store_paths"],
        json!(["/nix/store/4bj2kxdm1462fzcc2i2s4dn33g2angcc-bash-5.2p37"])
    );
}

#[test]
fn rendering_drops_nulls_and_lists_named_store_paths_once() {
    let cases = [
        (
            r#"{ version = 1; node = { name = "n"; owner = null; }; }"#,
            json!({"version": 1, "node": {"name": "n"}}),
        ),
        (
            // Two programs of one package, one path already listed, arguments too.
            r#"{ version = 1; node.name = "n"; workloads.w = {
                 command = [ "/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9/bin/python3"
                             "--x=/nix/store/87fck6hm17chxjlcdf9lr0ifr8gxhcq8-coreutils-9.7/bin/env" ];
                 reload = [ "/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9/bin/pydoc" ];
                 store_paths = [ "/nix/store/87fck6hm17chxjlcdf9lr0ifr8gxhcq8-coreutils-9.7" ];
                 user = null; }; }"#,
            json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {
                "command": [
                    "/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9/bin/python3",
                    "--x=/nix/store/87fck6hm17chxjlcdf9lr0ifr8gxhcq8-coreutils-9.7/bin/env"
                ],
                "reload": ["/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9/bin/pydoc"],
                "store_paths": [
                    "/nix/store/87fck6hm17chxjlcdf9lr0ifr8gxhcq8-coreutils-9.7",
                    "/nix/store/0c5qf2wrzzbfbd0z7b2ag4iybd2hypr8-python3-3.12.9"
                ]
            }}}),
        ),
        (
            // Not a store path (a hash with `e` is not nixbase32): nothing added.
            r#"{ version = 1; node.name = "n"; workloads.w.command = [ "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x/bin/x" ]; }"#,
            json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": {
                "command": ["/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x/bin/x"]}}}),
        ),
        (
            // A wrong shape is passed through for the validator to report.
            r#"{ version = 1; node.name = "n"; workloads.w = "oops"; }"#,
            json!({"version": 1, "node": {"name": "n"}, "workloads": {"w": "oops"}}),
        ),
    ];
    for (nix, want) in cases {
        let got: Value = serde_json::from_str(&render(nix)).unwrap();
        assert_eq!(got, want, "{nix}");
    }
}
