"""The CNI_* environment: parsed and validated per verb, as the spec asks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from tulle.cni.errors import INVALID_ENV, CNIError

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# Which variables each verb needs (SPEC.md "Parameters").
REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "VERSION": (),
    "STATUS": (),
}

_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_TRUE = ("1", "true", "True", "TRUE")


@dataclass
class Env:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: list[tuple[str, str]] = field(default_factory=list)
    path: list[str] = field(default_factory=list)

    def arg(self, key: str) -> str | None:
        """The value of CNI_ARGS key (last one wins), or None."""
        value = None
        for k, v in self.args:
            if k == key:
                value = v
        return value

    def check_args(self, known: frozenset[str]) -> None:
        """Unknown CNI_ARGS keys are an error unless IgnoreUnknown is true."""
        if (self.arg("IgnoreUnknown") or "") in _TRUE:
            return
        unknown = [f"{k}={v}" for k, v in self.args if k not in known and k != "IgnoreUnknown"]
        if unknown:
            raise CNIError(
                INVALID_ENV,
                f"CNI_ARGS: unknown args {unknown} (set IgnoreUnknown=1 to ignore them)",
            )

    def to_environ(self) -> dict[str, str]:
        """The CNI_* variables again, e.g. to invoke a delegated plugin."""
        out = {"CNI_COMMAND": self.command}
        if self.container_id:
            out["CNI_CONTAINERID"] = self.container_id
        if self.netns:
            out["CNI_NETNS"] = self.netns
        if self.ifname:
            out["CNI_IFNAME"] = self.ifname
        if self.args:
            out["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in self.args)
        if self.path:
            out["CNI_PATH"] = ":".join(self.path)
        return out


def parse_args(raw: str) -> list[tuple[str, str]]:
    pairs = []
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENV, f"CNI_ARGS: invalid pair {item!r} (want KEY=VALUE)")
        pairs.append((key, value))
    return pairs


IFNAMSIZ = 16  # the kernel's buffer for a name, NUL included


def validate_ifname(name: str) -> str | None:
    """Why `name` is not a valid interface name, or None when it is.

    The kernel counts bytes, not characters: "éééééééé" is 8 characters but 16 bytes
    in UTF-8, which netlink refuses (ERANGE) only after the plugin has begun its work.
    """
    if not name:
        return "is empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes in the environment (surrogateescape)
        return f"{name!r} is not valid UTF-8"
    if size > IFNAMSIZ - 1:
        return f"{name!r} is longer than {IFNAMSIZ - 1} bytes ({size})"
    if name in (".", ".."):
        return f"{name!r} is not allowed"
    for ch in name:
        if ch in "/:\0" or ch.isspace():
            return f"{name!r} contains {ch!r}"
    return None


def parse_env(environ: Mapping[str, str]) -> Env:
    """Read and validate the CNI_* variables; every problem names its variable."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        shown = repr(command) if command else "missing"
        raise CNIError(INVALID_ENV, f"CNI_COMMAND is {shown}; want one of {', '.join(COMMANDS)}")
    missing = [name for name in REQUIRED[command] if not environ.get(name)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables missing for {command}: {', '.join(missing)}")
    env = Env(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=parse_args(environ.get("CNI_ARGS", "")),
        path=[p for p in environ.get("CNI_PATH", "").split(":") if p],
    )
    bad = []
    if env.container_id and not _CONTAINER_ID.fullmatch(env.container_id):  # `$` matches before "\n"
        bad.append(f"CNI_CONTAINERID {env.container_id!r} must match {_CONTAINER_ID.pattern}")
    if env.ifname:
        why = validate_ifname(env.ifname)
        if why:
            bad.append(f"CNI_IFNAME {why}")
    if bad:
        raise CNIError(INVALID_ENV, "; ".join(bad))
    return env
