#!/usr/bin/env bash
# The main job until the lab exists: podman on tulle's CNI plugins inside a
# sandbox netns — two containers ping and talk TCP, a published port answers,
# then everything is removed. Needs root (network namespaces, podman).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: needs root (it creates network namespaces and runs podman): sudo $0" >&2
    exit 1
fi
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/tulle demo podman "$@"
