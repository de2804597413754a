# EC2 (VHD for import as an AMI). The spec is the instance's user-data, which
# nixpkgs' fetch-ec2-metadata service writes to /etc/ec2-metadata/user-data.
{ ... }:
{
  imports = [ ./cloud.nix ];
  # amazon-init would take JSON user-data for a NixOS configuration and rebuild.
  virtualisation.amazon-init.enable = false;
  xnodeos.seed = {
    sources = [ "file:/etc/ec2-metadata/user-data" ];
    after = [ "fetch-ec2-metadata.service" ];
  };
}
