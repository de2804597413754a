# What every cloud image shares: the root partition grows to the disk at boot (the
# clouds' modules resize the root filesystem), the console is the serial port (the
# clouds' "serial console" views), and the node's first spec comes from user-data
# through xnode-seed.
{ lib, ... }:
{
  boot.growPartition = lib.mkDefault true;
  xnodeos.consoles = [
    "tty0"
    "ttyS0,115200n8"
  ];
}
