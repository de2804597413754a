# Three nodes mesh and apply a spec: xnoded starts from the module on each, converges to
# the spec the module rendered, and finds the other two in the mesh; a workload stopped
# by hand comes back; a switch to a spec that fails its health gate fails, and the node
# stays on its spec; exactly one node runs the mesh workload `solo`, under the lease,
# and when that node is shut down, the others see it dead and exactly one of them takes
# `solo` over.
{ self }:
let
  # Nodes get 192.168.1.<n> in attribute order; n1 is everyone's bootstrap peer.
  node =
    name:
    { pkgs, ... }:
    let
      base = import ./spec.nix { inherit pkgs; };
    in
    {
      imports = [ self.nixosModules.default ];
      xnodeos.enable = true;
      services.xnode.spec = base // {
        node.name = name;
        mesh.bootstrap = [ "/ip4/192.168.1.1/tcp/7720" ];
        workloads = base.workloads // {
          solo = {
            command = [
              "${pkgs.coreutils}/bin/sleep"
              "infinity"
            ];
            placement.mesh.replicas = 1;
          };
        };
      };
      # The same spec and a workload that exits at once: the switch's reload of
      # xnoded waits for the apply, which rolls back, and fails.
      specialisation.broken.configuration.services.xnode.spec.workloads.broken = {
        command = [ "${pkgs.coreutils}/bin/false" ];
        restart.policy = "no";
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

    system = n1.succeed("readlink -f /run/current-system").strip()
    n1.fail(f"{system}/specialisation/broken/bin/switch-to-configuration test")
    n1.succeed("xnodectl history | grep rolled_back")
    n1.succeed("systemctl is-active xnoded.service")
    n1.succeed(f"{system}/bin/switch-to-configuration test")
    n1.wait_until_succeeds("bash ${./converged.sh} sleeper ticker", timeout=120)

    def running_solo(machines):
        return [m for m in machines if m.execute("systemctl is-active --quiet xnode-solo.service")[0] == 0]

    nodes = [n1, n2, n3]
    retry(lambda _: len(running_solo(nodes)) == 1, timeout=120)
    owner = running_solo(nodes)[0]
    owner.succeed("systemctl is-active xnoded-lease.service")
    rest = [m for m in nodes if m is not owner]
    owner.shutdown()
    for m in rest:
        m.wait_until_succeeds(f"xnodectl mesh peers | grep -E '^{owner.name} +dead'", timeout=60)
    retry(lambda _: len(running_solo(rest)) == 1, timeout=60)
  '';
}
