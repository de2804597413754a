# An example Xnode on NixOS (`nixosConfigurations.example`). On a real machine, use its
# own hardware-configuration.nix in place of ./hardware.nix, then
# `nixos-rebuild switch --flake .#example`.
{ pkgs, ... }:
{
  imports = [ ./hardware.nix ];

  networking.hostName = "example";
  xnodeos.enable = true;
  services.xnode = {
    spec = import ./spec.nix { inherit pkgs; };
    apiGroup = "wheel";
  };

  system.stateVersion = "25.11";
}
