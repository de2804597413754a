//! One container: boot, run commands inside, tear down.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{LabError, rootfs};

/// How a container is booted.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Host directories bound read-only into the container: (host, inside).
    pub bind_ro: Vec<(PathBuf, PathBuf)>,
    /// A network namespace (a [`crate::Network`] host) to run in, instead of the
    /// host's network.
    pub netns: Option<String>,
}

/// A booted container; powered off and reaped on drop.
pub struct Container {
    name: String,
    nspawn: Child,
    leader: u32,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

impl Container {
    /// Boots a container with default options.
    pub fn boot() -> Result<Container, LabError> {
        Container::boot_with(&Options::default())
    }

    /// Boots a container and waits until its systemd has finished starting up.
    pub fn boot_with(options: &Options) -> Result<Container, LabError> {
        let root = rootfs()?;
        let name = format!(
            "xlab-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let log_dir = std::env::temp_dir().join("xnode-lab");
        std::fs::create_dir_all(&log_dir)
            .map_err(LabError::io("cannot create the lab's log dir"))?;
        let log = File::create(log_dir.join(format!("{name}.log")))
            .map_err(LabError::io("cannot create the console log"))?;
        let log2 = log
            .try_clone()
            .map_err(LabError::io("cannot share the console log"))?;
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--register=no",
            "--keep-unit",
            "--quiet",
            "--console=passive",
            "--volatile=overlay",
            "--boot",
        ])
        .arg("--directory")
        .arg(&root)
        .args(["--machine", &name]);
        if let Some(ns) = &options.netns {
            // Its own network is its own to administer, as a host's is: its firewall
            // (nftables) included.
            cmd.arg(format!("--network-namespace-path=/run/netns/{ns}"))
                .arg("--capability=CAP_NET_ADMIN");
        }
        for (host, inside) in &options.bind_ro {
            cmd.arg(format!("--bind-ro={}:{}", host.display(), inside.display()));
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the calling (child) process
        // and is async-signal-safe. If the test process dies, nspawn gets SIGTERM and
        // powers the container off.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let nspawn = cmd
            .spawn()
            .map_err(LabError::io("cannot start systemd-nspawn"))?;
        let mut container = Container {
            name,
            nspawn,
            leader: 0,
        };
        container.leader = container.wait_for_leader()?;
        container.wait_until_booted()?;
        Ok(container)
    }

    /// nspawn's child is the container's PID 1.
    fn wait_for_leader(&mut self) -> Result<u32, LabError> {
        let pid = self.nspawn.id();
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                return Err(self.boot_error(format!("systemd-nspawn exited: {status}")));
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(leader) = children
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
            {
                let bus = PathBuf::from(format!("/proc/{leader}/root/run/dbus/system_bus_socket"));
                if bus.exists() {
                    return Ok(leader);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.boot_error("no system bus after 60 s".into()))
    }

    fn wait_until_booted(&self) -> Result<(), LabError> {
        // "running" or "degraded" both mean start-up is over.
        let out = self.exec(&["systemctl", "is-system-running", "--wait"])?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state == "running" || state == "degraded" {
            Ok(())
        } else {
            Err(self.boot_error(format!("system state is {state:?}")))
        }
    }

    fn boot_error(&self, detail: String) -> LabError {
        let log = std::env::temp_dir()
            .join("xnode-lab")
            .join(format!("{}.log", self.name));
        LabError::Boot {
            name: self.name.clone(),
            detail: format!("{detail} (console log: {})", log.display()),
        }
    }

    /// The machine name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host pid of the container's PID 1.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// The container's root as seen from the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// The D-Bus address of the container's system bus, reachable from the host.
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path={}",
            self.root().join("run/dbus/system_bus_socket").display()
        )
    }

    /// Runs a command inside the container (all its namespaces) and returns its output,
    /// whatever its exit status.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, LabError> {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(LabError::io(format!(
                "cannot run {argv:?} in {}",
                self.name
            )))
    }

    /// Runs a shell script inside the container; fails unless it exits 0.
    pub fn sh(&self, script: &str) -> Result<String, LabError> {
        let out = self.exec(&["/bin/sh", "-c", script])?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(LabError::Command {
                what: format!("{script:?} in {}", self.name),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    /// A path inside the container, as seen from the host.
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        self.root().join(inside.strip_prefix("/").unwrap_or(inside))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn power the container off cleanly; SIGKILL if it lingers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.nspawn.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
