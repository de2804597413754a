# Azure (fixed-size VHD). The spec is the VM's custom data, which cloud-init (enabled
# by nixpkgs' Azure module) keeps as the instance's user-data; cloud-init itself
# ignores a JSON document that is not cloud-config.
{ ... }:
{
  imports = [ ./cloud.nix ];
  xnodeos.seed = {
    sources = [ "file:/var/lib/cloud/instance/user-data.txt" ];
    after = [ "cloud-init.service" ];
  };
}
