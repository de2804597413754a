{
  description = "XnodeOS: NixOS that makes any machine a node of a decentralized cloud";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      stateVersion = "25.11";

      # The flake's own xnode package as the module's default, for hosts without the
      # overlay. Keyed, so importing several of the modules below includes it once.
      package =
        { lib, pkgs, ... }:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
        in
        {
          key = "xnodeos-flake-package";
          services.xnode.package = lib.mkDefault self.packages.${system}.xnode;
        };

      # An Xnode for `system`, from the modules and `modules`.
      node =
        system: modules:
        lib.nixosSystem {
          modules = [
            self.nixosModules.default
            {
              nixpkgs.hostPlatform = system;
              system.stateVersion = lib.mkDefault stateVersion;
            }
          ]
          ++ modules;
        };

      toplevel = configuration: configuration.config.system.build.toplevel;

      # What the ISO's unattended install puts on disk.
      installed =
        system:
        node system [
          ./images/installed.nix
          { xnodeos.enable = true; }
        ];

      # The base the images are made from: an Xnode with no disk layout or boot loader
      # of its own (each image variant brings them) and its spec given at boot.
      imageBase =
        system:
        node system [
          ./images
          {
            xnodeos.enable = true;
            image.modules.iso.xnodeos.installer.system = toplevel (installed system);
          }
        ];
    in
    {
      overlays.default = final: _prev: { xnode = final.callPackage ./nix/package.nix { }; };

      nixosModules = {
        xnode = {
          imports = [
            ./modules/xnode.nix
            package
          ];
        };
        xnodeos = {
          imports = [
            ./modules/xnode.nix
            ./modules/xnodeos.nix
            package
          ];
        };
        default = {
          imports = [
            ./modules
            package
          ];
        };
      };

      nixosConfigurations = {
        example = node "x86_64-linux" [ ./examples/nixos/configuration.nix ];
        # Not the images' base: it has no disk or boot loader, so it has no system to
        # build (`nix flake check` would try); its images are under `packages`.
        xnodeos-installed = installed "x86_64-linux";
      };

      packages = forAllSystems (
        system: pkgs:
        let
          xnode = pkgs.callPackage ./nix/package.nix { };
          images = (imageBase system).config.system.build.images;
        in
        {
          inherit xnode;
          default = xnode;
          xnodectl = xnode;
          # The same build; `nix run .#xnoded` runs the agent.
          xnoded = xnode.overrideAttrs (old: {
            meta = old.meta // {
              mainProgram = "xnoded";
            };
          });
        }
        # The images are x86_64 only: several cloud variants boot with BIOS-style grub.
        // lib.optionalAttrs (system == "x86_64-linux") {
          inherit (images)
            iso
            raw-efi
            amazon
            google-compute
            azure
            digital-ocean
            ;
          qcow2 = images.qemu-efi;
        }
      );

      apps.x86_64-linux.vm =
        let
          pkgs = nixpkgs.legacyPackages.x86_64-linux;
          qcow2 = self.packages.x86_64-linux.qcow2;
          image = "${qcow2}/${qcow2.passthru.filePath}";
          vm = pkgs.writeShellApplication {
            name = "xnodeos-vm";
            runtimeInputs = [ pkgs.qemu_kvm ];
            text = ''
              # xnodeos-vm [SPEC.json]: boots the qcow2 image with UEFI on a copy-on-write
              # disk kept in $XDG_STATE_HOME/xnodeos-vm; the spec reaches the node at its
              # first boot through fw_cfg. SSH: ssh -p 2222 root@127.0.0.1.
              state=''${XDG_STATE_HOME:-$HOME/.local/state}/xnodeos-vm
              mkdir -p "$state"
              disk=$state/disk.qcow2
              if [ ! -e "$disk" ]; then
                qemu-img create -q -f qcow2 -F qcow2 -b ${image} "$disk" 20G
              fi
              extra=()
              if [ $# -ge 1 ]; then
                extra+=(-fw_cfg "name=opt/xnode/spec.json,file=$1")
              fi
              if [ -w /dev/kvm ]; then
                extra+=(-enable-kvm -cpu host)
              fi
              exec qemu-system-x86_64 -machine q35 -m 2048 -smp 2 \
                -bios ${pkgs.OVMF.fd}/FV/OVMF.fd \
                -drive "file=$disk,if=virtio" \
                -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22 \
                -nographic "''${extra[@]}"
            '';
          };
        in
        {
          type = "app";
          program = lib.getExe vm;
          meta.description = "Boot the XnodeOS qcow2 image in QEMU";
        };

      checks = forAllSystems (
        system: pkgs: {
          # The build, with the tests that need no root (the lab's run outside Nix).
          xnode = self.packages.${system}.xnode;
          mesh = pkgs.testers.runNixOSTest (import ./tests/nixos/mesh.nix { inherit self; });
          format =
            pkgs.runCommand "xnodeos-format"
              {
                nativeBuildInputs = [
                  pkgs.nixfmt
                  pkgs.rustfmt
                ];
              }
              ''
                cd ${self}
                find . -name '*.nix' -exec nixfmt --check {} +
                find crates -name '*.rs' -exec rustfmt --check --edition 2024 {} +
                touch $out
              '';
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-tree);

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.xnode ];
            packages = [
              pkgs.clippy
              pkgs.rustfmt
              pkgs.rust-analyzer
              pkgs.nixfmt
              pkgs.debootstrap
            ];
          };
        }
      );
    };
}
