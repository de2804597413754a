#!/usr/bin/env bash
# xnode-install --system PATH [--cmdline FILE] [--config FILE]... [--spec FILE]
#               [--boot-mount DIR] [--efi-dir DIR] [--dry-run]
#
# The installer ISO's unattended install. It does nothing unless asked, by either
#   - the kernel command line: xnode.install=DISK (a device path, or `auto` for the
#     only fixed disk), optionally xnode.install.reboot=no; or
#   - an install.conf (the first --config that exists): lines `disk=DISK`, `reboot=no`.
# Then it wipes DISK, makes a GPT with an EFI system partition (BOOT) and a root
# partition (nixos), installs the system closure PATH with nixos-install, copies the
# node's spec (--spec, if present) to /etc/xnode/spec.json, and reboots. A disk that
# already holds PATH (from an earlier run, when the machine boots the stick again) is
# left alone. --dry-run prints what it would do and changes nothing.
#
# The installed system boots with systemd-boot, so a machine that booted the ISO
# without UEFI (seen by the absence of --efi-dir, /sys/firmware/efi) is refused: its
# firmware could not start what would be installed. The medium booted from (the
# filesystem at --boot-mount, /iso) is never a target.
set -euo pipefail

die() {
    echo "xnode-install: $*" >&2
    exit 1
}

system=""
cmdline=/proc/cmdline
configs=()
spec=/etc/xnode/spec.json
boot_mount=/iso
efi_dir=/sys/firmware/efi
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
    --system) system=$2 && shift 2 ;;
    --cmdline) cmdline=$2 && shift 2 ;;
    --config) configs+=("$2") && shift 2 ;;
    --spec) spec=$2 && shift 2 ;;
    --boot-mount) boot_mount=$2 && shift 2 ;;
    --efi-dir) efi_dir=$2 && shift 2 ;;
    --dry-run) dry_run=1 && shift ;;
    *) die "unknown argument $1 (see the comment at the top of this script)" ;;
    esac
done
[ -n "$system" ] || die "--system PATH is required"

disk=""
reboot=yes
asked_by=""
for word in $(cat "$cmdline"); do
    case "$word" in
    xnode.install=*) disk=${word#xnode.install=} && asked_by="the kernel command line" ;;
    xnode.install.reboot=*) reboot=${word#xnode.install.reboot=} ;;
    esac
done
if [ -z "$disk" ]; then
    for conf in "${configs[@]}"; do
        [ -r "$conf" ] || continue
        disk=$(sed -n 's/^disk=//p' "$conf" | tail -n 1)
        wanted=$(sed -n 's/^reboot=//p' "$conf" | tail -n 1)
        reboot=${wanted:-$reboot}
        asked_by=$conf
        break
    done
fi
if [ -z "$disk" ]; then
    echo "xnode-install: no install asked for (xnode.install= or install.conf); running live"
    exit 0
fi
case "$reboot" in yes | no) ;; *) die "reboot must be yes or no, not '$reboot'" ;; esac

# The medium this system booted from is never a target. Its mount names it by
# whatever stage 1 mounted (/dev/root, a link that may be gone since), so it is
# found by its device number, then its whole disk when it is a partition.
boot_disk=""
majmin=$(findmnt --noheadings --first-only --output MAJ:MIN --mountpoint "$boot_mount" \
    2>/dev/null || true)
