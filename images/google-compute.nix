# Google Compute Engine (raw.tar.gz for `gcloud compute images create`). The spec is
# the instance metadata key `user-data` (`--metadata-from-file user-data=spec.json`).
{ ... }:
let
  metadata = "http://169.254.169.254/computeMetadata/v1/instance/attributes";
in
{
  imports = [ ./cloud.nix ];
  xnodeos.seed.sources = [ "url:${metadata}/user-data|Metadata-Flavor: Google" ];
}
