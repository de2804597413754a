//! Real mesh nodes as separate processes (`xnode-meshd`) on 127.0.0.1: started, killed
//! with SIGKILL, restarted with the same identity, and watched through what they print.

#![allow(dead_code)] // each test binary uses part of this

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One node's process and everything it printed.
pub struct Proc {
    pub name: String,
    pub peer_id: String,
    pub listen: String,
    child: Child,
    stdin: ChildStdin,
    lines: Arc<(Mutex<Vec<Value>>, Condvar)>,
    seen: usize,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    /// The fleet's owner; every node started joins with its join key.
    pub owner: xnode_spec::keys::OwnerKey,
    /// The join key's file.
    pub join_key: PathBuf,
    pub nodes: BTreeMap<String, Proc>,
    /// The first node's name and address: everyone's bootstrap peer.
    bootstrap: Option<(String, String)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("xnode-mesh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let owner =
            xnode_spec::keys::OwnerKey::generate(xnode_spec::keys::KeyKind::Ed25519).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let key = xnode_spec::fleet::JoinKey::create(&owner, now + 3600).unwrap();
        let join_key = dir.join("join.key");
        std::fs::write(&join_key, serde_json::to_vec(&key).unwrap()).unwrap();
        Cluster {
            dir,
            owner,
            join_key,
            nodes: BTreeMap::new(),
            bootstrap: None,
        }
    }

