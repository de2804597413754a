# DigitalOcean (qcow2.gz custom image). The spec is the droplet's user data, from the
# metadata that nixpkgs' digitalocean-metadata service caches.
{ ... }:
{
  imports = [ ./cloud.nix ];
  # digitalocean-init would read user data as a NixOS configuration and rebuild.
  virtualisation.digitalOcean.rebuildFromUserData = false;
  xnodeos.seed = {
    sources = [ "do-metadata:/run/do-metadata/v1.json" ];
    after = [ "digitalocean-metadata.service" ];
  };
}
