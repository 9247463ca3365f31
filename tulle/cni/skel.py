"""The CNI dispatcher: environment + stdin in, stdout bytes + exit code out.

`handle` has no I/O of its own, so the same function serves a plugin executable
(tulle.cni.entry), a delegated in-process call (tulle.cni.delegate) and, later,
the node agent answering over its socket.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Mapping

from tulle.cni import keys
from tulle.cni import version as cniver
from tulle.cni.conf import Fields, decode, prev_result, runtime_config
from tulle.cni.env import Env, parse_env
from tulle.cni.errors import INCOMPATIBLE_VERSION, INVALID_CONFIG, CNIError, from_exception
from tulle.cni.types import Result

log = logging.getLogger("tulle.cni")


@dataclass
class Call:
    """One invocation: the validated environment and the decoded configuration."""

    env: Env
    conf: dict
    stdin: bytes
    version: str

    @property
    def name(self) -> str:
        return str(keys.get(self.conf, "name", ""))

    @cached_property
    def fields(self) -> Fields:
        return Fields(self.conf, "")

    @cached_property
    def prev_result(self) -> Result | None:
        return prev_result(self.conf)

    @cached_property
    def runtime_config(self) -> Fields:
        return runtime_config(self.conf)

    def require_prev_result(self) -> Result:
        prev = self.prev_result
        if prev is None:
            raise CNIError(INVALID_CONFIG, f"{keys.get(self.conf, 'type')}: required prevResult missing")
        return prev

    def valid_attachments(self) -> set[tuple[str, str]]:
        """GC's keep-list: (containerID, ifname) pairs (both spellings of the key).

        Typed like the rest of the config: a containerID of 5 is an error, not "5" (which
        would keep nothing alive and let GC remove a live attachment's state)."""
        key = "cni.dev/valid-attachments"
        raw = keys.get(self.conf, key)
        if raw is None:
            key = "cni.dev/attachments"
            raw = keys.get(self.conf, key)
        if not isinstance(raw, list):
            raise CNIError(INVALID_CONFIG, "GC: cni.dev/valid-attachments must be a list")
        keep = set()
        for i, item in enumerate(raw):
            f = Fields(item, f"{key}[{i}]")
            keep.add((f.str("containerID"), f.str("ifname")))
        return keep


Handler = Callable[[Call], None]


@dataclass(frozen=True)
class Plugin:
    """What a plugin module exports as PLUGIN: its verbs and the CNI_ARGS it knows."""

    name: str
    add: Callable[[Call], Result]
    delete: Handler
    check: Handler
    status: Handler | None = None
    gc: Handler | None = None
    known_args: frozenset[str] = field(default_factory=frozenset)


def _version_of(conf: dict) -> str:
    ver = keys.get(conf, "cniVersion")
    if not ver:
        raise CNIError(INCOMPATIBLE_VERSION, "cniVersion is missing from the network configuration")
    if not isinstance(ver, str):
        raise CNIError(INCOMPATIBLE_VERSION, f"cniVersion must be a string, got {ver!r}")
    return cniver.require_supported(ver)


def version_info(stdin: bytes) -> bytes:
    """The VERSION answer; needs no plugin, so the executable can skip loading one.
    Never fails: any stdin (none, malformed, 100,000 `[`) gets the plugin's versions."""
    try:
        asked = keys.get(decode(stdin), "cniVersion") or cniver.LATEST
    except CNIError:
        asked = cniver.LATEST
    shown = asked if asked in cniver.SUPPORTED else cniver.LATEST
    return json.dumps({"cniVersion": shown, "supportedVersions": list(cniver.SUPPORTED)}).encode()


def handle(plugin: Plugin, environ: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    """Run one CNI verb of `plugin`; returns what to print on stdout and the exit code."""
    shown_version = cniver.LATEST
    try:
        env = parse_env(environ)
        if env.command == "VERSION":
            return version_info(stdin), 0
        conf = decode(stdin)
        version = _version_of(conf)
        shown_version = version
        if env.command not in ("VERSION", "STATUS") and not isinstance(keys.get(conf, "name"), str):
            raise CNIError(INVALID_CONFIG, "name is required in the network configuration")
        env.check_args(plugin.known_args)
        call = Call(env=env, conf=conf, stdin=stdin, version=version)
        return _dispatch(plugin, call), 0
    except Exception as exc:  # every failure leaves as a CNI error on stdout
        err = from_exception(exc)
        if err.code == 999:
            log.exception("%s: unexpected failure", plugin.name)
        return err.to_json(shown_version), 1


def _dispatch(plugin: Plugin, call: Call) -> bytes:
    cmd = call.env.command
    if cmd == "ADD":
        result = plugin.add(call)
        return json.dumps(result.to_dict(call.version)).encode()
    if cmd == "DEL":
        plugin.delete(call)
        return b""
    if cmd == "CHECK":
        if not cniver.has_check(call.version):
            raise CNIError(INCOMPATIBLE_VERSION, f"config version {call.version} does not allow CHECK")
        plugin.check(call)
        return b""
    if not cniver.has_status_gc(call.version):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version {call.version} does not allow {cmd}")
    if cmd == "STATUS":
        if plugin.status:
            plugin.status(call)
        return b""
    # GC
    call.valid_attachments()  # validate the keep-list even for plugins with nothing to collect
    if plugin.gc:
        plugin.gc(call)
    return b""
