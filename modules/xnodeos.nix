# xnodeos: the distribution profile. Server defaults that make a NixOS machine an
# Xnode; inert until `xnodeos.enable`, so importing it changes nothing by itself.
# Every setting is a default (lib.mkDefault) or an addition, so a host can override it.
{ config, lib, ... }:
let
  cfg = config.xnodeos;
  xnode = config.services.xnode;
  ownerLogin = cfg.ssh.ownerLogin && xnode.enable;
  inherit (lib) mkDefault mkIf mkOption types;
in
{
  options.xnodeos = {
    enable = lib.mkEnableOption "the XnodeOS profile: xnoded and server defaults";

    nix = {
      fleetKey = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "fleet-1:pxrPHWWngmheN+VL1DXwVpKXtUA0n5eWdfTw0vi3uMI=";
        description = ''
          The public half of the fleet's signing key (`nix-store
          --generate-binary-cache-key`): the owner signs the builds the fleet runs
          with its secret half, and members then pass them to each other through
          the mesh (docs/nix.md). Trusted by Nix besides cache.nixos.org's key.
        '';
      };
      substituters = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "https://cache.example.org" ];
        description = "Binary caches of the fleet, besides cache.nixos.org.";
      };
      trustedPublicKeys = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        description = ''
          Keys whose signatures Nix trusts on store paths, besides cache.nixos.org's:
          the fleet's signing keys.
        '';
      };
    };

    consoles = mkOption {
      type = types.listOf types.str;
      default = [
        "ttyS0,115200n8"
        "tty0"
      ];
      example = [
        "tty0"
        "ttyS0,115200n8"
      ];
      description = ''
        The kernel's consoles, as `console=` on its command line after any that
        NixOS modules give. Kernel messages go to every one; the last one is
        /dev/console, where systemd's boot status, emergency shells and services'
        console output go. The default puts the screen last; images seen through a
        serial port only (the clouds, `nix run .#vm`) put ttyS0 last.
      '';
    };

    ssh.ownerLogin = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether the spec's owner may log in as root with SSH, when the owner is an
        ed25519 key: sshd asks `xnodectl ssh-keys` for it, so the key follows the
        spec in force (pushes and API applies included, as xnoded publishes its owner
        in /run/xnode/owner) with nothing to copy. (An Ethereum owner has no SSH key; add keys with
        `users.users.root.openssh.authorizedKeys.keys`.)
      '';
    };
  };

  config = mkIf cfg.enable {
    services.xnode = {
      enable = mkDefault true;
      mesh.openFirewall = mkDefault true;
      openServicePorts = mkDefault true;
      dns.enable = mkDefault true;
    };

    nix = {
      settings = {
        experimental-features = [
          "nix-command"
          "flakes"
        ];
        substituters = cfg.nix.substituters;
        trusted-public-keys =
          cfg.nix.trustedPublicKeys ++ lib.optional (cfg.nix.fleetKey != null) cfg.nix.fleetKey;
      };
      gc = {
        automatic = mkDefault true;
        dates = mkDefault "weekly";
        options = mkDefault "--delete-older-than 14d";
      };
      optimise.automatic = mkDefault true;
    };

    networking.firewall.enable = mkDefault true;
    # The firewall xnoded opens exposed ports in (a set of its own).
    networking.nftables.enable = mkDefault true;

    services.openssh = {
      enable = mkDefault true;
      settings = {
        PasswordAuthentication = mkDefault false;
        KbdInteractiveAuthentication = mkDefault false;
        PermitRootLogin = mkDefault "prohibit-password";
      };
      # sshd refuses a command under the group-writable /nix/store: a copy in /etc.
      authorizedKeysCommand = mkIf ownerLogin "/etc/ssh/xnode-authorized-keys %u";
      authorizedKeysCommandUser = mkDefault "nobody";
    };

    environment.etc."ssh/xnode-authorized-keys" = mkIf ownerLogin {
      mode = "0555";
      text = ''
        #!/bin/sh
        exec ${lib.getExe' xnode.package "xnodectl"} ssh-keys --user "$1" ${lib.escapeShellArg "${xnode.specFile}"}
      '';
    };

    services.journald.extraConfig = ''
      SystemMaxUse=1G
      MaxRetentionSec=1month
    '';

    zramSwap.enable = mkDefault true;
    services.timesyncd.enable = mkDefault true;
    # After the cloud modules' own console=ttyS0, so that the last one is ours.
    boot.kernelParams = lib.mkAfter (map (c: "console=${c}") cfg.consoles);
    boot.tmp.cleanOnBoot = mkDefault true;
    documentation.nixos.enable = mkDefault false;
  };
}
