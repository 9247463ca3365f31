"""Sysctls of the calling thread's network namespace (/proc/sys is per netns)."""

from __future__ import annotations

import os

from tulle.errors import ConfigError, KernelError, NotFoundError


def _path(key: str) -> str:
    rel = key.replace(".", "/") if "/" not in key else key
    path = os.path.normpath(os.path.join("/proc/sys", rel))
    if not path.startswith("/proc/sys/net/"):
        # Only network sysctls are per-namespace; anything else would change the machine.
        raise ConfigError(f"sysctl {key!r} is not a network namespace sysctl (net.*)")
    return path


def get(key: str) -> str:
    try:
        with open(_path(key)) as f:
            return f.read().strip()
    except FileNotFoundError:
        raise NotFoundError(f"sysctl {key} does not exist") from None


def set(key: str, value: str | int) -> None:  # noqa: A001 - mirrors the sysctl verb
    try:
        with open(_path(key), "w") as f:
            f.write(str(value))
    except FileNotFoundError:
        raise NotFoundError(f"sysctl {key} does not exist") from None
    except OSError as exc:
        raise KernelError(f"cannot set sysctl {key}={value}: {exc.strerror}", errno=exc.errno) from None


def ensure(key: str, value: str | int) -> None:
    """Write only when different (sysctl writes can be slow or disturb state)."""
    if get(key) != str(value):
        set(key, value)
