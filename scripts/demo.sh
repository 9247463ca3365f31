#!/usr/bin/env bash
# The main command: a 3-node tulle cluster built from network namespaces on this
# machine (fabric, nodes, one `tulle agent run` per node), a pod on every node,
# proof that every pod reaches every other (ICMP and TCP), a table of nodes,
# subnets and pods. The lab stays up for exploring; the output says how to
# explore it and how to tear it down (`.venv/bin/tulle lab down --lab demo`).
# Options go to `tulle demo lab`: --backend host-gw|vxlan|udp, --store sqlite|etcd,
# --segments 2, --down (remove the lab at the end).
# The podman demo of the CNI plugins: .venv/bin/tulle demo podman
# Needs root (network namespaces).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: needs root (it creates network namespaces): sudo $0" >&2
    exit 1
fi
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/tulle demo lab "$@"
