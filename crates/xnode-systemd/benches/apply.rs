//! Applying a 200-workload spec to a fresh systemd (PID 1 in a lab container), beside
//! two baselines measured in the same run on fresh containers with the same unit files:
//! (a) one `systemctl daemon-reload` and one `systemctl start` of all 200 units, the
//! floor; (b) a daemon-reload and a start per unit, as shell-based node managers do.
//! Then a no-op re-apply, which must make no mutating call.
//!
//! Two sets of units: the hardened ones every workload gets by default, and plain ones
//! (sandbox relaxed, running as root), to show how much of the time is systemd setting
//! up sandboxes rather than anything the apply does.
//!
//! `cargo bench -p xnode-systemd --bench apply` (as root; boots three containers).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Map, json};
use xnode_lab::Container;
use xnode_spec::plan::plan;
use xnode_spec::unit::{render, unit_name};
use xnode_systemd::{ApplyOptions, Bus, Config, Systemd};

const N: usize = 200;

fn spec(workload: &serde_json::Value) -> Result<xnode_spec::Spec, xnode_spec::Invalid> {
    let workloads: Map<String, serde_json::Value> = (0..N)
        .map(|i| (format!("w{i:03}"), workload.clone()))
        .collect();
    let doc = json!({"version": 1, "node": {"name": "bench"}, "workloads": workloads});
    xnode_spec::parse_value(&doc).map(|v| v.spec)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes the units as the agent would, then times `script` inside the container.
fn baseline(spec: &xnode_spec::Spec, script: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let c = Container::boot()?;
    for (name, w) in &spec.workloads {
        std::fs::write(
            c.path(format!("/run/systemd/system/{}", unit_name(name))),
            render(name, w),
        )?;
    }
    let started = Instant::now();
    c.sh(script)?;
    let took = started.elapsed();
    let active =
        c.sh("systemctl list-units --state=active --no-legend 'xnode-*.service' | wc -l")?;
    assert_eq!(
        active.trim(),
        N.to_string(),
        "every unit active after the baseline"
    );
    Ok(took)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let all_parts: Vec<&str> = xnode_spec::Relax::ALL
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let variants = [
        (
            "hardened units (the default sandbox, dynamic user)",
            json!({"command": ["/bin/sleep", "infinity"]}),
        ),
        (
            "plain units (sandbox relaxed, user root)",
            json!({"command": ["/bin/sleep", "infinity"], "user": "root", "sandbox": {"relax": all_parts}}),
        ),
    ];
    for (title, workload) in variants {
        measure(title, &spec(&workload)?).await?;
    }
    Ok(())
}

async fn measure(title: &str, spec: &xnode_spec::Spec) -> Result<(), Box<dyn std::error::Error>> {
    let units: Vec<String> = spec.workloads.keys().map(|w| unit_name(w)).collect();

    let c = Container::boot()?;
    let sd = Systemd::connect(&Config {
        bus: Bus::Address(c.bus_address()),
        root: c.root(),
    })
    .await?;
    let started = Instant::now();
    let p = plan(spec, &sd.observe().await?, &BTreeSet::new());
    let report = sd.apply(&p, &ApplyOptions::default()).await?;
    let ours = started.elapsed();
    assert!(report.all_done(), "every job done");
    assert!(
        report.units.iter().all(|u| u.active_state == "active"),
        "every unit active"
    );

    let mutations = sd.mutations();
    let started = Instant::now();
    let p = plan(spec, &sd.observe().await?, &BTreeSet::new());
    sd.apply(&p, &ApplyOptions::default()).await?;
    let noop = started.elapsed();
    let noop_mutations = sd.mutations() - mutations;
    assert!(p.is_empty());
    drop(c);

    let floor = baseline(
        spec,
        &format!(
            "systemctl daemon-reload && systemctl start {}",
            units.join(" ")
        ),
    )?;
    let per_unit = baseline(
        spec,
        &format!(
            "for u in {}; do systemctl daemon-reload && systemctl start $u; done",
            units.join(" ")
        ),
    )?;

    println!("apply {N} workloads from nothing to all active: {title}");
    println!(
        "  xnoded apply (observe + plan + files + 1 reload + jobs)   {:>9.1} ms",
        ms(ours)
    );
    println!(
        "  (a) 1 daemon-reload + 1 systemctl start of all (floor)    {:>9.1} ms",
        ms(floor)
    );
    println!(
        "  (b) daemon-reload + systemctl start per unit              {:>9.1} ms",
        ms(per_unit)
    );
    println!(
        "  ours / floor     {:>6.2}x (target: at most 1.5x)",
        ours.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  per-unit / ours  {:>6.1}x (target: at least 10x)",
        per_unit.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "  no-op re-apply: {:.1} ms, {noop_mutations} mutating calls (target: under 50 ms, none)",
        ms(noop)
    );
    Ok(())
}
