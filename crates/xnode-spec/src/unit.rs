//! Workloads as systemd unit files: rendering, reading back, and comparing two versions
//! the way NixOS `switch-to-configuration` does, so the plan knows whether a change
//! needs a restart, a reload, or only a new file.

use std::collections::BTreeMap;

use crate::model::{Credential, Kind, Placement, Relax, Workload};

/// The slice every workload runs in, so their resources can be seen and bounded together.
pub const SLICE: &str = "xnode.slice";

/// The `[Unit]` key that marks a unit as the agent's and names its workload. A unit
/// without it is never touched.
pub const MARKER: &str = "X-Xnode-Workload";

/// The lease every mesh-placed unit is bound to (`BindsTo=`): a unit whose watchdog
/// only the agent's loop feeds, and only while the node sees a majority of the mesh.
/// When the feeding stops, systemd stops the lease and with it every mesh workload,
/// whatever state the agent is in. Its name is outside the workloads' `xnode-*`
/// pattern, so no workload can take it.
pub const LEASE_UNIT: &str = "xnoded-lease.service";

/// How long a mesh workload has to stop before systemd kills it (`TimeoutStopSec=`):
/// part of the fencing margin (docs/mesh.md), so a slow stop cannot run into the
/// majority's takeover.
pub const MESH_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(400);

/// Where the agent marks each mesh workload placed on this node, with an empty file of
/// the workload's name. A mesh unit starts only while its mark is there
/// (`ConditionPathExists=`): the agent removes the mark before its fencing stop, so a
/// start sent earlier that reaches systemd after the stop is skipped by systemd, not
/// run beside the workload's new owner. The directory is the agent's runtime directory,
/// gone when the agent stops.
pub const PLACED_DIR: &str = "/run/xnode/placed";

/// Hidden from every workload, whatever it relaxes: xnoded's state directory (its mesh
/// key, a join key), which uid 0 reads with no capability since root owns it, and the
/// lease relay's socket, through which a workload could keep the lease on past
/// fencing. (Both at the paths the NixOS module and xnoded use by default.)
pub const AGENT_PRIVATE: &str =
    "InaccessiblePaths=-/var/lib/xnode -/run/xnoded-lease -/run/xnode-secrets";

/// Where xnoded puts the age secrets it decrypted, for systemd to hand over
/// (`LoadCredential=`): root-only, on /run's tmpfs, so plaintext never reaches a disk.
/// Outside the agent's runtime directory, so a workload restarted while the agent is
/// down still gets its secrets.
pub const SECRETS_DIR: &str = "/run/xnode-secrets";

/// The file an age credential is decrypted into: [`SECRETS_DIR`], then this. Named by
/// the ciphertext's hash, so a new ciphertext is a new `LoadCredential=` line and
/// restarts the workload.
pub fn secret_name(workload: &str, ciphertext: &str) -> (String, String) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(ciphertext.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    (workload.to_owned(), hex)
}

/// The full path of [`secret_name`].
pub fn secret_file(workload: &str, ciphertext: &str) -> String {
    let (dir, file) = secret_name(workload, ciphertext);
    format!("{SECRETS_DIR}/{dir}/{file}")
}

/// The state directory of a workload with `state: true`, under /var/lib (or
/// /var/lib/private, for a dynamic user).
pub fn state_directory(workload: &str) -> String {
    format!("{PREFIX}{workload}")
}

const PREFIX: &str = "xnode-";
const SUFFIX: &str = ".service";
const TIMER_SUFFIX: &str = ".timer";

/// The unit that runs a workload's process.
pub fn unit_name(workload: &str) -> String {
    format!("{PREFIX}{workload}{SUFFIX}")
}

/// The timer unit of a workload of kind `timer`.
pub fn timer_name(workload: &str) -> String {
    format!("{PREFIX}{workload}{TIMER_SUFFIX}")
}

/// The unit the agent starts and watches for a workload: its timer for a `timer`, its
/// service otherwise.
pub fn main_unit(workload: &str, w: &Workload) -> String {
    match w.kind {
        Kind::Timer => timer_name(workload),
        Kind::Service | Kind::Oneshot => unit_name(workload),
    }
}

/// The workload a unit name stands for, if it is one of ours by name: a service or a
/// timer.
pub fn workload_of(unit: &str) -> Option<&str> {
    let rest = unit.strip_prefix(PREFIX)?;
    rest.strip_suffix(SUFFIX)
        .or_else(|| rest.strip_suffix(TIMER_SUFFIX))
        .filter(|w| !w.is_empty())
}

