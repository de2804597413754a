//! What a local workload could do to its node, tried under real systemd: a `root`
//! workload (uid 0, no capabilities) reaching xnoded's API socket or the managers'
//! buses, through which it could apply any workload or drive systemd. Hidden from every
//! workload unless its spec relaxes that part by name, and running as root must itself
//! be asked for by name. xnoded's state directory (root's own, so uid 0 needs no
//! capability to read it) is hidden from every workload, whatever it relaxes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use xnode_lab::node::wait_status;

const SOCKETS: [&str; 3] = [
    "/run/xnode/api.sock",
    "/run/dbus/system_bus_socket",
    "/run/systemd/private",
];

/// xnoded's state directory: its mesh key, and a join key.
const STATE_DIR: &str = "/var/lib/xnode";

/// A shell line that tries to connect to each socket and to list the state directory,
/// and says what happened (no `$`: systemd would expand it).
fn probe() -> String {
    let tries: Vec<String> = SOCKETS
        .iter()
        .map(|s| {
            format!(
                "perl -MIO::Socket::UNIX -e 'print IO::Socket::UNIX->new(Peer => q{{{s}}}) ? q{{OPEN {s}}} : q{{closed {s}}}, qq{{\\n}}'"
            )
        })
        .collect();
    format!(
        "{}; if ls {STATE_DIR}/ >/dev/null 2>&1; then echo SEEN {STATE_DIR}; else echo hidden {STATE_DIR}; fi; id -u; exec sleep infinity",
        tries.join("; ")
    )
}

#[test]
fn a_root_workload_reaches_neither_the_api_nor_the_buses_unless_relaxed_by_name() {
    let probe = |relax: &[&str]| {
        json!({"command": ["/bin/sh", "-c", probe()], "user": "root",
               "sandbox": {"relax": relax}})
    };
    let spec = json!({"version": 1, "node": {"name": "local"}, "workloads": {
        "intruder": probe(&["root"]),
        "trusted": probe(&["root", "agent-api", "system-bus"]),
    }});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node(bin.parent().unwrap(), &serde_json::to_vec(&spec).unwrap())
        .unwrap();
    wait_status(&c, "both running", Duration::from_secs(60), |s| {
        s["converged"] == true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let said = |w: &str| {
        c.sh(&format!(
            "journalctl -u xnode-{w}.service --no-pager -o cat"
        ))
        .unwrap()
    };
    let (intruder, trusted) = (said("intruder"), said("trusted"));
    for socket in SOCKETS {
        assert!(intruder.contains(&format!("closed {socket}")), "{intruder}");
        // The same probe, relaxed: it would have seen an open socket.
        assert!(trusted.contains(&format!("OPEN {socket}")), "{trusted}");
    }
    assert!(
        intruder.lines().any(|l| l == "0"),
        "it ran as root: {intruder}"
    );
    // The state directory, root's own, is hidden from both, whatever they relax.
    for said in [&intruder, &trusted] {
        assert!(said.contains(&format!("hidden {STATE_DIR}")), "{said}");
    }

    // Root not asked for by name: refused before anything changes.
    let err = xnode_lab::node::api(
        &c,
        xnode_api::Request::Apply {
            spec: json!({"version": 1, "node": {"name": "local"}, "workloads": {
                "sneaky": {"command": ["/bin/sleep", "infinity"], "user": "root"}}}),
            no_rollback: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("add \"root\" to sandbox.relax"), "{err}");
    assert!(c.sh("systemctl cat xnode-sneaky.service").is_err());
}

/// Once, 1,100 idle connections to the metrics port took every file descriptor xnoded
/// had (1,024), the metrics loop ended on its first failed accept, and the API's spun.
/// Now the metrics port holds at most a few connections, each for at most 10 s (the
/// rest wait in the kernel's backlog, and once it is full, connecting fails), and the
/// node answers throughout.
#[test]
fn a_local_process_holding_a_thousand_connections_exhausts_nothing() {
    let spec = json!({"version": 1, "node": {"name": "fds"}});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node(bin.parent().unwrap(), &serde_json::to_vec(&spec).unwrap())
        .unwrap();
    let s = wait_status(&c, "up", Duration::from_secs(60), |s| {
        s["converged"] == true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let metrics = s["metrics_address"].as_str().unwrap().to_owned();
    let (host, port) = metrics.rsplit_once(':').unwrap();
    std::fs::write(
        c.path("/root/hold.pl"),
        format!(
            "use IO::Socket::INET; $| = 1; my @held;
             for (1..1100) {{
                 my $s = IO::Socket::INET->new(PeerAddr => '{host}', PeerPort => {port}, Timeout => 2) or last;
                 push @held, $s;
             }}
             print scalar(@held), \" held\\n\"; sleep 300;"
        ),
    )
    .unwrap();
    c.sh("systemd-run --unit=holder -p LimitNOFILE=4096 perl /root/hold.pl")
        .unwrap();
    let held = || {
        c.sh("journalctl -u holder --no-pager -o cat | grep held || true")
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while held().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never finished connecting"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Those beyond the cap wait in the kernel's backlog; past it, connecting fails.
    println!("the holder made {}", held().trim());
    let fds = c
        .sh("ls /proc/$(systemctl show -P MainPID xnoded)/fd | wc -l")
        .unwrap();
    let fds: usize = fds.trim().parse().unwrap();
    assert!(fds < 200, "xnoded holds {fds} file descriptors");
    // The API answers while they are held, and the metrics port once they time out.
    xnode_lab::node::api(&c, xnode_api::Request::Status).unwrap();
    c.sh("systemctl stop holder").unwrap();
    let page = c
        .sh(&format!("curl -sS --max-time 30 http://{metrics}/metrics"))
        .unwrap();
    assert!(page.contains("xnode_reconciles_total"), "{page}");
}

/// sshd lets in the owner of the spec in force (through `xnodectl ssh-keys`, which
/// reads what xnoded publishes), not the owner written in the spec file: once, a push
/// that rotated the owner left the former owner's key with root SSH.
#[test]
fn the_published_owner_follows_the_spec_in_force_not_the_spec_file() {
    let old = "ed25519:19lXUErDvu1fpeijRcQg7nwqCHKIUPB+kF7AVUzbrP8=";
    let new = xnode_lab::fleet::owner().owner().to_string();
    let spec = |owner: &str| json!({"version": 1, "node": {"name": "rotate", "owner": owner}});
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let c = xnode_lab::node::boot_node(
        bin.parent().unwrap(),
        &serde_json::to_vec(&spec(old)).unwrap(),
    )
    .unwrap();
    wait_status(&c, "up", Duration::from_secs(60), |s| {
        s["converged"] == true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let published = || std::fs::read_to_string(c.path("/run/xnode/owner")).unwrap();
    assert_eq!(published().trim(), old);
    let mode = c.sh("stat -c %a /run/xnode/owner").unwrap();
    assert_eq!(mode.trim(), "644", "sshd's command runs as nobody");
    // An apply through the API (as a push is) rotates the owner; the file on disk
    // still names the old one.
    xnode_lab::node::api(
        &c,
        xnode_api::Request::Apply {
            spec: spec(&new),
            no_rollback: false,
        },
    )
    .unwrap();
    assert_eq!(published().trim(), new);
    let on_disk = std::fs::read_to_string(c.path("/etc/xnode/spec.json")).unwrap();
    assert!(on_disk.contains(old), "{on_disk}");
    // After a restart too.
    c.sh("systemctl restart xnoded").unwrap();
    wait_status(&c, "up again", Duration::from_secs(60), |s| {
        s["converged"] == true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(published().trim(), new);
}
