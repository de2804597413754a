# services.xnode: the XnodeOS agent, xnoded, as a hardened systemd service.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.services.xnode;
  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    optionals
    types
    ;
  json = (pkgs.formats.json { }).type;
  defaultSpecFile = "/etc/xnode/spec.json";
  service = lib.importJSON ./xnoded-service.json;

  # The nftables set xnoded keeps, in the NixOS firewall's own table.
  servicePortsSet = "xnode_services";
  # Where xnoded answers DNS for the `xnode` domain: a loopback address of its own,
  # since port 53 on 127.0.0.1 and 127.0.0.53 may be taken.
  dnsAddress = "127.0.0.153";
  # The port of `http.listen` ("ADDR:PORT", or "[V6]:PORT").
  httpPort = lib.toInt (lib.last (lib.splitString ":" cfg.http.listen));
  resolvedDropIn = ''
    [Resolve]
    DNS=${dnsAddress}
    Domains=~xnode
  '';

  # A spec known when the system is built: rendered from `spec`, or a `specFile` in
  # the store (a path value is copied there). Null: the spec comes at run time.
  specFileInStore =
    builtins.isPath cfg.specFile || lib.hasPrefix "${builtins.storeDir}/" (toString cfg.specFile);
  builtSpec =
    if cfg.spec != null then
      pkgs.writeText "xnode-spec.json" (import ./render-spec.nix cfg.spec)
    else if specFileInStore then
      cfg.specFile
    else
      null;

  # xnodectl runs on the build machine; a cross build cannot run the host's.
  checkSpec = cfg.checkSpec && pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;
  # An invalid spec fails the build, before anything switches (as nixpkgs'
  # prometheus module does with promtool).
  checked =
    spec:
    if checkSpec then
      pkgs.runCommand "xnode-spec-checked.json"
        {
          preferLocalBuild = true;
          nativeBuildInputs = [ cfg.package ];
        }
        ''
          ln -s ${spec} $out
          xnodectl validate $out
        ''
    else
      spec;
  specSource = if builtSpec == null then null else checked builtSpec;

  # A spec built with the system is followed at /etc, so that a new one changes
  # only the unit's reload trigger, not its command line.
  followedSpecFile = if specSource != null then defaultSpecFile else toString cfg.specFile;

  # An object of the spec: free-form JSON, with some fields typed.
  specObject =
    options: description:
    mkOption {
      type = types.submodule {
        freeformType = json;
        inherit options;
      };
      default = { };
      inherit description;
    };
