//! Nix in the lab's nodes as a fleet has it: a signing key the owner signs builds with,
//! and a Nix that trusts that key alone and substitutes only from the node's local
//! binary cache (so only from the fleet's members).

use crate::{Container, LabError};

/// Where xnoded serves the local binary cache in a lab node.
pub const CACHE: &str = "127.0.0.1:5391";
/// xnoded's flag for it.
pub const CACHE_FLAG: &str = "--nix-cache-listen 127.0.0.1:5391";

fn write(c: &Container, inside: &str, text: &str) -> Result<(), LabError> {
    let path = c.path(inside);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
    }
    std::fs::write(&path, text).map_err(LabError::io(format!("cannot write {inside}")))
}

/// A signing key made in `c` as `/tmp/<name>.sk` and `.pk`: its secret and public
/// halves, as Nix writes them (`name:base64`).
pub fn signing_key(c: &Container, name: &str) -> Result<(String, String), LabError> {
    c.sh(&format!(
        "nix-store --generate-binary-cache-key {name}-1 /tmp/{name}.sk /tmp/{name}.pk"
    ))?;
    let read = |ext: &str| {
        std::fs::read_to_string(c.path(format!("/tmp/{name}.{ext}")))
            .map_err(LabError::io(format!("cannot read /tmp/{name}.{ext}")))
    };
    Ok((read("sk")?, read("pk")?))
}

/// Makes `c` a fleet node: the fleet's secret key at `/tmp/fleet.sk` (for the owner's
/// builds there), its public key the only one Nix trusts, and the local binary cache
/// the only substituter, with misses never remembered. The daemon, through which
/// xnoded realises, is restarted to read it.
pub fn join_fleet_store(c: &Container, secret: &str, public: &str) -> Result<(), LabError> {
    write(c, "/tmp/fleet.sk", secret)?;
    write(
        c,
        "/etc/nix/nix.conf",
        &format!(
            "substituters = http://{CACHE}\ntrusted-public-keys = {public}\n\
             narinfo-cache-negative-ttl = 0\nbuild-users-group =\nsandbox = false\n"
        ),
    )?;
    c.sh("systemctl restart nix-daemon.service").map(|_| ())
}

/// Signs `path` and its closure in `c` with the key in `key_file`.
pub fn sign(c: &Container, key_file: &str, path: &str) -> Result<(), LabError> {
    c.sh(&format!(
        "nix --extra-experimental-features nix-command store sign -k {key_file} -r {path}"
    ))
    .map(|_| ())
}

/// Builds the Nix expression `expr` in `c` from nothing but itself (no substituter):
/// the output path.
pub fn build(c: &Container, expr: &str) -> Result<String, LabError> {
    write(c, "/tmp/build.nix", expr)?;
    let out = c.sh(
        "nix-build --no-out-link --option sandbox false --option substituters '' /tmp/build.nix",
    )?;
    Ok(out.trim().to_owned())
}

/// Adds `mib` MiB of random bytes to `c`'s store as the path `name`.
pub fn add_random(c: &Container, name: &str, mib: usize) -> Result<String, LabError> {
    let out = c.sh(&format!(
        "head -c {mib}M /dev/urandom > /tmp/{name} && nix-store --add /tmp/{name} && rm /tmp/{name}"
    ))?;
    Ok(out.trim().to_owned())
}

/// The spec of node `i` of `n` (as [`crate::Cluster::spec`]), labelled `role`: node 0
/// a `builder`, the others `worker`s.
pub fn role_spec(
    n: usize,
    i: usize,
    net: &crate::Network,
    workloads: &serde_json::Value,
) -> Vec<u8> {
    let spec = crate::Cluster::spec(n, i, net, workloads);
    let Ok(mut spec) = serde_json::from_slice::<serde_json::Value>(&spec) else {
        return spec;
    };
    let role = if i == 0 { "builder" } else { "worker" };
    spec["node"]["labels"] = serde_json::json!({ "role": role });
    serde_json::to_vec(&spec).unwrap_or_default()
}

/// `n` nodes of the lab owner's fleet running xnoded with `flags` (and the local
/// cache), node 0 a builder and the rest workers ([`role_spec`]), each with a fleet
/// store ([`join_fleet_store`]) whose key is made on the builder.
pub fn builder_and_workers(
    bin_dir: &std::path::Path,
    n: usize,
    flags: &str,
) -> Result<crate::Cluster, LabError> {
    let flags = format!("{flags} {CACHE_FLAG} {}", crate::fleet::JOIN_FLAG);
    let cluster = crate::Cluster::boot_each(
        bin_dir,
        n,
        |_| flags.clone(),
        |i, net| role_spec(n, i, net, &serde_json::json!({})),
    )?;
    let (secret, public) = signing_key(&cluster.nodes[0], "fleet")?;
    for c in &cluster.nodes {
        join_fleet_store(c, &secret, &public)?;
    }
    Ok(cluster)
}

/// A mesh workload that runs `<path>/run` on one worker.
pub fn worker_singleton(path: &str) -> serde_json::Value {
    serde_json::json!({
        "command": [format!("{path}/run")],
        "store_paths": [path],
        "placement": {"mesh": {"labels": {"role": "worker"}}}
    })
}

/// Once every node sees the others alive, gives every node of `cluster` (made by
/// [`builder_and_workers`]) `workloads`.
pub fn deploy_to_all(
    cluster: &crate::Cluster,
    workloads: &serde_json::Value,
    timeout: std::time::Duration,
) -> Result<(), String> {
    cluster.wait_alive(timeout)?;
    let n = cluster.nodes.len();
    for (i, c) in cluster.nodes.iter().enumerate() {
        crate::node::write_spec(c, &role_spec(n, i, &cluster.net, workloads))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Signs `path` on the builder and runs it as the mesh workload `solo` on one worker
/// ([`worker_singleton`]), once every node sees the others.
pub fn run_signed_singleton(
    cluster: &crate::Cluster,
    path: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    sign(&cluster.nodes[0], "/tmp/fleet.sk", path).map_err(|e| e.to_string())?;
    deploy_to_all(
        cluster,
        &serde_json::json!({ "solo": worker_singleton(path) }),
        timeout,
    )
}

/// The workers that hold `workload`'s closure as their agents see it: fetched, and so
/// in their heartbeats from the next one on.
pub fn holders(cluster: &crate::Cluster, workload: &str) -> Vec<usize> {
    let fetched = format!("{workload}'s closure is here");
    (1..cluster.nodes.len())
        .filter(|i| crate::node::journal(&cluster.nodes[*i]).contains(&fetched))
        .collect()
}
