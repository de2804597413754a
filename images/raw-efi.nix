# A raw UEFI disk image, to write straight onto a machine's disk (`dd`). The spec comes
# from a USB stick labelled XNODE holding spec.json, at first boot.
{ lib, ... }:
{
  boot.growPartition = lib.mkDefault true;
  xnodeos.seed.sources = [ "media" ];
}
