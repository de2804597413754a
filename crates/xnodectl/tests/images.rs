//! The image scripts (images/xnode-seed.sh, images/xnode-install.sh) do what they say,
//! run by bash with the real xnodectl first on PATH: the seed writes the first valid
//! spec, and the installer does nothing unless asked and refuses what it must.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("xnode-nix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a script of images/ with bash, the real xnodectl first on PATH.
fn script(name: &str, args: &[&str]) -> (i32, String) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnodectl"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(repo().join("images").join(name))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn the_seed_writes_the_first_valid_spec_and_nothing_else() {
    let s = Scratch::new("seed");
    let small = std::fs::read_to_string(repo().join("examples/small.json")).unwrap();
    let target = s.path("etc/xnode/spec.json");
    let cloud_config = s.file("cloud-config", "#cloud-config\npackages: [htop]\n");
    let empty = s.file("empty", "");
    let user_data = s.file("user-data", &small);

    // Sources without a spec are passed over; the first one with a spec wins.
    let (code, log) = script(
        "xnode-seed.sh",
        &[
            &target,
            "file:/nonexistent",
            &format!("file:{empty}"),
            &format!("file:{cloud_config}"),
            &format!("file:{user_data}"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("something other than a JSON spec"), "{log}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), small);

    // A spec in place is never replaced.
    let other = s.file("other", &small.replace("\"n1\"", "\"n2\""));
    let (code, log) = script("xnode-seed.sh", &[&target, &format!("file:{other}")]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), small);

    // An invalid spec is reported, written nowhere, and fails the unit.
    let fresh = s.path("fresh/spec.json");
    let bad = s.file("bad", r#"{"version": 1, "node": {"name": "-bad-"}}"#);
    let (code, log) = script("xnode-seed.sh", &[&fresh, &format!("file:{bad}")]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("node.name"), "{log}");
    assert!(!Path::new(&fresh).exists());
    assert!(std::fs::read_dir(&s.0).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains("xnode-seed")
    }));

    // No spec anywhere: the node boots without one.
    let (code, log) = script("xnode-seed.sh", &[&fresh, "file:/nonexistent"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("no spec found"), "{log}");
}

#[test]
fn the_seed_writes_a_join_key_that_comes_with_the_spec() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Scratch::new("seed-join");
    let small: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/small.json")).unwrap())
            .unwrap();
    let key = serde_json::json!({"v": 1, "owner": "ed25519:x", "secret": "s", "delegation": {}});
    let bundle = s.file(
        "bundle",
        &serde_json::json!({"spec": small, "join_key": key}).to_string(),
    );
    let (target, join) = (s.path("etc/spec.json"), s.path("state/join.key"));
    let (code, log) = script(
        "xnode-seed.sh",
        &["--join-key", &join, &target, &format!("file:{bundle}")],
    );
    assert_eq!(code, 0, "{log}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(written, small);
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&join).unwrap()).unwrap();
    assert_eq!(kept, key);
    let mode = std::fs::metadata(&join).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // An image that takes no join key writes the spec and says so.
    let (other, _) = (s.path("other/spec.json"), ());
    let (code, log) = script("xnode-seed.sh", &[&other, &format!("file:{bundle}")]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("takes none; ignored"), "{log}");
    assert!(Path::new(&other).exists());
}

