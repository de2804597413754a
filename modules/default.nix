# Both modules: services.xnode (the agent) and xnodeos (the profile, off until
# `xnodeos.enable`).
{
  imports = [
    ./xnode.nix
    ./xnodeos.nix
  ];
}