in
{
  options.services.xnode = {
    enable = mkEnableOption "xnoded, the XnodeOS agent that keeps this node as its spec says";

    package = mkPackageOption pkgs "xnode" { };

    spec = mkOption {
      type = types.nullOr (
        types.submodule {
          freeformType = json;
          options = {
            version = mkOption {
              type = types.ints.positive;
              default = 1;
              description = "The spec format's version.";
            };
            node = specObject {
              name = mkOption {
                type = types.str;
                default = config.networking.hostName;
                defaultText = literalExpression "config.networking.hostName";
                description = "The node's name: a DNS label.";
              };
            } "What the node is: `name`, `owner` (who may push specs over the mesh), `labels`.";
            mesh = specObject {
              port = mkOption {
                type = types.port;
                default = cfg.mesh.port;
                defaultText = literalExpression "config.services.xnode.mesh.port";
                description = "The mesh port.";
              };
            } "How the node joins the mesh: `bootstrap`, `listen`, `mdns`, `port`.";
          };
        }
      );
      default = null;
      example = literalExpression ''
        {
          node.owner = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
          mesh.bootstrap = [ "/dns4/seed.example.org/tcp/7720" ];
          workloads.hello = {
            command = [ "''${pkgs.hello}/bin/hello" "--greeting=hi" ];
            restart.policy = "always";
          };
        }
      '';
      description = ''
        The node spec (see docs/spec.md), written in Nix and rendered to JSON at
        `/etc/xnode/spec.json`. Attributes set to null are left out, and store paths
        named in a workload's `command` or `reload` are added to its `store_paths`, so
        `"''${pkgs.foo}/bin/foo"` is enough to run a package. The spec is checked
        when the system is built (see `checkSpec`). `nixos-rebuild switch` reloads
        xnoded for a changed spec, without restarting it, and waits until the spec
        is applied: an apply that is rolled back or stays unhealthy fails the switch
        (see `reloadTimeout`). Leave it null to give the spec at run time instead
        (see `specFile`).
      '';
    };

    specFile = mkOption {
      type = types.path;
      default = defaultSpecFile;
      example = "/var/lib/xnode-seed/spec.json";
      description = ''
        The spec file xnoded follows. When `spec` is set, leave this alone: the
        rendered spec is at the default. Otherwise a file in the store
        (`./spec.json`), which is then checked and put at the default path like a
        rendered spec, or a path written at run time (cloud user-data, the
        installer, an operator). A missing file is not an error: xnoded waits for it
        and serves its API meanwhile.
      '';
    };

    checkSpec = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to check the spec with `xnodectl validate` when the system is built,
        so that an invalid `spec` (or `specFile` in the store) fails the build
        instead of being rejected by xnoded after the switch. xnodectl then runs on
        the build machine: turn this off when it cannot run there. A cross build,
        whose build machine cannot execute the host's programs, skips the check by
        itself.
      '';
    };

    reloadTimeout = mkOption {
      type = types.ints.positive;
      default = 900;
      example = 3600;
      description = ''
        How long, in seconds, `systemctl reload xnoded` waits for the apply of the
        spec file's content to end: store paths realised, workloads started, every
        health gate passed or the apply rolled back. `nixos-rebuild switch` runs
        this reload when only the spec changed, so a switch waits as long, and fails
        when the wait runs out. systemd bounds a reload by the unit's start timeout,
        which is set a minute above this (and so bounds xnoded's start too). Raise it
        for specs whose downloads or `health.timeout`s take longer.
      '';
    };

    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/xnode";
      description = "Where xnoded keeps its generations and history (root only).";
    };

    apiGroup = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "xnode";
      description = ''
        A group whose members may use xnoded's local API (`xnodectl`) besides root.
        The group is created. Null: root only.

        Membership amounts to root: a member can apply a workload that runs as
        root with its sandbox relaxed. Add only those you would give root.
      '';
    };

    metrics.address = mkOption {
      type = types.str;
      default = "127.0.0.1:9477";
      example = "[::1]:9477";
      description = "Where xnoded serves Prometheus metrics (OpenMetrics text).";
    };

    joinKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/xnode-seed/join.key";
      description = ''
        A join key (`xnodectl fleet join-key`) that admits this node to its owner's
        fleet. A path outside the Nix store, since the store is world-readable and the
        key admits nodes: write it with your secrets tool, the installer or cloud
        user-data. Once the node is admitted its certificate is kept in the state
        directory, so the file may be deleted; a missing file is not an error.
      '';
    };

    mesh = {
      port = mkOption {
        type = types.port;
        default = 7720;
        description = "The TCP port of the mesh; also the spec's default `mesh.port`.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to open the mesh port in the firewall.";
      };
    };

    openServicePorts = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether other nodes may reach the ports the workloads running here expose
        (`expose` in the spec), and only those. xnoded keeps the nftables set
        `inet nixos-fw ${servicePortsSet}` holding them, and the firewall accepts
        what it holds, so a push that adds a service opens its port with no rebuild.
        Needs the nftables firewall (`networking.nftables.enable`).
      '';
    };

    dns.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether workloads and users find mesh services by name: xnoded answers DNS
        for the `xnode` domain on ${dnsAddress}:53 (`<service>.xnode`: A and AAAA
        with the addresses of its healthy providers, SRV with their ports), and
        systemd-resolved routes the domain there.
      '';
    };

    http = {
      listen = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "0.0.0.0:8443";
        description = ''
          Where xnoded serves its API and console over HTTPS (`--http-listen`), for
          remote clients and browsers; off when null. Reads need a session the
          node's owner signed, and changes need the owner's signature. The
          certificate is made on first start in `''${stateDir}/tls`; its fingerprint
          is in `xnodectl status` (docs/api.md says how to put a real one in front).
        '';
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to open the port of `http.listen` in the firewall.";
      };
    };

    nixCache = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether this node's Nix fetches store paths from its fleet's members: xnoded
          serves a local binary cache on `nixCache.address` that asks them, and Nix
          uses it as a substituter (after cache.nixos.org, by priority). Nix checks
          what comes through as from any cache: a signature by a key in
          `nix.settings.trusted-public-keys` (`xnodeos.nix.fleetKey`), and the NAR's
          hash. xnoded also serves this node's store to the members, whatever this says.
        '';
      };
      address = mkOption {
        type = types.str;
        default = "127.0.0.1:5391";
        description = "Where the local binary cache listens: a loopback address.";
      };
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--interval"
        "60"
      ];
      description = "More command-line arguments for xnoded (`xnoded --help`).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.spec == null || toString cfg.specFile == defaultSpecFile;
        message = "services.xnode: set `spec` or `specFile`, not both.";
      }
      {
        assertion =
          !cfg.openServicePorts || (config.networking.firewall.enable && config.networking.nftables.enable);
        message = "services.xnode.openServicePorts keeps an nftables set in the firewall's table: set networking.firewall.enable and networking.nftables.enable (the iptables firewall has no such set).";
      }
      {
        assertion = lib.hasPrefix "/" cfg.stateDir;
        message = "services.xnode.stateDir must be an absolute path.";
      }
      {
        assertion =
          cfg.joinKeyFile == null
          || (lib.hasPrefix "/" cfg.joinKeyFile && !lib.hasPrefix builtins.storeDir cfg.joinKeyFile);
        message = "services.xnode.joinKeyFile must be an absolute path outside the Nix store (the store is world-readable).";
      }
    ];

    # The fleet as a substituter; a miss is not remembered, since a member may hold
    # the path a moment later.
    nix.settings = mkIf cfg.nixCache.enable {
      substituters = [ "http://${cfg.nixCache.address}" ];
      narinfo-cache-negative-ttl = lib.mkDefault 0;
    };

    environment.systemPackages = [ cfg.package ];
    environment.etc."xnode/spec.json" = mkIf (specSource != null) { source = specSource; };

    users.groups = mkIf (cfg.apiGroup != null) { ${cfg.apiGroup} = { }; };
    networking.firewall.allowedTCPPorts =
      optionals cfg.mesh.openFirewall [ cfg.mesh.port ]
      ++ optionals (cfg.http.listen != null && cfg.http.openFirewall) [ httpPort ];

    # The set is declared first in the firewall's table, so the rule can name it; a
    # reload of the firewall empties it and xnoded fills it again within 30 s.
    networking.nftables.tables = mkIf cfg.openServicePorts {
      nixos-fw.content = lib.mkBefore "set ${servicePortsSet} { type inet_proto . inet_service; }";
    };
    networking.firewall.extraInputRules = mkIf cfg.openServicePorts "meta l4proto . th dport @${servicePortsSet} accept";

    # As Consul's DNS interface is wired in: resolved sends `*.xnode` to xnoded. A
    # global DNS= is also asked for other names (xnoded refuses them at once, and the
    # links' servers answer), and turns FallbackDNS off: a host whose DNS servers come
    # from nowhere but FallbackDNS must name them (networking.nameservers).
    services.resolved.enable = mkIf cfg.dns.enable (lib.mkDefault true);
    environment.etc."systemd/resolved.conf.d/xnode.conf" = mkIf cfg.dns.enable {
      text = resolvedDropIn;
    };
    # resolved reads its drop-ins when it starts.
    systemd.services.systemd-resolved.restartTriggers = mkIf cfg.dns.enable [ resolvedDropIn ];

    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0700 root root - -"
      # xnoded writes its workloads' units here; it must exist for ReadWritePaths.
      "d /run/systemd/system 0755 root root - -"
      # Dynamic users' state directories, which `xnodectl state prune` deletes; it
      # must exist for ReadWritePaths.
      "d /var/lib/private 0700 root root - -"
    ];

    systemd.services.xnoded = {
      description = "XnodeOS agent";
      documentation = [ "man:xnodectl(1)" ];
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "nix-daemon.socket"
        "systemd-tmpfiles-setup.service"
        "nftables.service"
      ];
      # nix-store, to realise the store paths workloads name; nft, to keep the set of
      # exposed ports.
      path = [ config.nix.package ] ++ optionals cfg.openServicePorts [ pkgs.nftables ];
      # A new spec alone is a reload: switch-to-configuration waits for its job,
      # which ends with the apply, and reports a failed one.
      reloadTriggers = lib.optional (specSource != null) specSource;
      # The settings and sandbox shared with the lab, which runs xnoded under them.
      serviceConfig = service // {
        ExecStart = utils.escapeSystemdExecArgs (
          [
            (lib.getExe' cfg.package "xnoded")
            "--spec"
            followedSpecFile
            "--state-dir"
            cfg.stateDir
            "--metrics-address"
            cfg.metrics.address
          ]
          ++ optionals (cfg.apiGroup != null) [
            "--api-group"
            cfg.apiGroup
          ]
          ++ optionals (cfg.joinKeyFile != null) [
            "--join-key"
            cfg.joinKeyFile
          ]
          ++ optionals cfg.openServicePorts [
            "--firewall-set"
            "inet/nixos-fw/${servicePortsSet}"
          ]
          ++ optionals cfg.dns.enable [
            "--dns-listen"
            "${dnsAddress}:53"
          ]
          ++ optionals (cfg.http.listen != null) [
            "--http-listen"
            cfg.http.listen
          ]
          ++ optionals cfg.nixCache.enable [
            "--nix-cache-listen"
            cfg.nixCache.address
          ]
          ++ cfg.extraArgs
        );
        # Reads the spec file now and waits for the outcome of its apply: a rollback,
        # an unhealthy apply or an invalid spec fails the reload job.
        ExecReload = utils.escapeSystemdExecArgs [
          (lib.getExe' cfg.package "xnodectl")
          "reload"
          "--timeout"
          (toString cfg.reloadTimeout)
        ];
        # systemd gives a reload the start timeout; xnodectl gives up first, so its
        # own account of the wait is what the journal shows.
        TimeoutStartSec = "${toString (cfg.reloadTimeout + 60)}s";
        ReadWritePaths = service.ReadWritePaths ++ [ cfg.stateDir ];
        # Handing the API socket to the group, measuring and pruning workloads'
        # state directories (owned by their dynamic users, mode 0700), keeping the
        # firewall's set and answering DNS on port 53 are the privileged things
        # xnoded does itself; systemd does the rest on its behalf.
        CapabilityBoundingSet = [
          "CAP_DAC_READ_SEARCH"
          "CAP_DAC_OVERRIDE"
        ]
        ++ optionals (cfg.apiGroup != null) [ "CAP_CHOWN" ]
        ++ optionals cfg.openServicePorts [ "CAP_NET_ADMIN" ]
        ++ optionals (cfg.dns.enable || (cfg.http.listen != null && httpPort < 1024)) [
          "CAP_NET_BIND_SERVICE"
        ];
      };
    };
  };
}
