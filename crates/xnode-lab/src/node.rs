//! An Xnode in a container: xnoded installed as the Type=notify service a node runs,
//! with a spec file to watch.

use std::path::Path;

use crate::{Container, LabError, Options};

/// xnoded's flags in the lab: quicker polling for tests, a free metrics port, since
/// containers share the host's loopback, and no mesh (its tests set the mesh up).
pub const TEST_FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0 --no-mesh";

/// The `[Service]` settings of xnoded's unit on every node, sandbox included: the NixOS
/// module reads the same file, so the lab runs xnoded exactly as confined as a node.
const SERVICE: &str = include_str!("../../../modules/xnoded-service.json");

/// What xnoded keeps of root's powers with `flags`, as the NixOS module gives them
/// (beside CAP_CHOWN for an API group): reading and deleting workloads' state
/// directories, which their dynamic users own with mode 0700; with a firewall set,
/// changing it; with a DNS responder, binding port 53.
pub fn capabilities(flags: &str) -> String {
    let mut caps = vec!["CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE"];
    if flags.contains("--firewall-set") {
        caps.push("CAP_NET_ADMIN");
    }
    if flags.contains("--dns-listen") {
        caps.push("CAP_NET_BIND_SERVICE");
    }
    caps.join(" ")
}

/// xnoded's unit, as a node runs it, with `flags`; it restarts sooner than on a node,
/// for quicker tests.
pub fn xnoded_unit(flags: &str) -> Result<String, LabError> {
    let settings: serde_json::Map<String, serde_json::Value> = serde_json::from_str(SERVICE)
        .map_err(|e| LabError::Command {
            what: "reading modules/xnoded-service.json".into(),
            detail: e.to_string(),
        })?;
    let mut unit = String::from("[Unit]\nDescription=XnodeOS agent\n[Service]\n");
    for (key, value) in &settings {
        // As NixOS renders serviceConfig: a list is one line per item.
        let items = match value {
            serde_json::Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in items {
            let text = match item {
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            unit.push_str(&format!("{key}={text}\n"));
        }
    }
    unit.push_str(&format!(
        "ReadWritePaths=/var/lib/xnode\nCapabilityBoundingSet={}\n\
         ExecStart=/opt/xnode/xnoded {flags}\nRestartSec=500ms\n",
        capabilities(flags)
    ));
    Ok(unit)
}

/// Boots a container with the binaries in `bin_dir` at /opt/xnode (xnoded, and
/// xnodectl if there), writes `spec` to /etc/xnode/spec.json and starts xnoded. The
/// start returns once xnoded has reported ready, after its first reconcile.
pub fn boot_node(bin_dir: &Path, spec: &[u8]) -> Result<Container, LabError> {
    boot_node_with(bin_dir, spec, TEST_FLAGS)
}

/// [`boot_node`] with xnoded's flags of your choice.
pub fn boot_node_with(bin_dir: &Path, spec: &[u8], flags: &str) -> Result<Container, LabError> {
    boot_node_in(bin_dir, spec, flags, None)
}

/// [`boot_node_with`], in a network namespace (a [`crate::Network`] host) if given.
pub fn boot_node_in(
    bin_dir: &Path,
    spec: &[u8],
    flags: &str,
    netns: Option<&str>,
) -> Result<Container, LabError> {
    let c = Container::boot_with(&Options {
        bind_ro: vec![(bin_dir.to_owned(), "/opt/xnode".into())],
        netns: netns.map(str::to_owned),
    })?;
    let write = |inside: &str, bytes: &[u8]| {
        let path = c.path(inside);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
        }
        std::fs::write(&path, bytes).map_err(LabError::io(format!("cannot write {inside}")))
    };
    write("/etc/xnode/spec.json", spec)?;
    use crate::fleet::{JOIN_KEY_PATH, SECOND_JOIN_KEY_PATH, join_key_text, owner, second_owner};
    for (path, owner) in [
        (JOIN_KEY_PATH, owner()),
        (SECOND_JOIN_KEY_PATH, second_owner()),
    ] {
        let key = join_key_text(&owner).map_err(|detail| LabError::Command {
            what: "making a join key".into(),
            detail,
        })?;
        write(path, key.as_bytes())?;
    }
    write(
        "/etc/systemd/system/xnoded.service",
        xnoded_unit(flags)?.as_bytes(),
    )?;
    write(
        "/usr/local/bin/xnodectl",
        b"#!/bin/sh\nexec /opt/xnode/xnodectl \"$@\"\n",
    )?;
    // What the NixOS module's tmpfiles rules make: the directories the sandbox opens.
    c.sh(
        "mkdir -p -m 0700 /var/lib/xnode /var/lib/private && mkdir -p /run/systemd/system \
          && chmod 755 /usr/local/bin/xnodectl && chmod 600 /etc/xnode/join*.key \
          && systemctl daemon-reload",
    )?;
    if let Err(e) = c.sh("systemctl start xnoded.service") {
        // Say why: the unit's own log is the one place that does.
        let log = c
            .sh("journalctl -u xnoded.service --no-pager -o cat | tail -n 20")
            .unwrap_or_default();
        return Err(LabError::Command {
            what: "starting xnoded".into(),
            detail: format!("{e}\n{log}"),
        });
    }
    Ok(c)
}

/// One request to the node's xnoded through its API socket (a health-gated apply may
/// take minutes).
pub fn api(
    c: &Container,
    request: xnode_api::Request,
) -> Result<serde_json::Value, xnode_api::ClientError> {
    xnode_api::call(
        &c.path("/run/xnode/api.sock"),
        request,
        std::time::Duration::from_secs(120),
    )
}

/// One HTTP/1.1 request over a unix socket, as `curl --unix-socket` makes it: the
/// status code and the body as JSON (null when it is not JSON).
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let (code, text) = http_text(socket, method, path, body)?;
    Ok((code, serde_json::from_str(&text).unwrap_or_default()))
}