#[test]
fn the_installer_does_nothing_unless_asked_and_refuses_what_it_must() {
    let s = Scratch::new("install");
    let system = s.0.join("system");
    std::fs::create_dir_all(&system).unwrap();
    let system = system.to_string_lossy().into_owned();
    let plain = s.file(
        "cmdline",
        "BOOT_IMAGE=/boot/bzImage init=/nix/store/x/init quiet\n",
    );
    let run = |cmdline: &str, extra: &[&str]| {
        let mut args = vec!["--dry-run", "--system", &system, "--cmdline", cmdline];
        args.extend_from_slice(extra);
        script("xnode-install.sh", &args)
    };

    let (code, log) = run(&plain, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("running live"), "{log}");

    let missing = s.file(
        "cmdline-missing",
        "quiet xnode.install=/dev/xnode-no-such-disk\n",
    );
    let (code, log) = run(&missing, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(
            "/dev/xnode-no-such-disk (asked for by the kernel command line) is not a block device"
        ),
        "{log}"
    );

    let conf = s.file(
        "install.conf",
        "disk=/dev/xnode-no-such-disk\nreboot=maybe\n",
    );
    let (code, log) = run(&plain, &["--config", "/nonexistent", "--config", &conf]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("reboot must be yes or no"), "{log}");

    // A free disk (a loop device): the plan, and nothing done in a dry run.
    let image = s.path("disk.img");
    let disk = Loop::new(&s, "disk.img");
    let loop_dev = disk.0.clone();
    let conf = s.file(
        "install-loop.conf",
        &format!("disk={loop_dev}\nreboot=no\n"),
    );
    let spec = s.file("spec.json", "{}");
    let (code, log) = run(&plain, &["--config", &conf, "--spec", &spec]);
    drop(disk);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!(
            "installing {system} on {loop_dev} (asked for by {conf})"
        )),
        "{log}"
    );
    assert!(log.contains(&format!("with the spec {spec}")), "{log}");
    assert!(log.contains("then reboot=no"), "{log}");
    assert!(log.contains("dry run; nothing changed"), "{log}");
    let untouched = std::fs::read(&image).unwrap();
    assert!(
        untouched.iter().all(|&b| b == 0),
        "the dry run wrote to the disk"
    );

    // A disk that holds this very system already (the machine booted the stick again
    // after installing) is left alone.
    let done = s.path("installed.img");
    std::fs::File::create(&done)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mnt = s.path("mnt");
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkfs.ext4 -q -F -L nixos {done} && mkdir -p {mnt} && mount -o loop {done} {mnt} \
             && mkdir -p {mnt}/etc/xnode && echo {system} > {mnt}/etc/xnode/installed-system \
             && umount {mnt}"
        ))
        .status()
        .unwrap();
    assert!(made.success());
    let loop_dev = Command::new("losetup")
        .args(["--find", "--show", &done])
        .output()
        .unwrap();
    let loop_dev = String::from_utf8_lossy(&loop_dev.stdout).trim().to_owned();
    let again = s.file("cmdline-again", &format!("xnode.install={loop_dev}\n"));
    let (code, log) = run(&again, &[]);
    let _ = Command::new("losetup")
        .args(["--detach", &loop_dev])
        .status();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("{loop_dev} already holds {system}; nothing to do")),
        "{log}"
    );

    // A disk in use (the one holding this machine's root) is never touched.
    let root = Command::new("findmnt")
        .args(["--noheadings", "--output", "SOURCE", "/"])
        .output()
        .unwrap();
    let root = String::from_utf8_lossy(&root.stdout).trim().to_owned();
    if root.starts_with("/dev/") {
        let used = s.file("cmdline-used", &format!("xnode.install={root}\n"));
        let (code, log) = run(&used, &[]);
        assert_eq!(code, 1, "{log}");
        assert!(log.contains("has mounted filesystems"), "{log}");
    }
}

/// A loop device over a new 64 MiB image in `s`; detached on drop.
struct Loop(String);

impl Loop {
    fn new(s: &Scratch, name: &str) -> Loop {
        let image = s.path(name);
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show", &image])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup needs root, as the lab tests do"
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

#[test]
fn the_installer_refuses_a_bios_boot_and_knows_its_medium_by_any_name() {
    let s = Scratch::new("install-boot");
    let system = s.path("system");
    let efi = s.path("efi");
    for dir in [&system, &efi] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let plain = s.file("cmdline", "quiet\n");
    let disk = Loop::new(&s, "disk.img");
    let conf = s.file("install.conf", &format!("disk={}\nreboot=no\n", disk.0));
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--dry-run",
            "--system",
            &system,
            "--cmdline",
            &plain,
            "--config",
            &conf,
        ];
        args.extend_from_slice(extra);
        script("xnode-install.sh", &args)
    };
    // Booted without UEFI (no /sys/firmware/efi): a real run would refuse.
    let (code, log) = run(&["--efi-dir", "/nonexistent"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("did not boot the installer with UEFI") && log.contains("a real run refuses"),
        "{log}"
    );
    let (code, log) = run(&["--efi-dir", &efi]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("UEFI"), "{log}");

    // The boot medium, mounted under a name that is gone since (stage 1's /dev/root),
    // is still known for the medium it is.
    let medium = Loop::new(&s, "medium.img");
    let (link, mnt) = (s.path("root-link"), s.path("medium"));
    let mounted = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkfs.ext4 -q -F {dev} && mkdir -p {mnt} && ln -s {dev} {link} \
             && mount --no-canonicalize {link} {mnt} && rm {link}",
            dev = medium.0
        ))
        .status()
        .unwrap();
    assert!(mounted.success());
    let asked = s.file("cmdline-medium", &format!("xnode.install={}\n", medium.0));
    let (code, log) = script(
        "xnode-install.sh",
        &[
            "--dry-run",
            "--system",
            &system,
            "--cmdline",
            &asked,
            "--boot-mount",
            &mnt,
            "--efi-dir",
            &efi,
        ],
    );
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!(
            "{} is the medium this system booted from",
            medium.0
        )),
        "{log}"
    );
}
