//! `xnoded`: the XnodeOS node agent. Parse the settings, open the state, connect to
//! systemd, serve the API, and run the reconcile loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tracing::{error, info};
use xnode_agent::deploy::Agent;
use xnode_agent::firewall::NftSet;
use xnode_agent::mesh::Mesh;
use xnode_agent::metrics::{self, Metrics};
use xnode_agent::nix::NixStore;
use xnode_agent::remote::tls::Identity;
use xnode_agent::secrets::Secrets;
use xnode_agent::service::{Service, Settings};
use xnode_agent::store::Store;
use xnode_agent::units::Reconnecting;
use xnode_agent::{nix_peers, server, watchdog};
use xnode_api::node::RemoteStatus;
use xnode_mesh::fleet::JoinKey;
use xnode_spec::unit::SECRETS_DIR;
use xnode_systemd::Config;

/// The XnodeOS node agent: keeps this node's systemd units as its spec says.
#[derive(Debug, Parser)]
#[command(name = "xnoded", version, about)]
struct Args {
    /// The spec file to watch.
    #[arg(long, default_value = "/etc/xnode/spec.json", value_name = "FILE")]
    spec: PathBuf,
    /// Where generations and history are kept.
    #[arg(long, default_value = "/var/lib/xnode", value_name = "DIR")]
    state_dir: PathBuf,
    /// The API socket.
    #[arg(long, default_value = xnode_api::DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// A group whose members may use the API besides root.
    #[arg(long, value_name = "GROUP")]
    api_group: Option<String>,
    /// Seconds between reconcile passes when nothing happens.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    interval: u64,
    /// Milliseconds between looks at the spec file.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    file_poll: u64,
    /// Where to serve Prometheus metrics; port 0 picks a free port (see `status`).
    #[arg(long, default_value = "127.0.0.1:9477", value_name = "ADDR")]
    metrics_address: SocketAddr,
    /// Stay out of the mesh (the spec's `mesh` section is then unused).
    #[arg(long)]
    no_mesh: bool,
    /// A join key (from `xnodectl fleet join-key`) that admits this node to its owner's
    /// fleet. The certificate it makes is kept in the state directory, so the file may
    /// be deleted once the node is a member.
    #[arg(long, value_name = "FILE")]
    join_key: Option<PathBuf>,
    /// Answer DNS for the `xnode` domain here (UDP and TCP), from the mesh's healthy
    /// providers: `<service>.xnode`. Off unless given; the NixOS module uses
    /// 127.0.0.153:53 and routes the domain to it through systemd-resolved.
    #[arg(long, value_name = "ADDR")]
    dns_listen: Option<SocketAddr>,
    /// Serve the API over HTTPS here, for the console and remote clients: reads need a
    /// session the owner signed, changes the owner's signature. Off unless given. The
    /// certificate is made on first start in STATE_DIR/tls (its fingerprint is in
    /// `xnodectl status`); put one of your own there to replace it.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Keep this nftables set (FAMILY/TABLE/SET, of type `inet_proto . inet_service`)
    /// holding the ports the workloads here expose, for the firewall to accept, for
    /// example inet/nixos-fw/xnode_services. Off unless given.
    #[arg(long, value_name = "SET")]
    firewall_set: Option<NftSet>,
    /// Serve a local binary cache here (a loopback address) for this node's Nix to
    /// substitute from: it fetches store paths from the fleet's members, and Nix checks
    /// them against its trusted keys. The NixOS module uses 127.0.0.1:5391 and adds it
    /// to nix.settings.substituters. Off unless given, and without the mesh.
    #[arg(long, value_name = "ADDR")]
    nix_cache_listen: Option<SocketAddr>,
    /// Bytes a second that one member's fetches from this node may take, together.
    #[arg(long, default_value_t = xnode_nix::Limits::default().peer_rate, value_name = "BYTES")]
    nix_peer_rate: u64,
    /// How many members past a mesh workload's owners fetch its closure ahead, so a
    /// failover onto one waits for no download; 0 leaves it to the owners.
    #[arg(long, default_value_t = 1, value_name = "N")]
    standbys: usize,
    /// A test hook: serve every NAR with one byte changed, as a broken peer would.
    #[arg(long, hide = true)]
    nix_corrupt_nars: bool,
}

