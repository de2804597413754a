//! Exposed ports reachable from other nodes, and nothing else: xnoded keeps an
//! nftables set of the `protocol . port` pairs that the workloads running here expose
//! (local ones, and the mesh ones placed here), and the firewall accepts what the set
//! holds. A push that adds a service opens its port with no rebuild; one that removes
//! it, or placement moving a workload away, closes it.
//!
//! The set belongs to the firewall's table (on NixOS, `inet nixos-fw`), so a reload of
//! the firewall empties it; it is written again every [`EVERY`], and at once on a
//! change. Each write is one nft transaction (flush and fill), so a port in the set
//! never flickers closed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;
use xnode_spec::Validated;

/// How often the set is written though nothing changed.
pub const EVERY: Duration = Duration::from_secs(30);

/// How long one run of nft may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// An nftables set: `FAMILY/TABLE/SET`, of type `inet_proto . inet_service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    family: String,
    table: String,
    set: String,
}

/// Why a set's name cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadSet {
    /// Not three parts.
    #[error("{0:?} is not FAMILY/TABLE/SET (for example inet/nixos-fw/xnode_services)")]
    Shape(String),
    /// A family nftables filters ports in.
    #[error("{0:?} is not a family of nftables tables here: use inet, ip or ip6")]
    Family(String),
    /// A name nft would read as something else.
    #[error(
        "{0:?} is not a table or set name nft takes: a letter, then letters, digits, '_' \
         or '-', at most 64"
    )]
    Name(String),
}

fn identifier(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl std::str::FromStr for NftSet {
    type Err = BadSet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let [family, table, set] = parts.as_slice() else {
            return Err(BadSet::Shape(s.to_owned()));
        };
        if !matches!(*family, "inet" | "ip" | "ip6") {
            return Err(BadSet::Family((*family).to_owned()));
        }
        for name in [table, set] {
            if !identifier(name) {
                return Err(BadSet::Name((*name).to_owned()));
            }
        }
        Ok(NftSet {
            family: (*family).to_owned(),
            table: (*table).to_owned(),
            set: (*set).to_owned(),
        })
    }
}

impl std::fmt::Display for NftSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.family, self.table, self.set)
    }
}

/// A port to open: (`tcp` or `udp`, port).
pub type Port = (String, u16);

/// The ports the workloads running here expose.
pub fn ports(spec: &Validated, placed: &BTreeSet<String>) -> BTreeSet<Port> {
    crate::mesh::services(&spec.spec, placed, &BTreeSet::new())
        .into_iter()
        .map(|s| (s.protocol, s.port))
        .collect()
}

/// The nft script that makes `set` hold exactly `ports`, in one transaction.
pub fn script(set: &NftSet, ports: &BTreeSet<Port>) -> String {
    let mut out = format!("flush set {set}\n");
    if !ports.is_empty() {
        let elements: Vec<String> = ports
            .iter()
            .map(|(protocol, port)| format!("{protocol} . {port}"))
            .collect();
        out.push_str(&format!(
            "add element {set} {{ {} }}\n",
            elements.join(", ")
        ));
    }
    out
}

/// Runs `script` through `nft -f -`.
async fn nft(script: &str) -> Result<(), String> {
    let run = async {
        let mut child = tokio::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|e| format!("cannot write to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("nft did not finish: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(format!("nft took over {} s", NFT_TIMEOUT.as_secs())))
}

/// Keeps `set` holding the ports the spec in force exposes here, beside the loop.
/// Ends when the spec's sender goes.
pub async fn run(
    set: NftSet,
    mut spec: watch::Receiver<Option<Arc<Validated>>>,
    mut placed: watch::Receiver<BTreeSet<String>>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written: Option<BTreeSet<Port>> = None;
    let mut failing: Option<String> = None;
    loop {
        let due = tokio::select! {
            _ = tick.tick() => true,
            changed = spec.changed() => if changed.is_err() { return } else { false },
            changed = placed.changed() => if changed.is_err() { return } else { false },
        };
        let Some(current) = spec.borrow().clone() else {
            continue;
        };
        let want = ports(&current, &placed.borrow());
        if !due && written.as_ref() == Some(&want) {
            continue;
        }
        match nft(&script(&set, &want)).await {
            Ok(()) => {
                if written.as_ref() != Some(&want) || failing.is_some() {
                    tracing::info!("the firewall set {set} opens {}", describe(&want));
                }
                written = Some(want);
                failing = None;
            }
            Err(e) => {
                if failing.as_ref() != Some(&e) {
                    tracing::warn!("cannot open the exposed ports in the firewall set {set}: {e}");
                }
                written = None;
                failing = Some(e);
            }
        }
    }
}

fn describe(ports: &BTreeSet<Port>) -> String {
    if ports.is_empty() {
        return "nothing".into();
    }
    let list: Vec<String> = ports.iter().map(|(p, n)| format!("{n}/{p}")).collect();
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names() {
        let ok: NftSet = "inet/nixos-fw/xnode_services".parse().unwrap();
        assert_eq!(ok.to_string(), "inet nixos-fw xnode_services");
        let bad = [
            ("inet/nixos-fw", BadSet::Shape("inet/nixos-fw".into())),
            ("bridge/t/s", BadSet::Family("bridge".into())),
            (
                "inet/t;flush ruleset/s",
                BadSet::Name("t;flush ruleset".into()),
            ),
            ("inet/t/1s", BadSet::Name("1s".into())),
            ("inet/t/s s", BadSet::Name("s s".into())),
            ("inet//s", BadSet::Name(String::new())),
        ];
        for (text, why) in bad {
            assert_eq!(text.parse::<NftSet>(), Err(why), "{text}");
        }
        let long = format!("inet/t/{}", "s".repeat(65));
        assert!(long.parse::<NftSet>().is_err());
    }

    #[test]
    fn scripts_flush_and_fill_in_one_go() {
        let set: NftSet = "inet/fw/open".parse().unwrap();
        assert_eq!(script(&set, &BTreeSet::new()), "flush set inet fw open\n");
        let ports: BTreeSet<Port> = [
            ("udp".into(), 53),
            ("tcp".into(), 8080),
            ("tcp".into(), 443),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            script(&set, &ports),
            "flush set inet fw open\nadd element inet fw open { tcp . 443, tcp . 8080, udp . 53 }\n"
        );
    }

    #[test]
    fn only_what_runs_here_is_opened() {
        let spec = xnode_spec::parse(
            br#"{"version": 1, "node": {"name": "n", "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, "workloads": {
                "web": {"command": ["/bin/web"], "expose": [{"service": "web", "port": 8080}]},
                "dns": {"command": ["/bin/dns"], "expose": [{"service": "dns", "port": 53, "protocol": "udp"}]},
                "db": {"command": ["/bin/db"], "placement": {"mesh": {}},
                       "expose": [{"service": "db", "port": 5432}]}
            }}"#,
        )
        .unwrap();
        let none = BTreeSet::new();
        let here: BTreeSet<String> = ["db".to_owned()].into_iter().collect();
        let show = |placed| describe(&ports(&spec, placed));
        assert_eq!(show(&none), "8080/tcp, 53/udp");
        assert_eq!(show(&here), "5432/tcp, 8080/tcp, 53/udp");
    }
}
