# The ISO: a live XnodeOS running xnoded, bootable from CD or USB stick (BIOS and
# UEFI), which can also install itself on the machine's disk, unattended.
#
# - Live: the spec comes from xnode/spec.json on the ISO (for an ISO built with
#   `xnodeos.installer.files`) or spec.json on a USB stick labelled XNODE.
# - Install: boot with `xnode.install=/dev/sda` (or `xnode.install=auto` for the only
#   fixed disk) on the kernel command line, or put an install.conf (`disk=/dev/sda`,
#   optionally `reboot=no` to power off instead) beside the spec, on the ISO or the
#   stick (the ISO's wins). The installed system boots with systemd-boot, so the
#   install needs the ISO booted with UEFI and refuses otherwise. See
#   images/xnode-install.sh.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.xnodeos.installer;
  inherit (pkgs.stdenv) hostPlatform;
in
{
  options.xnodeos.installer = {
    system = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = null;
      description = ''
        The system closure (`config.system.build.toplevel` of a configuration that
        imports images/installed.nix) that the unattended install puts on disk; it is
        carried on the ISO. Null: the ISO is live only.
      '';
    };
    files = lib.mkOption {
      type = lib.types.attrsOf lib.types.path;
      default = { };
      example = lib.literalExpression ''
        {
          "spec.json" = ./spec.json;
          "install.conf" = ./install.conf;
        }
      '';
      description = "Files put in the ISO's xnode/ directory: spec.json, install.conf.";
    };
  };

  config = {
    image.baseName = lib.mkForce "xnodeos-${config.system.nixos.label}-${hostPlatform.system}";
    isoImage = {
      volumeID = "XNODEOS";
      makeEfiBootable = true;
      makeUsbBootable = true;
      storeContents = lib.optional (cfg.system != null) cfg.system;
      contents = lib.mapAttrsToList (name: source: {
        inherit source;
        target = "/xnode/${name}";
      }) cfg.files;
    };

    # Whoever holds the machine owns it: the console is root's, as on NixOS' installer.
    services.getty.autologinUser = lib.mkDefault "root";

    xnodeos.seed.sources = [
      "file:/iso/xnode/spec.json"
      "media"
    ];

    systemd.services.xnode-install = lib.mkIf (cfg.system != null) {
      description = "Unattended XnodeOS install";
      wantedBy = [ "multi-user.target" ];
      after = [ "xnode-seed.service" ];
      path = [
        config.system.build.nixos-install
        config.nix.package
        pkgs.coreutils
        pkgs.dosfstools
        pkgs.e2fsprogs
        pkgs.gawk
        pkgs.gnugrep
        pkgs.gnused
        pkgs.systemd
        pkgs.util-linux
      ];
      serviceConfig = {
        Type = "oneshot";
        StandardOutput = "journal+console";
        ExecStart = utils.escapeSystemdExecArgs [
          "${pkgs.bash}/bin/bash"
          "${./xnode-install.sh}"
          "--system"
          "${cfg.system}"
          "--config"
          "/iso/xnode/install.conf"
          "--config"
          "/run/xnode-media/install.conf"
          "--spec"
          "${config.services.xnode.specFile}"
        ];
      };
    };
  };
}
