# A stand-in for nixos-generate-config's hardware-configuration.nix: the disk layout
# the ISO's installer makes (EFI system partition BOOT, ext4 root nixos), so a machine
# installed from the ISO can switch to this configuration as it is.
{
  imports = [ ../../images/installed.nix ];
}