/// The join key in `path`, if there is a usable one. A file that is gone is no key (it
/// may be deleted once the node is admitted); one that cannot be used is reported and
/// left aside, so a bad key never keeps the node's own workloads from running (the
/// node then says in `status` that it is not admitted).
fn read_join_key(path: Option<&Path>) -> Option<JoinKey> {
    let path = path?;
    match std::fs::read_to_string(path) {
        Ok(text) => JoinKey::parse(&text)
            .map_err(|e| error!(path = %path.display(), "the join key cannot be used: {e}"))
            .ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(path = %path.display(), "no join key there (fine once the node is admitted)");
            None
        }
        Err(e) => {
            error!(path = %path.display(), "cannot read the join key: {e}");
            None
        }
    }
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    // Under systemd (JOURNAL_STREAM is set) log structured fields to journald.
    let journald = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_logging();
    let store = Store::open(&args.state_dir).await.with_context(|| {
        format!(
            "cannot open the state directory {}",
            args.state_dir.display()
        )
    })?;
    let units = Reconnecting::connect(Config::default())
        .await
        .context("cannot start without systemd")?;
    let gid = args
        .api_group
        .as_deref()
        .map(server::group_id)
        .transpose()?;
    let listener = server::bind(&args.socket, gid)?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let join_key = read_join_key(args.join_key.as_deref());
    let mesh = (!args.no_mesh).then(|| {
        let mesh_metrics = xnode_mesh::Metrics::register(&mut registry);
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        (
            Mesh::new(args.state_dir.clone(), join_key, mesh_metrics, events),
            receiver,
        )
    });
    if let Some((mesh, _)) = &mesh {
        let cache = match args.nix_cache_listen {
            Some(addr) => Some(
                nix_peers::bind_cache(addr)
                    .await
                    .with_context(|| format!("cannot serve the local binary cache on {addr}"))?,
            ),
            None => None,
        };
        let settings = nix_peers::Settings {
            cache,
            limits: xnode_nix::Limits {
                peer_rate: args.nix_peer_rate,
                ..Default::default()
            },
            corrupt: args.nix_corrupt_nars,
        };
        tokio::spawn(nix_peers::run(mesh.handles(), settings));
    }
    let (metrics_listener, metrics_address) = metrics::bind(args.metrics_address)
        .await
        .with_context(|| format!("cannot serve metrics on {}", args.metrics_address))?;
    let registry = Arc::new(registry);
    tokio::spawn(metrics::serve(metrics_listener, Arc::clone(&registry)));
    let remote = match args.http_listen {
        Some(addr) => Some(remote_listener(addr, &args.state_dir).await?),
        None => None,
    };
    let settings = Settings {
        spec_file: args.spec.clone(),
        file_poll: Duration::from_millis(args.file_poll),
        interval: Duration::from_secs(args.interval),
        metrics_address: Some(metrics_address),
        owner_file: args.socket.parent().map(|dir| dir.join("owner")),
        firewall: args.firewall_set.clone(),
        remote: remote.as_ref().map(|(_, identity, address)| RemoteStatus {
            address: format!("https://{address}"),
            fingerprint: identity.fingerprint.clone(),
        }),
        standbys: args.standbys,
    };
    let agent = Agent {
        units: Arc::new(units),
        nix: NixStore,
        secrets: Secrets::new(&args.state_dir, SECRETS_DIR.into()),
        store,
    };
    if let Some(addr) = args.dns_listen {
        let sockets = xnode_agent::dns::bind(addr)
            .await
            .with_context(|| format!("cannot answer DNS on {addr}"))?;
        let handles = match &mesh {
            Some((mesh, _)) => mesh.handles(),
            None => tokio::sync::watch::channel(None).1,
        };
        tokio::spawn(xnode_agent::dns::serve(sockets, handles));
        info!(%addr, "answering DNS for the xnode domain");
    }
    let service = Service::new(agent, settings, metrics, mesh);
    let (tx, rx) = mpsc::channel(64);
    let api = xnode_agent::http::Api {
        commands: tx,
        registry,
    };
    if let Some((listener, identity, address)) = remote {
        info!(%address, fingerprint = identity.fingerprint, "serving the API over HTTPS");
        tokio::spawn(xnode_agent::remote::serve(listener, identity, api.clone()));
    }
    tokio::spawn(server::serve(listener, gid, api));
    let socket = args.socket.display().to_string();
    let ready = move || {
        watchdog::ready();
        info!(socket, metrics = %metrics_address, "xnoded is ready");
    };
    tokio::select! {
        () = service.run(rx, ready) => {}
        _ = tokio::signal::ctrl_c() => info!("stopping"),
    }
    Ok(())
}

/// The remote API's listener and certificate (made on first start).
async fn remote_listener(
    addr: SocketAddr,
    state_dir: &Path,
) -> Result<(tokio::net::TcpListener, Identity, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the API over HTTPS on {addr}"))?;
    let address = listener.local_addr()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut names = vec![
        "xnode".to_owned(),
        "localhost".to_owned(),
        address.ip().to_string(),
    ];
    names.extend(Some(host.trim().to_owned()).filter(|h| !h.is_empty()));
    let identity = xnode_agent::remote::tls::load_or_make(&state_dir.join("tls"), &names)
        .context("cannot have a TLS certificate for the remote API")?;
    Ok((listener, identity, address))
}
