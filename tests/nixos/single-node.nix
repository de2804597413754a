# One node applies a spec: xnoded starts from the module and converges to the spec
# the module rendered, and a workload stopped by hand comes back. (Three meshing nodes
# failing over come with the mesh.)
{ self }:
{
  name = "xnode-single-node";
  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];
      xnodeos.enable = true;
      services.xnode.spec = import ./spec.nix { inherit pkgs; };
    };
  testScript = ''
    machine.wait_for_unit("xnoded.service")
    machine.wait_until_succeeds("bash ${./converged.sh} sleeper ticker", timeout=120)
    machine.succeed("test -L /etc/xnode/spec.json")
    machine.succeed("systemctl stop xnode-sleeper.service")
    machine.wait_until_succeeds("bash ${./converged.sh} sleeper ticker", timeout=120)
  '';
}
