# The spec of the NixOS test (mesh.nix). The lab test
# `the_nixos_test_scenario_runs_in_the_lab` renders it too, with Debian's /usr in
# place of the packages, and runs the same check against a real xnoded.
{ pkgs }:
{
  node.name = "machine";
  workloads = {
    sleeper.command = [
      "${pkgs.coreutils}/bin/sleep"
      "infinity"
    ];
    ticker = {
      command = [
        "${pkgs.bash}/bin/bash"
        "-c"
        "while true; do echo tick; sleep 5; done"
      ];
      restart.policy = "always";
    };
  };
}
