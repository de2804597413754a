# A qcow2 disk for QEMU/KVM with UEFI (`nix run .#vm` boots it). The spec comes through
# `-fw_cfg name=opt/xnode/spec.json,file=spec.json`, or from an XNODE-labelled disk.
{ lib, ... }:
{
  boot.growPartition = lib.mkDefault true;
  # /sys/firmware/qemu_fw_cfg, where the spec given with -fw_cfg shows.
  boot.kernelModules = [ "qemu_fw_cfg" ];
  xnodeos.seed.sources = [
    "fw_cfg"
    "media"
  ];
}
