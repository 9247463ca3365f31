#!/usr/bin/env bash
# Prepare this machine for tulle (Debian 12): the Debian packages the plugins,
# tests and demo use, then a virtual environment at .venv with tulle installed
# editable. Idempotent and quick when everything is already there; never asks
# anything (CI has no stdin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# etcd-server: the store tests start their own etcd inside a tulle-* netns; containerd: the
# containerd tests run a private one in a sandbox netns and mount namespace.
PACKAGES=(iproute2 nftables libnftables1 iperf3 iputils-ping containernetworking-plugins podman runc busybox-static conntrack etcd-server bird2 containerd)
export DEBIAN_FRONTEND=noninteractive

say() { echo "bootstrap: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else say "need root to run: $*"; exit 1
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# --- Debian packages: apt-get update only when something is missing ----------
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if ! command -v "$PYTHON" >/dev/null; then
    missing+=(python3 python3-venv)
elif ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)   # Debian splits `python3 -m venv` out of python3
fi
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # No package may start a daemon in the root netns (etcd-server would on a systemd
    # host): a temporary policy-rc.d denies every service start during the install.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        trap 'as_root rm -f "$policy"' EXIT
    fi
    as_root apt-get update -qq
    as_root apt-get install -y -qq -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# --- .venv with tulle (editable) and the test extras -----------------------
cd "$ROOT"
stamp=.venv/.tulle-bootstrap
want="$(sha256sum pyproject.toml | cut -d' ' -f1) compat"
# tulle runs as many short processes (CLI, plugins, agents): with PYTHONDONTWRITEBYTECODE
# set (as here) none would cache its bytecode and each would compile every module it
# imports again. compileall writes the caches regardless, and only for changed files.
precompile() { .venv/bin/python -m compileall -q -j 0 tulle >/dev/null; }
if [ -x .venv/bin/tulle ] && [ -x .venv/bin/pytest ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    precompile
    say ".venv up to date"
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
# compat: a .pth path entry instead of an import-hook finder, which cost every tulle
# process (each CLI call, each plugin exec) ~30 ms at startup.
say "pip install -e '.[test]' into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
precompile
echo "$want" > "$stamp"
say "ready: .venv/bin/tulle, .venv/bin/pytest"