/// Every unit file a workload needs, its main unit last: a `timer` has its service
/// (started only by the timer) and the timer.
pub fn units(workload: &str, w: &Workload) -> Vec<(String, String)> {
    let service = (unit_name(workload), render(workload, w));
    match (&w.kind, &w.schedule) {
        (Kind::Timer, Some(schedule)) => vec![
            service,
            (timer_name(workload), render_timer(workload, schedule)),
        ],
        _ => vec![service],
    }
}

/// The timer of a `timer` workload: it starts the workload's service on the schedule,
/// to the second.
fn render_timer(name: &str, schedule: &str) -> String {
    format!(
        "# Written by xnoded from the node spec; edits are undone on the next reconcile.\n\
         [Unit]\nDescription=xnode schedule of workload {name}\n{MARKER}={name}\n\n\
         [Timer]\nOnCalendar={schedule}\nAccuracySec=1s\nUnit={}\n",
        unit_name(name)
    )
}

/// Quotes one word of a command line for `ExecStart=`: `%` is doubled (no specifiers),
/// and words with spaces, quotes or backslashes are double-quoted with C escapes.
/// `$` is left for systemd's environment expansion, as the spec documents.
fn command_word(word: &str) -> String {
    let word = word.replace('%', "%%");
    let plain = !word.is_empty() && !word.contains([' ', '"', '\'', '\\']) && word != ";";
    if plain { word } else { quoted(&word) }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| command_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hardening every workload gets, by the name the spec relaxes it with.
const SANDBOX: &[(Relax, &[&str])] = &[
    (Relax::NoNewPrivileges, &["NoNewPrivileges=yes"]),
    (Relax::ProtectSystem, &["ProtectSystem=strict"]),
    (Relax::ProtectHome, &["ProtectHome=yes"]),
    (Relax::PrivateTmp, &["PrivateTmp=yes"]),
    (Relax::PrivateDevices, &["PrivateDevices=yes"]),
    (
        Relax::ProtectKernel,
        &[
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
        ],
    ),
    (Relax::ProtectControlGroups, &["ProtectControlGroups=yes"]),
    (Relax::ProtectClock, &["ProtectClock=yes"]),
    (Relax::ProtectHostname, &["ProtectHostname=yes"]),
    (Relax::ProtectProc, &["ProtectProc=invisible"]),
    (Relax::RestrictSuidSgid, &["RestrictSUIDSGID=yes"]),
    (Relax::RestrictRealtime, &["RestrictRealtime=yes"]),
    (Relax::RestrictNamespaces, &["RestrictNamespaces=yes"]),
    (
        Relax::RestrictAddressFamilies,
        &["RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
    ),
    (Relax::LockPersonality, &["LockPersonality=yes"]),
    (
        Relax::MemoryDenyWriteExecute,
        &["MemoryDenyWriteExecute=yes"],
    ),
    (
        Relax::SystemCallFilter,
        &[
            "SystemCallArchitectures=native",
            "SystemCallFilter=@system-service",
            "SystemCallErrorNumber=EPERM",
        ],
    ),
    // xnoded's API (whoever reaches it as root can apply any workload), and the
    // managers' buses, through which uid 0 drives systemd without a capability.
    (Relax::AgentApi, &["InaccessiblePaths=-/run/xnode"]),
    (
        Relax::SystemBus,
        &["InaccessiblePaths=-/run/dbus/system_bus_socket -/run/systemd/private"],
    ),
];

/// The unit file for a workload. Pure: the same workload always gives the same bytes,
/// so an unchanged workload never rewrites its file.
pub fn render(name: &str, w: &Workload) -> String {
    let mut u = String::new();
    let mut line = |s: &str| {
        u.push_str(s);
        u.push('\n');
    };
    line("# Written by xnoded from the node spec; edits are undone on the next reconcile.");
    line("[Unit]");
    line(&format!("Description=xnode workload {name}"));
    line(&format!("{MARKER}={name}"));
    if !w.reload_triggers.is_empty() {
        line(&format!(
            "X-Reload-Triggers={}",
            command_line(&w.reload_triggers)
        ));
    }
    let mesh = matches!(w.placement, Placement::Mesh(_));
    if mesh {
        line(&format!("BindsTo={LEASE_UNIT}"));
        line(&format!("After={LEASE_UNIT}"));
        line(&format!("ConditionPathExists={PLACED_DIR}/{name}"));
    }
    for other in &w.after {
        line(&format!("After={}", unit_name(other)));
    }
    for other in &w.requires {
        line(&format!("Requires={}", unit_name(other)));
    }
    line("");
    line("[Service]");
    match w.kind {
        Kind::Service => line("Type=exec"),
        Kind::Oneshot => {
            line("Type=oneshot");
            line(&format!(
                "TimeoutStartSec={}ms",
                w.health.timeout.as_millis()
            ));
        }
        // A scheduled run takes as long as it takes (a nightly backup); `stop.timeout`
        // still bounds its stop.
        Kind::Timer => {
            line("Type=oneshot");
            line("TimeoutStartSec=infinity");
        }
    }
    line(&format!("Slice={SLICE}"));
    line(&format!("ExecStart={}", command_line(&w.command)));
    if let Some(reload) = &w.reload {
        line(&format!("ExecReload={}", command_line(reload)));
    }
    if let Some(dir) = &w.working_directory {
        // systemd takes the rest of the line as the path, unquoted; only its
        // specifiers need escaping. (Validation refuses trailing whitespace, which
        // systemd would strip.)
        line(&format!("WorkingDirectory={}", dir.replace('%', "%%")));
    }
    for (k, v) in &w.environment {
        line(&format!(
            "Environment={}",
            quoted(&format!("{k}={v}").replace('%', "%%"))
        ));
    }
    // Raw, as systemd reads these paths: validation keeps them to what it reads back.
    for file in &w.environment_files {
        line(&format!("EnvironmentFile={}", file.replace('%', "%%")));
    }
    for (id, credential) in &w.credentials {
        let path = match credential {
            Credential::File(path) => path.clone(),
            Credential::Age(ciphertext) => secret_file(name, ciphertext),
        };
        line(&format!("LoadCredential={id}:{}", path.replace('%', "%%")));
    }
    if w.state {
        line(&format!("StateDirectory={}", state_directory(name)));
        line("StateDirectoryMode=0700");
    }
    match &w.user {
        Some(user) => line(&format!("User={user}")),
        None => line("DynamicUser=yes"),
    }
    if let Some(group) = &w.group {
        line(&format!("Group={group}"));
    }
    if let Some(cpu) = w.resources.cpu {
        line(&format!("CPUQuota={cpu}"));
    }
    if let Some(memory) = w.resources.memory {
        line(&format!("MemoryMax={}", memory.0));
    }
    if let Some(tasks) = w.resources.tasks {
        line(&format!("TasksMax={tasks}"));
    }
    line(&format!("Restart={}", w.restart.policy.as_str()));
    line(&format!("RestartSec={}ms", w.restart.delay.as_millis()));
    // A timer's service must end, or the timer could not start it again.
    if !w.restart.policy.restarts_on_clean_exit() && w.kind != Kind::Timer {
        line("RemainAfterExit=yes");
    }
    match (w.stop.timeout, mesh) {
        (Some(t), _) => line(&format!("TimeoutStopSec={}ms", t.as_millis())),
        (None, true) => line(&format!(
            "TimeoutStopSec={}ms",
            MESH_STOP_TIMEOUT.as_millis()
        )),
        (None, false) => {}
    }
    if let Some(signal) = w.stop.signal {
        line(&format!("KillSignal={}", signal.as_str()));
    }
    for (key, value, default) in [
        ("X-RestartIfChanged", w.restart_if_changed, true),
        ("X-ReloadIfChanged", w.reload_if_changed, false),
        ("X-StopIfChanged", w.stop_if_changed, true),
    ] {
        if value != default {
            line(&format!("{key}={}", if value { "true" } else { "false" }));
        }
    }
    line("UMask=0077");
    for (part, directives) in SANDBOX {
        if !w.sandbox.relax.contains(part) {
            directives.iter().for_each(|d| line(d));
        }
    }
    line(AGENT_PRIVATE);
    if !w.sandbox.relax.contains(&Relax::Capabilities) {
        let caps: Vec<_> = w.sandbox.capabilities.iter().map(|c| c.as_str()).collect();
        line(&format!("CapabilityBoundingSet={}", caps.join(" ")));
        if !caps.is_empty() {
            line(&format!("AmbientCapabilities={}", caps.join(" ")));
        }
    }
    for path in &w.sandbox.writable_paths {
        line(&format!("ReadWritePaths={}", command_word(path)));
    }
    u
}

/// A unit file read back as sections of keys with every value assigned, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    sections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl UnitFile {
    /// Reads unit-file syntax leniently (the file may have been edited by hand): comments
    /// and blank lines are skipped, backslash continuations joined, and a line that is
    /// not `key=value` is kept as a key of its own so that it still counts as a change.
    pub fn parse(text: &str) -> UnitFile {
        let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let trimmed = raw.trim();
            if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with(['#', ';'])) {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(trimmed);
            let line = std::mem::take(&mut pending);
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                sections.entry(section.clone()).or_default();
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or((&line, ""));
            sections
                .entry(section.clone())
                .or_default()
                .entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
        UnitFile { sections }
    }

    /// Every value assigned to a key, in order.
    pub fn get(&self, section: &str, key: &str) -> &[String] {
        self.sections
            .get(section)
            .and_then(|s| s.get(key))
            .map_or(&[], Vec::as_slice)
    }

    /// The workload named by the ownership marker, if the file carries one.
    pub fn owner(&self) -> Option<&str> {
        self.get("Unit", MARKER).last().map(String::as_str)
    }
}

/// How an installed unit differs from the one the spec wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Byte for byte the same.
    None,
    /// Only comments, layout or keys that do not affect the running process differ:
    /// rewrite the file, leave the process alone.
    Cosmetic,
    /// Only `X-Reload-Triggers` differs.
    Reload,
    /// These `Section.Key`s differ, and the process must restart to see them.
    Restart(Vec<String>),
}

