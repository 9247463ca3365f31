#!/usr/bin/env bash
# The benchmarks (docs/benchmarks.md): bootstrap this machine, then run every
# scenario and write bench/results/<id>.json and docs/benchmarks.md.
# Arguments go to `python -m bench` (e.g. --quick, --only cni,churn, --backends vxlan).
# Needs root; about 15 minutes on 2 cores; everything runs in its own tulle-* netns.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec timeout --signal=INT 1800 .venv/bin/python -m bench "$@"
