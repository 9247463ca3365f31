#!/usr/bin/env bash
# The whole test suite: unit tests, netns tests and the podman tests (the last
# two need root; they only ever touch tulle-* network namespaces they create).
# Extra arguments go to pytest, e.g. ./scripts/test.sh tests/unit -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: not root: netns and podman tests will be skipped (run with sudo for all)" >&2
fi
exec .venv/bin/pytest -q -rsfE "$@"
