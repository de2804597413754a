#!/usr/bin/env bash
# xnode-seed [--join-key KEYFILE] TARGET SOURCE...
#
# Gives a node its first spec: takes the first spec found among SOURCEs, checks it
# with `xnodectl validate`, and writes it to TARGET atomically. Does nothing when
# TARGET exists, so a spec applied since first boot is never replaced.
#
# A source may also hold the node's join key (which admits it to its owner's fleet):
# as a bundle {"spec": {...}, "join_key": {...}} in place of the spec, or, on the
# stick, as join.key beside spec.json. With --join-key, it is written to KEYFILE
# (mode 0600) with the spec. Sources:
#
#   file:PATH          a file holding the spec, e.g. a cloud's user-data
#   url:URL[|HEADER]   an HTTP GET, e.g. a metadata server (with one request header)
#   do-metadata:PATH   the user_data field of DigitalOcean's cached metadata JSON
#   fw_cfg             qemu's -fw_cfg name=opt/xnode/spec.json
#   media              spec.json on a filesystem labelled XNODE (a USB stick), which
#                      stays mounted read-only at /run/xnode-media for the installer
#                      (mounted whenever `media` is a source, whichever source wins)
#
# A source with nothing in it is skipped. A source whose content is not a valid spec
# is reported and skipped, and the exit status is then 1 (so the failed unit shows).
# Without any spec the node still boots: xnoded waits for `xnodectl apply`.
set -euo pipefail

join_target=
if [ "${1:-}" = --join-key ]; then
    join_target=${2:?--join-key needs a file}
    shift 2
fi
if [ $# -lt 1 ]; then
    echo "usage: xnode-seed [--join-key KEYFILE] TARGET SOURCE..." >&2
    exit 2
fi
target=$1
shift

# The stick labelled XNODE, read-only at /run/xnode-media; fails when there is none.
mount_media() {
    mountpoint --quiet /run/xnode-media && return 0
    local dev
    dev=$(blkid --label XNODE 2>/dev/null) || return 1
    mkdir -p /run/xnode-media
    mount -o ro "$dev" /run/xnode-media
}

# The installer reads install.conf from the stick even when another source (the
# ISO's own spec) gives the spec, or the spec is there already.
for source in "$@"; do
    if [ "$source" = media ]; then
        mount_media || true
    fi
done

if [ -e "$target" ]; then
    echo "xnode-seed: $target exists; keeping it"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Writes what SOURCE holds to standard output; fails when it holds nothing.
read_source() {
    case "$1" in
    file:*) cat -- "${1#file:}" 2>/dev/null ;;
    url:*)
        local spec=${1#url:} url header
        url=${spec%%|*}
        header=${spec#"$url"}
        header=${header#|}
        curl --silent --fail --max-time 10 --retry 3 ${header:+--header "$header"} -- "$url"
        ;;
    do-metadata:*) jq --exit-status --raw-output '.user_data // empty' "${1#do-metadata:}" ;;
    fw_cfg) cat /sys/firmware/qemu_fw_cfg/by_name/opt/xnode/spec.json/raw 2>/dev/null ;;
    media) mount_media && cat /run/xnode-media/spec.json 2>/dev/null ;;
    *)
        echo "xnode-seed: unknown source $1" >&2
        return 1
        ;;
    esac
}

status=0
for source in "$@"; do
    candidate="$work/candidate"
    if ! read_source "$source" >"$candidate" || [ ! -s "$candidate" ]; then
        echo "xnode-seed: no spec in $source"
        continue
    fi
    # User-data meant for cloud-init or a shell is not ours: say so, do not fail.
    first=$(head -c 1 "$candidate")
    if [ "$first" != "{" ]; then
        echo "xnode-seed: $source holds something other than a JSON spec; skipped"
        continue
    fi
    join="$work/join.key"
    rm -f "$join"
    if jq --exit-status 'type == "object" and has("join_key")' "$candidate" >/dev/null 2>&1; then
        if jq --exit-status '.join_key | type == "object" and has("delegation")' "$candidate" >/dev/null; then
            jq '.join_key' "$candidate" >"$join"
        else
            echo "xnode-seed: the join key in $source is not one; left out" >&2
        fi
        jq '.spec' "$candidate" >"$candidate.spec"
        mv -f "$candidate.spec" "$candidate"
    elif [ "$source" = media ] && [ -s /run/xnode-media/join.key ]; then
        cat /run/xnode-media/join.key >"$join"
    fi
    if ! xnodectl validate "$candidate" >&2; then
        echo "xnode-seed: the spec in $source is not valid; skipped" >&2
        status=1
        continue
    fi
    if [ -s "$join" ]; then
        if [ -z "$join_target" ]; then
            echo "xnode-seed: $source holds a join key, but this image takes none; ignored" >&2
        else
            mkdir -p "$(dirname "$join_target")"
            install -m 0600 "$join" "$join_target.xnode-seed"
            sync "$join_target.xnode-seed"
            mv -f "$join_target.xnode-seed" "$join_target"
            echo "xnode-seed: wrote the join key $join_target from $source"
        fi
    fi
    mkdir -p "$(dirname "$target")"
    tmp="$target.xnode-seed"
    install -m 0644 "$candidate" "$tmp"
    sync "$tmp"
    mv -f "$tmp" "$target"
    echo "xnode-seed: wrote $target from $source"
    exit 0
done
[ $status -eq 0 ] && echo "xnode-seed: no spec found; xnoded waits for one (xnodectl apply)"
exit $status
