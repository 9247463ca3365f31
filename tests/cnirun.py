"""Running plugin executables from tests exactly as a runtime would, in a
chosen "host" netns (the executable is started inside it)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

REFERENCE_DIR = "/usr/lib/cni"


@dataclass
class Outcome:
    code: int
    out: Any          # parsed stdout (dict) or None when empty
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def error_code(self) -> int | None:
        return self.out.get("code") if (not self.ok and isinstance(self.out, dict)) else None


class Runner:
    def __init__(self, bin_dirs: list[str], data_dir: str) -> None:
        self.bin_dirs = bin_dirs
        self.data_dir = data_dir

    def __call__(self, type_name: str, command: str, conf: dict | bytes | str, *,
                 netns: str = "", ifname: str = "eth0", container_id: str = "c0ffee",
                 args: str = "", host_ns: str | None = None, env: dict | None = None) -> Outcome:
        data = conf if isinstance(conf, (bytes, str)) else json.dumps(conf)
        if isinstance(data, str):
            data = data.encode()
        environ = {
            "CNI_COMMAND": command,
            "CNI_PATH": ":".join(self.bin_dirs),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        if container_id:
            environ["CNI_CONTAINERID"] = container_id
        if netns:
            environ["CNI_NETNS"] = netns
        if ifname:
            environ["CNI_IFNAME"] = ifname
        if args:
            environ["CNI_ARGS"] = args
        environ.update(env or {})
        exe = os.path.join(self.bin_dirs[0], type_name)
        cmd = [exe] if host_ns is None else ["nsenter", f"--net={host_ns}", exe]
        proc = subprocess.run(cmd, input=data, env=environ, capture_output=True, check=False, timeout=60)
        text = proc.stdout.strip()
        try:
            out = json.loads(text) if text else None
        except ValueError:
            out = text.decode(errors="replace")
        return Outcome(proc.returncode, out, proc.stderr.decode(errors="replace"))


def in_ns(ns: str, *cmd: str, check: bool = True) -> str:
    """Run a command inside a netns and return its stdout."""
    proc = subprocess.run(["nsenter", f"--net={ns}", *cmd], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} in {ns} failed: {proc.stderr}")
    return proc.stdout


def ip_json(ns: str, *args: str) -> list[dict]:
    """`ip -j ARGS` inside a netns, parsed."""
    return json.loads(in_ns(ns, "ip", "-j", *args) or "[]")


def wait_for(what: str, fn, timeout: float = 15.0, interval: float = 0.1, logs=lambda: ""):
    """Poll `fn` until it returns something truthy (bounded); the failure says what and shows `logs()`."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{logs()}")