/// `[Unit]` keys whose change does not touch the running process, as in NixOS
/// `switch-to-configuration`.
const UNIT_KEYS_IGNORED: &[&str] = &[
    "Description",
    "Documentation",
    "OnFailure",
    "OnSuccess",
    "OnFailureJobMode",
    "IgnoreOnIsolate",
    "StopWhenUnneeded",
    "RefuseManualStart",
    "RefuseManualStop",
    "AllowIsolate",
    "CollectMode",
    "SourcePath",
];

/// Keys whose change needs no restart of a running unit: the dependencies on the lease
/// (a bound unit follows its lease from the daemon reload on), the placement mark
/// (checked only at a start), and settings systemd reads only when the process ends or
/// is stopped. So the first apply of an agent that
/// adds them rewrites every unit without restarting any.
const KEYS_NO_RESTART: &[(&str, &str)] = &[
    ("Unit", "BindsTo"),
    ("Unit", "After"),
    ("Unit", "ConditionPathExists"),
    ("Service", "RemainAfterExit"),
    ("Service", "TimeoutStopSec"),
];

/// Compares the installed file with the wanted one, key by key.
///
/// systemd ignores `X-` keys, so they never warrant a restart; the one exception is
/// `X-Reload-Triggers`, whose whole purpose is to ask for a reload.
pub fn compare(installed: &str, wanted: &str) -> Difference {
    if installed == wanted {
        return Difference::None;
    }
    let (old, new) = (UnitFile::parse(installed), UnitFile::parse(wanted));
    let mut restart = Vec::new();
    let mut reload = false;
    let section_names: std::collections::BTreeSet<&String> =
        old.sections.keys().chain(new.sections.keys()).collect();
    for section in section_names {
        let (a, b) = (old.sections.get(section), new.sections.get(section));
        if a.is_none() || b.is_none() {
            restart.push(format!("[{section}]"));
            continue;
        }
        let (a, b) = (a.into_iter().flatten(), b.into_iter().flatten());
        let keys: std::collections::BTreeSet<&String> =
            a.map(|(k, _)| k).chain(b.map(|(k, _)| k)).collect();
        for key in keys {
            if old.get(section, key) == new.get(section, key) {
                continue;
            }
            if key == "X-Reload-Triggers" {
                reload = true;
            } else if key.starts_with("X-")
                || (section == "Unit" && UNIT_KEYS_IGNORED.contains(&key.as_str()))
                || KEYS_NO_RESTART.contains(&(section.as_str(), key.as_str()))
            {
                continue;
            } else {
                restart.push(format!("{section}.{key}"));
            }
        }
    }
    if !restart.is_empty() {
        Difference::Restart(restart)
    } else if reload {
        Difference::Reload
    } else {
        Difference::Cosmetic
    }
}
