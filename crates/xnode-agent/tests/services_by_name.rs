//! Services other nodes and workloads can reach, on two real nodes (xnoded under
//! systemd, each in its own container and network namespace):
//! - a workload on n1 reaches a service on n0 by its `.xnode` name, answered by n1's
//!   xnoded; the name drops out of the answers while n0's probe fails, and comes back;
//! - n0's firewall drops its service ports except those in the set xnoded keeps, so the
//!   exposed port is reachable from n1 and a port nothing exposes is not;
//! - a mesh replica that keeps failing on one node moves to the other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use xnode_lab::cluster::wait_until as wait;
use xnode_lab::node::{journal, write_spec};
use xnode_lab::{Cluster, Network};

/// The node's DNS responder, where each container's resolver points.
const DNS: &str = "127.0.0.153";
const FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0 \
                     --dns-listen 127.0.0.153:53 --firewall-set inet/lab/xnode_services";
const FLAKY: &str = "xnode-flaky.service";
/// Boot, joining, the hold-down, probes and handovers, on a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

/// Answers one HTTP request per connection (systemd-socket-activate runs it per
/// connection on its stdin and stdout): 200 and a greeting, or 503 while
/// /run/lab-sick exists.
const HANDLER: &str = concat!(
    r#"while read -r line; do case "$line" in "$(printf '\r')"|"") break;; esac; done; "#,
    r#"if [ -e /run/lab-sick ]; then printf 'HTTP/1.0 503 Sick\r\n\r\n'; "#,
    r#"else printf 'HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nhello from n0\n'; fi"#
);

/// A mesh workload that fails at once wherever /run/lab-break exists.
fn flaky() -> Value {
    json!({
        "command": ["/bin/sh", "-c", "[ -e /run/lab-break ] && exit 1; exec sleep infinity"],
        "restart": {"policy": "on-failure", "delay": "200ms"},
        "placement": {"mesh": {}}
    })
}

fn first_spec(i: usize, net: &Network) -> Vec<u8> {
    Cluster::spec(2, i, net, &json!({"flaky": flaky()}))
}

/// n0 serves `web` on 8080 (exposed) and `hidden` on 8081 (not exposed); n1 runs a
/// client that fetches `web.xnode:8080` every second.
fn full_spec(i: usize, net: &Network) -> Vec<u8> {
    let serve = |port: u16| {
        json!([
            "/usr/bin/systemd-socket-activate",
            "--inetd",
            "-a",
            "-l",
            port.to_string(),
            "/bin/sh",
            "-c",
            HANDLER
        ])
    };
    let workloads = if i == 0 {
        json!({
            "flaky": flaky(),
            "web": {
                "command": serve(8080),
                "expose": [{"service": "web", "port": 8080}],
                "health": {"http": {"port": 8080, "path": "/"}}
            },
            "hidden": {"command": serve(8081)}
        })
    } else {
        json!({
            "flaky": flaky(),
            "client": {"command": ["/bin/bash", "-c",
                "while :; do if exec 3<>/dev/tcp/web.xnode/8080; then \
                 printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; echo \"got: $(tail -n 1 <&3)\"; exec 3<&-; \
                 else echo 'got nothing'; fi; sleep 1; done"]}
        })
    };
    Cluster::spec(2, i, net, &workloads)
}

fn wait_until(what: &str, cluster: &Cluster, done: impl FnMut() -> bool) {
    if wait(SETTLE, done).is_err() {
        let logs: Vec<String> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("n{i}:\n{}", journal(c)))
            .collect();
        panic!("{what}: not after {SETTLE:?}\n{}", logs.join("\n"));
    }
}

/// What n1's resolver makes of `name`: its IPv4 addresses, empty when not found.
fn resolve(cluster: &Cluster, name: &str) -> Vec<String> {
    let out = cluster.nodes[1]
        .exec(&["getent", "ahostsv4", name])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ips: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    ips.dedup();
    ips
}

/// Whether n1 can open a TCP connection to n0's `port` within 3 s.
fn reachable(cluster: &Cluster, port: u16) -> bool {
    let target = format!("/dev/tcp/{}/{port}", cluster.net.address(0));
    let script = format!("exec 3<>{target}");
    cluster.nodes[1]
        .exec(&["timeout", "3", "bash", "-c", &script])
        .unwrap()
        .status
        .success()
}

fn client_lines(cluster: &Cluster) -> String {
    cluster.nodes[1]
        .sh("journalctl -u xnode-client.service --no-pager -o cat")
        .unwrap_or_default()
}