majmin=${majmin//[[:space:]]/}
if [ -n "$majmin" ] && [ -e "/sys/dev/block/$majmin" ]; then
    source=/dev/$(basename "$(readlink -f "/sys/dev/block/$majmin")")
    parent=$(lsblk --nodeps --noheadings --output PKNAME "$source" 2>/dev/null || true)
    parent=${parent//[[:space:]]/}
    boot_disk=/dev/${parent:-${source#/dev/}}
fi

if [ "$disk" = auto ]; then
    # Fixed disks, not the boot medium, nor the RAM-backed ones (zram swap, loops).
    mapfile -t fixed < <(lsblk --nodeps --noheadings --output PATH,TYPE,RM,RO |
        awk '$2 == "disk" && $3 == 0 && $4 == 0 && $1 !~ "^/dev/(zram|loop|ram|nbd)" { print $1 }' |
        grep -vxF "${boot_disk:-none}" || true)
    [ ${#fixed[@]} -eq 1 ] ||
        die "xnode.install=auto needs exactly one fixed disk, found ${#fixed[@]}: ${fixed[*]:-none}; name one"
    disk=${fixed[0]}
fi
[ -b "$disk" ] || die "$disk (asked for by $asked_by) is not a block device"
[ "$(realpath "$disk")" != "$(realpath "${boot_disk:-/nonexistent}")" ] ||
    die "$disk is the medium this system booted from"
if grep -q . < <(lsblk --noheadings --output MOUNTPOINT "$disk"); then
    die "$disk has mounted filesystems; not touching it"
fi
[ -d "$system" ] || die "the system to install, $system, is not there"

# Installed already: the root partition records the system put there.
root_part=""
for part in $(lsblk --list --noheadings --output PATH "$disk"); do
    if [ "$(blkid --probe --match-tag LABEL --output value "$part" 2>/dev/null)" = nixos ]; then
        root_part=$part
        break
    fi
done
if [ -n "$root_part" ]; then
    probe=$(mktemp -d)
    installed=""
    if mount -o ro "$root_part" "$probe" 2>/dev/null; then
        installed=$(cat "$probe/etc/xnode/installed-system" 2>/dev/null || true)
        umount "$probe"
    fi
    rmdir "$probe"
    if [ "$installed" = "$system" ]; then
        echo "xnode-install: $disk already holds $system; nothing to do"
        exit 0
    fi
fi

if [ ! -d "$efi_dir" ]; then
    why="this machine did not boot the installer with UEFI, which the installed system's"
    why+=" boot loader (systemd-boot) needs"
    [ $dry_run -eq 1 ] ||
        die "$why; not installing (boot the stick in UEFI mode, or turn UEFI on in the firmware)"
    echo "xnode-install: $why: a real run refuses"
fi

echo "xnode-install: installing $system on $disk (asked for by $asked_by)"
[ -r "$spec" ] && echo "xnode-install: with the spec $spec" ||
    echo "xnode-install: without a spec (give one later with xnodectl apply)"
echo "xnode-install: then reboot=$reboot"
if [ $dry_run -eq 1 ]; then
    echo "xnode-install: dry run; nothing changed"
    exit 0
fi

wipefs --all --force "$disk"
printf 'label: gpt\nsize=512MiB, type=uefi, name=BOOT\ntype=linux, name=nixos\n' | sfdisk --quiet "$disk"
udevadm settle
mapfile -t parts < <(lsblk --list --noheadings --output PATH "$disk" | tail -n +2)
[ ${#parts[@]} -eq 2 ] || die "expected 2 partitions on $disk after partitioning, found ${#parts[@]}"
mkfs.fat -F 32 -n BOOT "${parts[0]}"
mkfs.ext4 -q -F -L nixos "${parts[1]}"
mkdir -p /mnt
mount "${parts[1]}" /mnt
mkdir -p /mnt/boot
mount -o umask=077 "${parts[0]}" /mnt/boot
nixos-install --root /mnt --system "$system" --no-root-passwd --no-channel-copy
if [ -r "$spec" ]; then
    install -D -m 0644 "$spec" /mnt/etc/xnode/spec.json
fi
mkdir -p /mnt/etc/xnode
printf '%s\n' "$system" >/mnt/etc/xnode/installed-system
sync
umount -R /mnt
echo "xnode-install: done"
if [ "$reboot" = yes ]; then systemctl reboot; else systemctl poweroff; fi
