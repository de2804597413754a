# Three nodes mesh and apply a spec: xnoded starts from the module on each, converges to
# the spec the module rendered, and finds the other two in the mesh; a workload stopped
# by hand comes back; a node shut down is seen dead by the others. (Failover of its
# mesh workloads comes with mesh placement.)
{ self }:
let
  # Nodes get 192.168.1.<n> in attribute order; n1 is everyone's bootstrap peer.
  node =
    name:
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];
      xnodeos.enable = true;
      services.xnode.spec = (import ./spec.nix { inherit pkgs; }) // {
        node.name = name;
        mesh.bootstrap = [ "/ip4/192.168.1.1/tcp/7720" ];
      };
    };
in
{
  name = "xnode-mesh";
  nodes = {
    n1 = node "n1";
    n2 = node "n2";
    n3 = node "n3";
  };
  testScript = ''
    start_all()
    for m in [n1, n2, n3]:
        m.wait_for_unit("xnoded.service")
        m.wait_until_succeeds("bash ${./converged.sh} sleeper ticker", timeout=120)
    for m, others in [(n1, ["n2", "n3"]), (n2, ["n1", "n3"]), (n3, ["n1", "n2"])]:
        for other in others:
            m.wait_until_succeeds(f"xnodectl mesh peers | grep -E '^{other} +alive'", timeout=60)
    n1.succeed("test -L /etc/xnode/spec.json")
    n1.succeed("systemctl stop xnode-sleeper.service")
    n1.wait_until_succeeds("bash ${./converged.sh} sleeper ticker", timeout=120)
    n3.shutdown()
    for m in [n1, n2]:
        m.wait_until_succeeds("xnodectl mesh peers | grep -E '^n3 +dead'", timeout=60)
  '';
}
