use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An owner: specs that place workloads on the mesh name one.
const OWNER: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

use serde_json::json;
use tokio::sync::watch;
use xnode_spec::plan::{ActiveState, plan};
use xnode_spec::unit::unit_name;
use xnode_systemd::ApplyOptions;

use super::*;
use crate::fake::{FakeNix, FakeUnits};

fn spec(workloads: serde_json::Value) -> (Validated, Vec<u8>) {
    let raw = serde_json::to_vec(
        &json!({"version": 1, "node": {"name": "n", "owner": OWNER}, "workloads": workloads}),
    )
    .unwrap();
    (xnode_spec::parse(&raw).unwrap(), raw)
}

async fn agent(name: &str) -> Agent<FakeUnits, FakeNix> {
    let dir = std::env::temp_dir().join(format!("xnode-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Agent {
        units: Arc::new(FakeUnits::default()),
        nix: FakeNix,
        secrets: Secrets::new(&dir, dir.join("secrets")),
        store: Store::open(&dir).await.unwrap(),
    }
}

/// A context with nothing placed here; the sender keeps the placement alive.
fn context(placed: &[&str]) -> (Context, watch::Sender<BTreeSet<String>>) {
    let (tx, rx) = watch::channel(placed.iter().map(|s| (*s).to_owned()).collect());
    let (progress, _) = watch::channel(Progress::default());
    (
        Context {
            placed: rx,
            progress,
        },
        tx,
    )
}

fn states(a: &Agent<FakeUnits, FakeNix>) -> Vec<(String, ActiveState)> {
    a.units.states()
}

#[tokio::test]
async fn a_healthy_apply_becomes_the_last_good_generation() {
    let mut a = agent("healthy").await;
    let (ctx, _placed) = context(&[]);
    let (v, raw) = spec(json!({"web": {"command": ["/bin/web"]}}));
    let d = a
        .deploy(v.clone(), &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    assert_eq!(
        (d.generation, d.outcome, d.rolled_back_to),
        (1, Outcome::Healthy, None)
    );
    assert_eq!(d.in_force, v);
    assert_eq!(a.store.state().last_good, Some(1));
    assert_eq!(
        states(&a),
        [("xnode-web.service".into(), ActiveState::Active)]
    );
    let p = ctx.progress.borrow().clone();
    assert_eq!(p.generation, Some(1));
    assert_eq!(p.workloads["web"], Gated::Healthy);
}

#[tokio::test]
async fn an_unhealthy_apply_is_rolled_back_to_the_last_good_one() {
    let mut a = agent("rollback").await;
    let (ctx, _placed) = context(&[]);
    let (good, raw) =
        spec(json!({"web": {"command": ["/bin/web"]}, "db": {"command": ["/bin/db"]}}));
    a.deploy(good.clone(), &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    let before = a.units.units.lock().unwrap().clone();
    let (bad, raw) = spec(
        json!({"web": {"command": ["/bin/web", "--broken"]}, "db": {"command": ["/bin/db"]}, "new": {"command": ["/bin/new"]}}),
    );
    let d = a
        .deploy(bad, &raw, Source::Api, true, Some(&good.spec), &ctx)
        .await
        .unwrap();
    let Outcome::RolledBack { reason } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert!(reason.contains("web: failed (exit status 1)"), "{reason}");
    assert_eq!(d.rolled_back_to, Some(3));
    assert_eq!(
        d.in_force, good,
        "the spec in force comes back with the outcome"
    );
    let state = a.store.state();
    assert_eq!((state.current, state.last_good), (Some(3), Some(3)));
    assert_eq!(state.generations[2].source, Source::Rollback { to: 1 });
    assert_eq!(
        *a.units.units.lock().unwrap(),
        before,
        "every unit as before the bad apply"
    );
}

#[tokio::test]
async fn without_rollback_or_a_good_generation_the_result_stays() {
    let mut a = agent("norollback").await;
    let (ctx, _placed) = context(&[]);
    let (bad, raw) = spec(json!({"web": {"command": ["/bin/broken"]}}));
    let d = a
        .deploy(bad.clone(), &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    assert!(
        matches!(d.outcome, Outcome::Unhealthy { .. }),
        "no good generation to go back to"
    );
    let (good, raw_good) = spec(json!({"web": {"command": ["/bin/web"]}}));
    a.deploy(
        good.clone(),
        &raw_good,
        Source::Api,
        true,
        Some(&bad.spec),
        &ctx,
    )
    .await
    .unwrap();
    let d = a
        .deploy(
            bad.clone(),
            &raw,
            Source::Api,
            false,
            Some(&good.spec),
            &ctx,
        )
        .await
        .unwrap();
    assert!(matches!(d.outcome, Outcome::Unhealthy { .. }));
    assert_eq!(d.in_force, bad);
    assert_eq!(a.store.state().current, Some(3));
    assert_eq!(
        states(&a),
        [("xnode-web.service".into(), ActiveState::Failed)]
    );
}

#[tokio::test]
async fn a_mesh_workload_a_new_generation_places_here_is_gated_and_can_roll_it_back() {
    let mut a = agent("mesh-gate").await;
    let (ctx, placed) = context(&[]);
    let (good, raw) = spec(json!({"web": {"command": ["/bin/web"]}}));
    a.deploy(good.clone(), &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    // The new generation brings a mesh workload that fails; placement puts it here
    // once the gate waits (after the claim, on a node).
    let (bad, raw) = spec(json!({
        "web": {"command": ["/bin/web"]},
        "solo": {"command": ["/bin/broken"], "placement": {"mesh": {}}}
    }));
    let mut progress = ctx.progress.subscribe();
    let placer = tokio::spawn(async move {
        let _ = progress.wait_for(|p| p.phase == Phase::Gating).await;
        placed.send_replace(BTreeSet::from(["solo".to_owned()]));
        placed
    });
    let d = a
        .deploy(bad, &raw, Source::Api, true, Some(&good.spec), &ctx)
        .await
        .unwrap();
    let _placed = placer.await.unwrap();
    let Outcome::RolledBack { reason } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert!(reason.contains("solo: failed"), "{reason}");
    assert_eq!(d.in_force, good);
    assert!(
        !a.units
            .units
            .lock()
            .unwrap()
            .contains_key(&unit_name("solo")),
        "the rollback removed it"
    );
}

#[tokio::test]
async fn a_mesh_workload_placement_moves_away_is_no_longer_waited_on() {
    let mut a = agent("mesh-moved").await;
    let (ctx, placed) = context(&["solo"]);
    // Never healthy here (its probe port is closed), but placement takes it away.
    let (v, raw) = spec(json!({
        "solo": {"command": ["/bin/solo"], "placement": {"mesh": {}},
                 "health": {"timeout": "30s", "tcp": {"port": 1}}}
    }));
    let mut progress = ctx.progress.subscribe();
    let mover = tokio::spawn(async move {
        let looked = |p: &Progress| matches!(&p.workloads.get("solo"), Some(Gated::Waiting { why }) if why.contains("probe"));
        let _ = progress.wait_for(looked).await;
        placed.send_replace(BTreeSet::new());
        placed
    });
    let d = a
        .deploy(v, &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    let _placed = mover.await.unwrap();
    assert_eq!(d.outcome, Outcome::Healthy);
    assert_eq!(ctx.progress.borrow().workloads["solo"], Gated::Moved);
}

#[test]
fn missing_store_paths_hold_back_starts_but_never_a_stop_for_elsewhere() {
    let (v, _) = spec(json!({
        "local": {"command": ["/bin/a"]},
        "moved": {"command": ["/bin/b"], "placement": {"mesh": {}}}
    }));
    let running = |name: &str| {
        xnode_spec::plan::ObservedUnit::new(
            unit_name(name),
            ActiveState::Active,
            Some(xnode_spec::unit::render(name, &v.spec.workloads[name])),
        )
    };
    let mut p = plan(&v.spec, &[running("moved")], &BTreeSet::new());
    p.actions
        .extend(plan(&v.spec, &[], &BTreeSet::new()).actions);
    let missing: BTreeMap<String, String> = ["local", "moved"]
        .map(|w| (w.to_owned(), "missing".to_owned()))
        .into();
    hold_back(&mut p, &missing);
    assert!(!p.actions.is_empty());
    assert!(
        p.actions
            .iter()
            .all(|a| a.workload == "moved" && a.reason == Reason::NotPlacedHere),
        "{:?}",
        p.actions
    );
}

#[test]
fn late_mesh_workloads_are_the_new_or_changed_ones_not_placed_here() {
    let (old, _) = spec(json!({
        "same": {"command": ["/bin/a"], "placement": {"mesh": {}}},
        "changed": {"command": ["/bin/b"], "placement": {"mesh": {}}}
    }));
    let (new, _) = spec(json!({
        "same": {"command": ["/bin/a"], "placement": {"mesh": {}}},
        "changed": {"command": ["/bin/b2"], "placement": {"mesh": {}}},
        "added": {"command": ["/bin/c"], "placement": {"mesh": {}}},
        "here": {"command": ["/bin/d"], "placement": {"mesh": {}}},
        "missing": {"command": ["/bin/e"], "placement": {"mesh": {}}},
        "local": {"command": ["/bin/f"]}
    }));
    let placed = BTreeSet::from(["here".to_owned()]);
    let skip = BTreeMap::from([("missing".to_owned(), "no paths".to_owned())]);
    assert_eq!(
        late_mesh(&new.spec, Some(&old.spec), &placed, &skip),
        ["added", "changed"]
    );
}

#[tokio::test]
async fn resuming_an_interrupted_generation_gates_every_workload_it_can_run() {
    let mut a = agent("resume").await;
    let (ctx, _placed) = context(&[]);
    let (v, raw) = spec(json!({
        "web": {"command": ["/bin/web"]},
        "app": {"command": ["/bin/app"], "store_paths": ["/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-missing"]}
    }));
    // The crash came after the units were started: nothing left to apply.
    let n = a
        .store
        .accept(&raw, &v.hash.to_string(), Source::Api, 0)
        .await
        .unwrap();
    a.units
        .apply(
            &plan(&v.spec, &[], &BTreeSet::new()),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    a.units.units.lock().unwrap().remove("xnode-app.service");
    let d = a.resume(n, v, &ctx).await.unwrap();
    assert_eq!(
        d.outcome,
        Outcome::Healthy,
        "the unrealisable app is not waited on"
    );
    // A workload that fails is caught even though the plan is empty.
    let (bad, raw) = spec(json!({"web": {"command": ["/bin/broken"]}}));
    let n = a
        .store
        .accept(&raw, &bad.hash.to_string(), Source::Api, 0)
        .await
        .unwrap();
    let observed = a.units.observe().await.unwrap();
    a.units
        .apply(
            &plan(&bad.spec, &observed, &BTreeSet::new()),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    let d = a.resume(n, bad, &ctx).await.unwrap();
    assert!(
        matches!(d.outcome, Outcome::RolledBack { .. }),
        "{:?}",
        d.outcome
    );
    assert_eq!(
        a.store.state().last_good,
        Some(3),
        "generation 1, restored as 3"
    );
}

#[tokio::test]
async fn a_workload_whose_store_paths_are_missing_is_left_out_and_the_rest_applied() {
    let mut a = agent("nix").await;
    let (ctx, _placed) = context(&[]);
    let (v, raw) = spec(json!({
        "web": {"command": ["/bin/web"]},
        "app": {"command": ["/bin/app"], "store_paths": ["/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-missing"]}
    }));
    let d = a
        .deploy(v, &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Healthy);
    assert!(d.not_realised["app"].contains("not in any substituter"));
    assert_eq!(
        states(&a),
        [("xnode-web.service".into(), ActiveState::Active)]
    );
}

/// The test agent's own peer id, read from the key `Secrets` made in its directory.
fn own_public_key(a: &Agent<FakeUnits, FakeNix>) -> [u8; 32] {
    let key = xnode_mesh::identity::load_or_create(a.store.dir()).unwrap();
    xnode_secret::peer_public_key(&key.public().to_peer_id().to_base58()).unwrap()
}

#[tokio::test]
async fn age_credentials_are_decrypted_for_their_node_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut a = agent("secrets").await;
    let (ctx, _placed) = context(&[]);
    let mine = xnode_secret::encrypt(&[own_public_key(&a)], b"s3cret-value").unwrap();
    let other = libp2p::identity::Keypair::ed25519_from_bytes([7u8; 32]).unwrap();
    let other = xnode_secret::peer_public_key(&other.public().to_peer_id().to_base58()).unwrap();
    let theirs = xnode_secret::encrypt(&[other], b"not-for-you").unwrap();
    let (v, raw) = spec(json!({
        "web": {"command": ["/bin/web"], "credentials": {"token": {"age": mine}}},
        "db": {"command": ["/bin/db"], "credentials": {"token": {"age": theirs}}},
    }));
    let d = a
        .deploy(v, &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    let (_, file) = xnode_spec::unit::secret_name("web", &mine);
    let path = a.store.dir().join("secrets/web").join(file);
    assert_eq!(std::fs::read(&path).unwrap(), b"s3cret-value");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
    let why = &d.not_realised["db"];
    assert!(
        why.contains("credential token: it is not encrypted to this node"),
        "{why}"
    );
    assert!(!why.contains("not-for-you"));
    assert!(!a.store.dir().join("secrets/db").exists());
    assert_eq!(
        states(&a),
        [("xnode-web.service".into(), ActiveState::Active)],
        "a workload whose secret cannot be read is not started"
    );
    // Without the workload, its secret goes too.
    let (v, raw) = spec(json!({"other": {"command": ["/bin/other"]}}));
    a.deploy(v, &raw, Source::Api, true, None, &ctx)
        .await
        .unwrap();
    assert!(!a.store.dir().join("secrets/web").exists());
}
