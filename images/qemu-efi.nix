# A qcow2 disk for QEMU/KVM with UEFI (`nix run .#vm` boots it). The spec comes through
# `-fw_cfg name=opt/xnode/spec.json,file=spec.json`, or from an XNODE-labelled disk.
{ lib, ... }:
{
  boot.growPartition = lib.mkDefault true;
  # The root is on a virtio disk (`-drive if=virtio`), and nixpkgs' disk-image.nix
  # does not import profiles/qemu-guest.nix nor does NixOS' default initrd have them:
  # without these, stage 1 waits for the root forever.
  boot.initrd.availableKernelModules = [
    "virtio_pci"
    "virtio_blk"
    "virtio_scsi"
    "virtio_net"
  ];
  # /sys/firmware/qemu_fw_cfg, where the spec given with -fw_cfg shows.
  boot.kernelModules = [ "qemu_fw_cfg" ];
  # `nix run .#vm` runs with -nographic: the serial port is the only screen.
  xnodeos.consoles = [
    "tty0"
    "ttyS0,115200n8"
  ];
  xnodeos.seed.sources = [
    "fw_cfg"
    "media"
  ];
}
