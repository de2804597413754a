# Google Compute Engine (raw.tar.gz for `gcloud compute images create`). The spec is
# the instance metadata key `user-data` (`--metadata-from-file user-data=spec.json`).
{ lib, ... }:
let
  metadata = "http://169.254.169.254/computeMetadata/v1/instance/attributes";
in
{
  imports = [ ./cloud.nix ];
  # Google's OS Login would take sshd's AuthorizedKeysCommand; the spec's owner logs in
  # here as on every other Xnode (and the project's metadata SSH keys still work).
  security.googleOsLogin.enable = lib.mkForce false;
  # nixpkgs' GCE module turns the firewall off by default; an Xnode keeps it.
  networking.firewall.enable = true;
  xnodeos.seed.sources = [ "url:${metadata}/user-data|Metadata-Flavor: Google" ];
}
