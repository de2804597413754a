#!/usr/bin/env bash
# converged.sh WORKLOAD...: succeeds when xnoded reports the node converged and each
# WORKLOAD's unit is active. The NixOS test and the lab test both run it.
set -euo pipefail
status=$(xnodectl status --output json)
grep -q '"converged": true' <<<"$status" || {
    echo "not converged yet" >&2
    exit 1
}
for workload in "$@"; do
    systemctl is-active --quiet "xnode-$workload.service" || {
        echo "xnode-$workload.service is not active" >&2
        exit 1
    }
done
echo "converged: $*"
