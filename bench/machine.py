"""The machine a run happened on: figures are only comparable on the same one."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys


def _first(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def describe() -> dict[str, str | int]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        m = re.search(r"MemTotal:\s+(\d+)", f.read())
        mem = int(m.group(1)) // 1024 if m else 0
    try:
        import pyroute2
        pyroute2_version = pyroute2.__version__
    except Exception:  # version attribute moved between releases
        pyroute2_version = "unknown"
    return {
        "cpu": cpu, "cores": os.cpu_count() or 0, "kernel": platform.release(), "memory_mib": mem,
        "python": sys.version.split()[0], "pyroute2": pyroute2_version,
        "iperf3": _first(["iperf3", "--version"]), "nft": _first(["nft", "--version"]),
        "reference_plugins": _first(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"]),
        "os": _first(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
