//! Who may use the API: root and members of the API group, and nobody else — checked
//! with real processes of other users against a real socket. Needs root (to run the
//! clients as other users with setpriv).
//!
//! The clients are this test binary itself, run again as another user with
//! `XNODE_TEST_CLIENT` set, executing the ignored `client` test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use xnode_agent::server;
use xnode_agent::service::{Command as AgentCommand, Reply};
use xnode_api::Request;

/// The API group in this test: one no real user has as its primary group.
const GROUP: u32 = 4242;
const NOBODY: &str = "65534";

#[test]
#[ignore = "run only as the client of api_access_is_root_and_the_api_group_only"]
fn client() {
    let Ok(socket) = std::env::var("XNODE_TEST_CLIENT") else {
        return;
    };
    let socket = PathBuf::from(socket);
    let verdict = |got: Result<serde_json::Value, xnode_api::ClientError>| match got {
        Ok(v) => format!("ANSWER {v}"),
        Err(e) => format!("REFUSED {e}"),
    };
    let status = xnode_api::call(&socket, Request::Status, Duration::from_secs(10));
    // A request too large for one socket buffer: refused all the same, not cut off.
    let spec = serde_json::Value::String("x".repeat(4 << 20));
    let large = xnode_api::call(&socket, Request::Plan { spec }, Duration::from_secs(10));
    println!("CLIENT {} / large: {}", verdict(status), verdict(large));
    match xnode_lab::node::http(&socket, "GET", "/v1/status", None) {
        Ok((code, body)) => println!("HTTP {code} {body}"),
        Err(e) => println!("HTTP failed: {e}"),
    }
}

/// Runs the client as `uid`/`gid` with supplementary `groups`; returns its verdicts,
/// through `xnode_api::call` and as plain HTTP.
fn as_user(socket: &str, uid: &str, gid: &str, groups: &str) -> (String, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", uid, "--regid", gid, "--groups", groups, "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("XNODE_TEST_CLIENT", socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let http = stdout
        .lines()
        .find_map(|l| l.find("HTTP ").map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| panic!("no HTTP verdict from the client: {stdout}"));
    let client = stdout
        .lines()
        .find_map(|l| l.find("CLIENT ").map(|i| l[i + 7..].to_owned()))
        .unwrap_or_else(|| {
            panic!(
                "no verdict from the client: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (client, http)
}

#[tokio::test]
async fn api_access_is_root_and_the_api_group_only() {
    let dir = std::env::temp_dir().join(format!("xnode-api-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("api.sock");
    let listener = server::bind(&path, Some(GROUP)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<AgentCommand>(4);
    let api = xnode_agent::http::Api {
        commands: tx,
        registry: Default::default(),
    };
    tokio::spawn(server::serve(listener, Some(GROUP), api));
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            let reply = match command {
                AgentCommand::Request(_, reply)
                | AgentCommand::Apply { reply, .. }
                | AgentCommand::Plan { reply, .. } => reply,
            };
            let _ = reply.send(Reply::ok("pong"));
        }
    });
    let socket = path.to_str().unwrap().to_owned();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let verdicts = tokio::task::spawn_blocking(move || {
        let root = as_user(&socket, "0", "0", "0");
        let member = as_user(&socket, NOBODY, NOBODY, &GROUP.to_string());
        let primary = as_user(&socket, NOBODY, &GROUP.to_string(), NOBODY);
        let stranger = as_user(&socket, NOBODY, NOBODY, NOBODY);
        // With the file's mode opened up, the SO_PEERCRED check alone still refuses.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let stranger_open = as_user(&socket, NOBODY, NOBODY, NOBODY);
        [root, member, primary, stranger, stranger_open]
    })
    .await
    .unwrap();
    let [root, member, primary, stranger, stranger_open] = verdicts;
    // Over HTTP on the same socket, the same rule.
    assert_eq!(root.1, "HTTP 200 \"pong\"");
    assert_eq!(member.1, "HTTP 200 \"pong\"");
    assert_eq!(primary.1, "HTTP 200 \"pong\"");
    assert!(stranger.1.starts_with("HTTP failed"), "{}", stranger.1);
    assert!(
        stranger_open.1.starts_with("HTTP 403 ")
            && stranger_open.1.contains("\"code\":\"forbidden\""),
        "{}",
        stranger_open.1
    );
    // And through the client library.
    let [root, member, primary, stranger, stranger_open] =
        [root, member, primary, stranger, stranger_open].map(|(client, _)| client);
    let pong = "ANSWER \"pong\" / large: REFUSED the spec has 1 problem";
    assert!(root.starts_with(pong), "{root}");
    assert!(
        member.starts_with(pong),
        "a supplementary member of the API group: {member}"
    );
    assert!(
        primary.starts_with(pong),
        "the API group as primary group: {primary}"
    );
    assert!(
        stranger.starts_with("REFUSED cannot reach xnoded")
            && stranger.contains("Permission denied"),
        "{stranger}"
    );
    let refused = "REFUSED permission denied: the xnoded API answers root";
    assert!(
        stranger_open.starts_with(refused) && stranger_open.contains(&format!("large: {refused}")),
        "{stranger_open}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
