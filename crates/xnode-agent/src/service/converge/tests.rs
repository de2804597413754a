use super::*;
use serde_json::json;
use xnode_spec::plan::ActiveState;
use xnode_spec::unit::{render, unit_name};

/// An owner: specs that place workloads on the mesh name one.
const OWNER: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn stopped() -> (xnode_spec::Spec, Vec<ObservedUnit>) {
    let spec = xnode_spec::parse(
        &serde_json::to_vec(
            &json!({"version": 1, "node": {"name": "n", "owner": OWNER}, "workloads": {"w": {"command": ["/bin/w"]}}}),
        )
        .unwrap(),
    )
    .unwrap()
    .spec;
    let file = render("w", &spec.workloads["w"]);
    let observed = vec![ObservedUnit::new(
        unit_name("w"),
        ActiveState::Inactive,
        Some(file),
    )];
    (spec, observed)
}

#[test]
fn while_an_apply_runs_a_pass_moves_only_what_placement_moved_and_never_starts_the_applys() {
    let spec = xnode_spec::parse(
        &serde_json::to_vec(
            &json!({"version": 1, "node": {"name": "n", "owner": OWNER}, "workloads": {
                "moved": {"command": ["/bin/a"], "placement": {"mesh": {}}},
                "changed": {"command": ["/bin/b"], "placement": {"mesh": {}}},
                "local": {"command": ["/bin/c"]}
            }}),
        )
        .unwrap(),
    )
    .unwrap()
    .spec;
    let scope = Scope {
        moved: ["moved", "changed"].map(String::from).into(),
        the_applys: ["changed".to_owned()].into(),
        let_go: BTreeSet::new(),
    };
    let placed: BTreeSet<String> = ["moved", "changed"].map(String::from).into();
    let p = plan(&spec, &[], &placed);
    let allowed: Vec<String> = p
        .actions
        .iter()
        .filter(|a| scope.allows(a))
        .map(|a| format!("{} {}", a.op, a.workload))
        .collect();
    assert_eq!(allowed, ["create moved", "start moved"]);
    let stop = crate::placement::stops(&["changed".to_owned()]);
    assert!(
        scope.allows(&stop.actions[0]),
        "stopping is never the apply's alone"
    );
    // Once the gate has let it go, a pass starts it too.
    let let_go = Scope {
        let_go: ["changed".to_owned()].into(),
        ..scope.clone()
    };
    let allowed: Vec<String> = plan(&spec, &[], &placed)
        .actions
        .iter()
        .filter(|a| let_go.allows(a))
        .map(|a| format!("{} {}", a.op, a.workload))
        .collect();
    assert_eq!(
        allowed,
        [
            "create changed",
            "create moved",
            "start changed",
            "start moved"
        ]
    );
    // Placement took `moved` away while the pass was planning: it is not started.
    let mut p = plan(&spec, &[], &placed);
    still_placed(&mut p, &spec, &["changed".to_owned()].into());
    let left: Vec<String> = p
        .actions
        .iter()
        .map(|a| format!("{} {}", a.op, a.workload))
        .collect();
    assert_eq!(
        left,
        [
            "create changed",
            "create local",
            "create moved",
            "start changed",
            "start local"
        ]
    );
}

#[test]
fn the_gate_lets_go_of_what_it_no_longer_waits_on_and_only_while_it_gates() {
    let why = || "starting".to_owned();
    let gating = Progress {
        phase: Phase::Gating,
        workloads: [
            ("waiting", Gated::Waiting { why: why() }),
            ("healthy", Gated::Healthy),
            ("moved", Gated::Moved),
            ("unhealthy", Gated::Unhealthy { why: why() }),
        ]
        .map(|(w, g)| (w.to_owned(), g))
        .into(),
        ..Progress::default()
    };
    let all: BTreeSet<String> = ["waiting", "healthy", "moved", "unhealthy", "late"]
        .map(String::from)
        .into();
    let let_go: Vec<String> = gate_let_go(&gating, &all).into_iter().collect();
    assert_eq!(let_go, ["healthy", "late", "moved"]);
    for (what, p) in [
        (
            "before the gate",
            Progress {
                phase: Phase::Applying,
                ..gating.clone()
            },
        ),
        (
            "while a rollback puts the last good spec back",
            Progress {
                putting_back: Some(Arc::new(
                    xnode_spec::parse(br#"{"version": 1, "node": {"name": "n"}}"#).unwrap(),
                )),
                ..gating.clone()
            },
        ),
    ] {
        assert!(gate_let_go(&p, &all).is_empty(), "{what}");
    }
}

#[tokio::test]
async fn a_pass_beside_an_apply_does_nothing_once_a_rollback_heads_for_another_spec() {
    let spec = |command: &str| {
        let workloads = json!({"m": {"command": [command], "placement": {"mesh": {}}}});
        let doc =
            json!({"version": 1, "node": {"name": "n", "owner": OWNER}, "workloads": workloads});
        Arc::new(xnode_spec::parse(&serde_json::to_vec(&doc).unwrap()).unwrap())
    };
    let (new, old) = (spec("/bin/new"), spec("/bin/old"));
    let (_placed, placed) = watch::channel(BTreeSet::from(["m".to_owned()]));
    let scope = Scope {
        moved: ["m".to_owned()].into(),
        the_applys: BTreeSet::new(),
        let_go: BTreeSet::new(),
    };
    for (back, runs) in [(None, true), (Some(old), false), (Some(new.clone()), true)] {
        let units = Arc::new(crate::fake::FakeUnits::default());
        let (_progress, apply) = watch::channel(Progress {
            putting_back: back.clone(),
            ..Progress::default()
        });
        let beside = Beside {
            scope: scope.clone(),
            apply,
        };
        let (spec, hold) = (new.clone(), BTreeMap::new());
        pass(
            units.clone(),
            spec,
            placed.clone(),
            hold,
            Some(beside),
            Backoff::default(),
        )
        .await;
        let running = units
            .states()
            .iter()
            .any(|(_, s)| *s == ActiveState::Active);
        assert_eq!(running, runs, "putting back {:?}", back.map(|b| b.hash));
    }
}

#[test]
fn every_start_of_a_unit_that_went_down_backs_off_until_it_stays_up() {
    let (spec, down) = stopped();
    let mut up = down.clone();
    up[0].active_state = ActiveState::Active;
    let mut b = Backoff::default();
    let t0 = Instant::now();
    let mut p = plan(&spec, &down, &BTreeSet::new());
    b.filter(&mut p, t0);
    assert_eq!(p.actions.len(), 1, "the first start goes through");
    // Up for a moment, then down again within its wait: not forgotten.
    b.forget_recovered(&up, t0 + Duration::from_secs(1));
    let mut p = plan(&spec, &down, &BTreeSet::new());
    let retry = b.filter(&mut p, t0 + Duration::from_secs(1));
    assert!(p.actions.is_empty(), "the next waits");
    assert_eq!(retry, Some(t0 + BACKOFF_MIN), "and says until when");
    let mut p = plan(&spec, &down, &BTreeSet::new());
    b.filter(&mut p, t0 + BACKOFF_MAX);
    assert_eq!(p.actions.len(), 1, "after the wait it goes through again");
    // Up past its wait: it recovered, and the next stop is restored at once.
    b.forget_recovered(&up, t0 + BACKOFF_MAX * 3);
    assert!(b.units.is_empty());
}
