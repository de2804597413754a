# xnode-seed: the first spec of a node booted from an image, from wherever the
# image's platform puts it (cloud user-data, qemu's fw_cfg, a USB stick).
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.xnodeos.seed;
  xnode = config.services.xnode;
in
{
  options.xnodeos.seed = {
    sources = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "file:/etc/ec2-metadata/user-data"
        "media"
      ];
      description = ''
        Where to look for the node's first spec, in order (see images/xnode-seed.sh):
        `file:PATH`, `url:URL[|HEADER]`, `do-metadata:PATH`, `fw_cfg`, `media`.
        The first valid spec is written to `services.xnode.specFile` at boot, unless
        that file exists already.
      '';
    };
    after = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Units that must have run before the sources can be read.";
    };
  };

  config = lib.mkIf (cfg.sources != [ ] && xnode.enable) {
    # A join key found beside the first spec admits the node to its owner's fleet.
    services.xnode.joinKeyFile = lib.mkDefault "${xnode.stateDir}/join.key";
    assertions = [
      {
        assertion = xnode.spec == null;
        message = "xnodeos.seed: an image seeded at boot cannot also set services.xnode.spec.";
      }
    ];
    systemd.services.xnode-seed = {
      description = "First spec of the node";
      wantedBy = [ "multi-user.target" ];
      before = [ "xnoded.service" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ cfg.after;
      path = [
        xnode.package
        pkgs.coreutils
        pkgs.curl
        pkgs.jq
        pkgs.util-linux
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = utils.escapeSystemdExecArgs (
          [
            "${pkgs.bash}/bin/bash"
            "${./xnode-seed.sh}"
          ]
          ++ lib.optionals (xnode.joinKeyFile != null) [
            "--join-key"
            xnode.joinKeyFile
          ]
          ++ [ "${xnode.specFile}" ]
          ++ cfg.sources
        );
      };
    };
  };
}
