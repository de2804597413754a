# Three nodes form a fleet and apply a spec: xnoded starts from the module on each,
# converges to the spec the module rendered, is admitted to the owner's fleet by a join
# key made in the test, and finds the other two in the mesh; a workload stopped
# by hand comes back; a switch to a spec that fails its health gate fails, and the node
# stays on its spec; exactly one node runs the mesh workload `solo`, under the lease,
# and when that node is shut down, the others see it dead and exactly one of them takes
# `solo` over.
{ self }:
let
  # The lab's test owner (crates/xnode-lab/src/fleet.rs): a key for test hosts only.
  ownerSecret = "ed25519-secret:McafWEPjy2bG3Q70AXQ0mkWOp1fCmM2xlBJd3zFDMpo=";
  owner = "ed25519:kaeWrQkO8LDUU3c7ytQ+wxvKfy81FaGVfAQXVSGMUeI=";
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
      services.xnode.joinKeyFile = "/var/lib/xnode/join.key";
      services.xnode.spec = base // {
        node = {
          inherit name owner;
        };
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
    # The owner makes a join key on n1; each node takes it and is admitted at its
    # restart.
    n1.succeed("umask 077; echo '${ownerSecret}' > /root/owner.key")
    n1.succeed("xnodectl fleet join-key --key /root/owner.key --expires 1d /root/join.key")
    join_key = n1.succeed("cat /root/join.key")
    for m in [n1, n2, n3]:
        m.wait_for_unit("xnoded.service")
        m.succeed(f"umask 077; cat > /var/lib/xnode/join.key <<'EOF'\n{join_key}EOF")
        m.succeed("systemctl restart xnoded.service")
        m.wait_for_unit("xnoded.service")
        m.wait_until_succeeds("bash ${./converged.sh} sleeper ticker", timeout=120)
    for m, others in [(n1, ["n2", "n3"]), (n2, ["n1", "n3"]), (n3, ["n1", "n2"])]:
        for other in others:
            m.wait_until_succeeds(f"xnodectl mesh peers | grep -E '^{other} +alive'", timeout=60)
        m.succeed("xnodectl fleet members | grep -E 'this node +.*join key'")
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
