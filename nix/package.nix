# xnoded and xnodectl, built from the workspace's Cargo.lock (no hash to keep up to
# date, no import-from-derivation).
{
  lib,
  stdenv,
  rustPlatform,
  pkg-config,
  systemd,
  installShellFiles,
}:
let
  workspace = (lib.importTOML ../Cargo.toml).workspace.package;
in
rustPlatform.buildRustPackage {
  pname = "xnode";
  inherit (workspace) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../clippy.toml
      ../crates
      ../modules/xnoded-service.json
      ../examples
      ../tests/specs
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # xnoded, xnodectl, and xnode-meshd (a mesh member without workloads: a bootstrap peer).
  cargoBuildFlags = [
    "-p"
    "xnode-agent"
    "-p"
    "xnodectl"
    "-p"
    "xnode-mesh"
  ];
  # The tests that need no root: the lab's (systemd in containers) run outside the
  # build sandbox, in the project's own test script. These unit tests need no more
  # than the sandbox gives (loopback, $TMPDIR, /proc, no root); one that cannot pass
  # there is to be skipped by exact name in checkFlags, with the reason.
  cargoTestFlags = [
    "-p"
    "xnode-spec"
    "-p"
    "xnode-agent"
    "-p"
    "xnode-mesh"
    "--lib"
  ];

  nativeBuildInputs = [
    pkg-config
    installShellFiles
  ];
  # libsystemd: xnoded reads workload logs from the journal.
  buildInputs = [ systemd ];

  # The man page and completions come from running the xnodectl just built, which a
  # cross build cannot do on its build machine; it goes without them.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    $out/bin/xnodectl man > xnodectl.1
    installManPage xnodectl.1
    for shell in bash fish zsh; do
      $out/bin/xnodectl completions $shell > xnodectl.$shell
    done
    installShellCompletion xnodectl.{bash,fish,zsh}
  '';

  meta = {
    description = "XnodeOS node agent (xnoded), CLI (xnodectl) and mesh peer (xnode-meshd)";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "xnodectl";
  };
}