    /// Starts a node in the fleet (with its join key, unless `extra` says otherwise:
    /// `--owner` alone claims the fleet without being admitted); the first one started
    /// is everyone's bootstrap peer, unless `extra` names another.
    pub fn start(&mut self, name: &str, extra: &[&str]) -> &mut Proc {
        let listen = match &self.bootstrap {
            None => format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            // The bootstrap peer comes back where everyone looks for it.
            Some((first, address)) if first == name => address.clone(),
            Some(_) => "/ip4/127.0.0.1/tcp/0".into(),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xnode-meshd"));
        cmd.arg("--state-dir")
            .arg(self.dir.join(name))
            .args(["--name", name, "--listen", &listen])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if !extra.iter().any(|a| *a == "--owner" || *a == "--join-key") {
            cmd.arg("--join-key").arg(&self.join_key);
        }
        if let Some((first, address)) = &self.bootstrap
            && first != name
            && !extra.contains(&"--bootstrap")
        {
            cmd.args(["--bootstrap", address]);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.0.lock().unwrap().push(v);
                    sink.1.notify_all();
                }
            }
        });
        let mut proc = Proc {
            name: name.into(),
            peer_id: String::new(),
            listen: String::new(),
            child,
            stdin,
            lines,
            seen: 0,
        };
        let ready = proc.wait_line("ready", Duration::from_secs(30), |v| v["kind"] == "ready");
        proc.peer_id = ready["peer_id"].as_str().unwrap().into();
        proc.listen = ready["listen"][0].as_str().unwrap().into();
        if self.bootstrap.is_none() {
            self.bootstrap = Some((name.to_owned(), proc.listen.clone()));
        }
        self.nodes.insert(name.into(), proc);
        self.nodes.get_mut(name).unwrap()
    }

    /// SIGSTOP or SIGCONT: a node that hangs with its connections still open.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self.nodes[name].child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGKILL, as `kill -9`. Returns when it was sent.
    pub fn kill(&mut self, name: &str) -> Instant {
        let mut proc = self.nodes.remove(name).unwrap();
        let at = Instant::now();
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
        at
    }

    /// Waits until `check` holds on every node's members view (polling `members`).
    pub fn wait_all(
        &mut self,
        what: &str,
        deadline: Duration,
        check: impl Fn(&str, &[Value]) -> bool,
    ) {
        self.wait_except(None, what, deadline, check);
    }

    /// As [`Cluster::wait_all`], leaving out one node (a frozen one cannot answer).
    pub fn wait_except(
        &mut self,
        except: Option<&str>,
        what: &str,
        deadline: Duration,
        check: impl Fn(&str, &[Value]) -> bool,
    ) {
        let until = Instant::now() + deadline;
        loop {
            let mut pending = Vec::new();
            for (name, proc) in self
                .nodes
                .iter_mut()
                .filter(|(n, _)| Some(n.as_str()) != except)
            {
                let members = proc.request("members")["members"]
                    .as_array()
                    .unwrap()
                    .clone();
                if !check(name, &members) {
                    pending.push(name.clone());
                }
            }
            if pending.is_empty() {
                return;
            }
            assert!(Instant::now() < until, "{what}: not yet on {pending:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The peer ids a members view shows in `state`.
pub fn in_state(members: &[Value], state: &str) -> BTreeSet<String> {
    members
        .iter()
        .filter(|m| m["state"] == state)
        .map(|m| m["peer_id"].as_str().unwrap().to_owned())
        .collect()
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a printed line that `check` accepts, after those already taken.
    pub fn wait_line(
        &mut self,
        what: &str,
        deadline: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            {
                let (lock, arrived) = &*self.lines;
                let mut lines = lock.lock().unwrap();
                if self.seen == lines.len() {
                    // Woken by the next line, or after a while to look at the process.
                    let timeout = Duration::from_millis(100);
                    lines = arrived.wait_timeout(lines, timeout).unwrap().0;
                }
                while self.seen < lines.len() {
                    let line = lines[self.seen].clone();
                    self.seen += 1;
                    if check(&line) {
                        return line;
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{}: exited ({status}) while waiting for {what}", self.name);
            }
            assert!(Instant::now() < until, "{}: no {what}", self.name);
        }
    }

    /// Every `member` event printed so far.
    pub fn member_events(&self) -> Vec<Value> {
        let lines = self.lines.0.lock().unwrap();
        lines
            .iter()
            .filter(|v| v["kind"] == "member")
            .cloned()
            .collect()
    }

    /// Sends a request line and returns its answer.
    pub fn request(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let kind = line.split_whitespace().next().unwrap().to_owned();
        self.wait_line(line, Duration::from_secs(10), |v| {
            v["kind"] == kind.as_str()
        })
    }
}

/// A libp2p peer of a fresh identity that is no node: the attacker, speaking whatever
/// `behaviour` speaks, over the same transport as the nodes.
pub fn hostile_swarm<B: libp2p::swarm::NetworkBehaviour>(
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| behaviour(key))
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// The resident memory of process `pid`, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An attacker's gossip peer on `topic`, with a fresh identity.
pub fn gossip_swarm(
    topic: &libp2p::gossipsub::IdentTopic,
) -> libp2p::Swarm<libp2p::gossipsub::Behaviour> {
    let mut swarm = hostile_swarm(|key| {
        libp2p::gossipsub::Behaviour::new(
            libp2p::gossipsub::MessageAuthenticity::Signed(key.clone()),
            libp2p::gossipsub::ConfigBuilder::default()
                .heartbeat_initial_delay(Duration::from_millis(100))
                .heartbeat_interval(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .unwrap()
    });
    swarm.behaviour_mut().subscribe(topic).unwrap();
    swarm
}

/// A heartbeat message with `cert`, saying it is `node`, its `seq`-th, claiming to
/// have been settled for `settled_ms`.
pub fn heartbeat(
    cert: xnode_spec::fleet::Certificate,
    node: &str,
    seq: u64,
    settled_ms: u64,
) -> Vec<u8> {
    use xnode_mesh::message::{Heartbeat, Message};
    Message::Heartbeat(Box::new(Heartbeat {
        cert,
        node: node.into(),
        incarnation: 1,
        seq,
        labels: Default::default(),
        resources: Default::default(),
        services: vec![],
        addresses: vec![],
        settled_ms,
        offers: Default::default(),
        running: Default::default(),
        report: None,
        closures: Default::default(),
    }))
    .encode()
}
