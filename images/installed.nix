# The system the ISO's unattended install puts on disk: the layout xnode-install.sh
# makes (GPT; EFI system partition labelled BOOT, ext4 root labelled nixos), booted by
# systemd-boot from the removable-media path, so no firmware variables are needed.
{ lib, ... }:
{
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/BOOT";
    fsType = "vfat";
    options = [ "umask=077" ];
  };
  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = false;
  boot.growPartition = true;
  # The disks and USB hosts of common servers and VMs.
  boot.initrd.availableKernelModules = [
    "ahci"
    "nvme"
    "sd_mod"
    "sr_mod"
    "usb_storage"
    "xhci_pci"
    "virtio_pci"
    "virtio_blk"
    "virtio_scsi"
  ];
  hardware.enableRedistributableFirmware = lib.mkDefault true;
}
