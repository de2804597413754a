//! Unit files rendered from workloads: exact text for a full workload, and the rules
//! for quoting, users and the sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use serde_json::json;
use xnode_spec::parse_value;
use xnode_spec::unit::{UnitFile, render, unit_name, workload_of};

fn workload(w: serde_json::Value) -> xnode_spec::Workload {
    // An owner, as any spec that places workloads on the mesh names.
    let node =
        json!({"name": "n1", "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="});
    let mut v = parse_value(&json!({"version": 1, "node": node, "workloads": {"w": w}}))
        .expect("valid")
        .spec;
    v.workloads.remove("w").unwrap()
}

#[test]
fn full_workload_renders_exactly() {
    let w = workload(json!({
        "command": ["/bin/web", "--greeting", "hello world", "50%", "a\"b\\c", "$PORT", ""],
        "reload": ["/bin/kill", "-HUP", "$MAINPID"],
        "reload_triggers": ["config-v1"],
        "environment": {"PORT": "8080", "MOTD": "100% \"fine\""},
        "working_directory": "/var/lib/web",
        "user": "web", "group": "web",
        "resources": {"cpu": "150%", "memory": "512M", "tasks": 64},
        "restart": {"policy": "always", "delay": "5s"},
        "stop_if_changed": false,
        "sandbox": {"relax": ["memory-deny-write-execute", "system-call-filter"], "writable_paths": ["/var/lib/web"], "capabilities": ["CAP_NET_BIND_SERVICE"]}
    }));
    let want = r#"# Written by xnoded from the node spec; edits are undone on the next reconcile.
[Unit]
Description=xnode workload w
X-Xnode-Workload=w
X-Reload-Triggers=config-v1

[Service]
Type=exec
Slice=xnode.slice
ExecStart=/bin/web --greeting "hello world" 50%% "a\"b\\c" $PORT ""
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory=/var/lib/web
Environment="MOTD=100%% \"fine\""
Environment="PORT=8080"
User=web
Group=web
CPUQuota=150%
MemoryMax=536870912
TasksMax=64
Restart=always
RestartSec=5000ms
X-StopIfChanged=false
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
LockPersonality=yes
InaccessiblePaths=-/run/xnode
InaccessiblePaths=-/run/dbus/system_bus_socket -/run/systemd/private
InaccessiblePaths=-/var/lib/xnode -/run/xnoded-lease -/run/xnode-secrets
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
ReadWritePaths=/var/lib/web
"#;
    assert_eq!(render("w", &w), want);
}

#[test]
fn defaults_are_a_dynamic_user_in_a_full_sandbox_without_capabilities() {
    let text = render("w", &workload(json!({"command": ["/bin/true"]})));
    let u = UnitFile::parse(&text);
    assert_eq!(u.get("Service", "DynamicUser"), ["yes"]);
    assert!(u.get("Service", "User").is_empty());
    assert_eq!(u.get("Service", "CapabilityBoundingSet"), [""]);
    assert!(u.get("Service", "AmbientCapabilities").is_empty());
    assert_eq!(u.get("Service", "SystemCallFilter"), ["@system-service"]);
    assert_eq!(u.get("Service", "MemoryDenyWriteExecute"), ["yes"]);
    assert_eq!(u.get("Service", "Restart"), ["on-failure"]);
    assert_eq!(u.owner(), Some("w"));
}

#[test]
fn a_clean_exit_stays_on_record_unless_the_policy_restarts_it() {
    for (policy, remains) in [
        ("no", true),
        ("on-failure", true),
        ("on-abnormal", true),
        ("on-abort", true),
        ("on-watchdog", true),
        ("always", false),
        ("on-success", false),
    ] {
        let text = render(
            "w",
            &workload(json!({"command": ["/bin/true"], "restart": {"policy": policy}})),
        );
        let got = UnitFile::parse(&text)
            .get("Service", "RemainAfterExit")
            .to_vec();
        assert_eq!(got.is_empty(), !remains, "{policy}: {got:?}");
    }
}

#[test]
fn mesh_workloads_are_bound_to_the_lease_start_only_when_placed_and_stop_quickly() {
    let mesh = UnitFile::parse(&render(
        "w",
        &workload(json!({"command": ["/bin/true"], "placement": {"mesh": {}}})),
    ));
    assert_eq!(mesh.get("Unit", "BindsTo"), ["xnoded-lease.service"]);
    assert_eq!(mesh.get("Unit", "After"), ["xnoded-lease.service"]);
    assert_eq!(mesh.get("Service", "TimeoutStopSec"), ["400ms"]);
    assert_eq!(
        mesh.get("Unit", "ConditionPathExists"),
        ["/run/xnode/placed/w"],
        "started only while placed here"
    );
    let local = UnitFile::parse(&render("w", &workload(json!({"command": ["/bin/true"]}))));
    assert!(local.get("Unit", "BindsTo").is_empty());
    assert!(local.get("Unit", "ConditionPathExists").is_empty());
    assert!(local.get("Service", "TimeoutStopSec").is_empty());
    assert_eq!(
        workload_of(xnode_spec::unit::LEASE_UNIT),
        None,
        "no workload can be the lease"
    );
}

#[test]
fn relaxing_capabilities_drops_the_bounding_set() {
    let text = render(
        "w",
        &workload(
            json!({"command": ["/bin/true"], "user": "root", "sandbox": {"relax": ["capabilities", "protect-system", "root"]}}),
        ),
    );
    let u = UnitFile::parse(&text);
    assert!(u.get("Service", "CapabilityBoundingSet").is_empty());
    assert!(u.get("Service", "ProtectSystem").is_empty());
    assert_eq!(u.get("Service", "User"), ["root"]);
}

#[test]
fn unit_names_round_trip() {
    assert_eq!(unit_name("web"), "xnode-web.service");
    assert_eq!(workload_of("xnode-web.service"), Some("web"));
    assert_eq!(workload_of("xnode-.service"), None);
    assert_eq!(workload_of("nginx.service"), None);
    assert_eq!(workload_of("xnode-web.socket"), None);
}