/// One HTTP/1.1 request over a unix socket: the status code and the body as text. A
/// test's client, so it reads the whole answer (`Connection: close`) and needs no
/// chunked bodies.
pub fn http_text(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: xnode\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// xnoded's own journal, to say what it did when a test fails.
pub fn journal(c: &Container) -> String {
    c.sh("journalctl -u xnoded.service --no-pager -o cat")
        .unwrap_or_default()
}

/// Waits until `check` holds for the node's `status`; the last status and xnoded's
/// journal when it never does.
pub fn wait_status(
    c: &Container,
    what: &str,
    timeout: std::time::Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    loop {
        if let Ok(s) = api(c, xnode_api::Request::Status) {
            if check(&s) {
                return Ok(s);
            }
            last = s;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{what} never happened; last status: {last:#}\nxnoded's journal:\n{}",
                journal(c)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The generation a status names, 0 for none.
pub fn generation(status: &serde_json::Value) -> u64 {
    status["generation"]["number"].as_u64().unwrap_or(0)
}

/// `systemctl is-active` of a unit: `active`, `inactive`, `failed`, …
pub fn active(c: &Container, unit: &str) -> String {
    c.sh(&format!("systemctl is-active {unit} || true"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Replaces the node's spec file at once, as an editor that renames does.
pub fn write_spec(c: &Container, bytes: &[u8]) -> Result<(), LabError> {
    let path = c.path("/etc/xnode/spec.json");
    let temp = c.path("/etc/xnode/.spec.json.new");
    std::fs::write(&temp, bytes).map_err(LabError::io("cannot write the new spec"))?;
    std::fs::rename(temp, path).map_err(LabError::io("cannot replace the spec"))
}

/// A TCP port free on the host's loopback now, for a node's mesh or HTTPS listener
/// (lab containers share the host's network unless given a namespace).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}
