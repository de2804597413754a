# The images: nixpkgs' own `system.build.images`, each variant customised by a module
# here. Build one with `nix build .#iso` (see the flake's `packages`); for a
# configuration of your own that imports this file, `nixos-rebuild build-image
# --image-variant iso --flake .#yours`.
{
  imports = [ ./seed.nix ];
  image.modules = {
    iso = ./iso.nix;
    qemu-efi = ./qemu-efi.nix;
    raw-efi = ./raw-efi.nix;
    amazon = ./amazon.nix;
    google-compute = ./google-compute.nix;
    azure = ./azure.nix;
    digital-ocean = ./digital-ocean.nix;
  };
}