#[test]
fn services_are_reached_by_name_through_the_firewall_and_failing_replicas_move() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xnoded"));
    let cluster = Cluster::boot(bin.parent().unwrap(), 2, FLAGS, first_spec).unwrap();
    for c in &cluster.nodes {
        c.sh(&format!("echo 'nameserver {DNS}' > /etc/resolv.conf"))
            .unwrap();
    }
    // A firewall as NixOS' drops what other hosts send to the service ports unless
    // the set holds them.
    for c in &cluster.nodes {
        c.sh("nft -f - <<'EOF'
table inet lab {
  set xnode_services { type inet_proto . inet_service; }
  chain input {
    type filter hook input priority 0; policy accept;
    iif lo accept
    meta l4proto . th dport @xnode_services accept
    tcp dport 8000-8999 drop
  }
}
EOF")
            .unwrap();
    }
    wait_until("the mesh places flaky", &cluster, || {
        cluster.running(FLAKY).len() == 1
    });
    for i in 0..2 {
        write_spec(&cluster.nodes[i], &full_spec(i, &cluster.net)).unwrap();
    }

    // The exposed port is in the set and reachable; the other is dropped.
    let n0 = cluster.net.address(0);
    wait_until("web.xnode resolves to n0", &cluster, || {
        resolve(&cluster, "web.xnode") == [n0.clone()]
    });
    let set = cluster.nodes[0]
        .sh("nft list set inet lab xnode_services")
        .unwrap();
    // nft shows the protocol by number: 6 is TCP.
    assert!(set.contains("6 . 8080"), "{set}");
    assert!(!set.contains("8081"), "{set}");
    assert!(reachable(&cluster, 8080));
    assert!(!reachable(&cluster, 8081), "a port nothing exposes is open");
    assert!(resolve(&cluster, "hidden.xnode").is_empty());

    // A workload on n1 reaches the service by its name.
    wait_until("n1's client gets n0's greeting", &cluster, || {
        client_lines(&cluster).contains("got: hello from n0")
    });

    // n0's probe fails: the name drops out of n1's answers; it passes: the name is back.
    cluster.nodes[0].sh("touch /run/lab-sick").unwrap();
    wait_until("web.xnode drops out", &cluster, || {
        resolve(&cluster, "web.xnode").is_empty()
    });
    cluster.nodes[0].sh("rm /run/lab-sick").unwrap();
    wait_until("web.xnode is back", &cluster, || {
        resolve(&cluster, "web.xnode") == [n0.clone()]
    });

    // The flaky replica breaks where it runs: it is withdrawn there, and runs on the
    // other node.
    let broken = cluster.running(FLAKY)[0];
    let other = 1 - broken;
    cluster.nodes[broken].sh("touch /run/lab-break").unwrap();
    cluster.nodes[broken]
        .sh(&format!("systemctl kill -s KILL {FLAKY}"))
        .unwrap();
    // It runs on the other node, and the node it left says why (within the first
    // withdrawal's minute, which the move takes a few seconds of).
    wait_until("flaky moves to the other node", &cluster, || {
        let placement = cluster.placement(broken);
        let withdrawn = placement["workloads"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == "flaky"))
            .is_some_and(|w| {
                w["here"] == "withdrawn" && w["running_on"] == json!([format!("n{other}")])
            });
        withdrawn && cluster.running(FLAKY) == [other]
    });
    let log = journal(&cluster.nodes[broken]);
    assert!(log.contains("flaky keeps failing here"), "{log}");
    // And its agent is idle again: the withdrawal does not keep waking its loop.
    let busy = cpu_seconds(&cluster.nodes[broken], Duration::from_secs(5));
    assert!(
        busy < 2.5,
        "xnoded used {busy:.2} s of CPU in 5 s after the withdrawal"
    );
}

/// The CPU time xnoded uses in `over`, from its /proc stat (user and system ticks).
fn cpu_seconds(c: &xnode_lab::Container, over: Duration) -> f64 {
    let ticks = || -> f64 {
        let stat = c
            .sh("cat /proc/$(systemctl show -p MainPID --value xnoded.service)/stat")
            .unwrap();
        // The fields after the command's closing parenthesis; utime and stime are the
        // 14th and 15th of the whole line.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        n(11) + n(12)
    };
    let hz: f64 = c
        .sh("getconf CLK_TCK")
        .unwrap()
        .trim()
        .parse()
        .unwrap_or(100.0);
    let before = ticks();
    std::thread::sleep(over);
    (ticks() - before) / hz
}
