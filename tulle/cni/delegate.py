"""Invoking another plugin (IPAM, or a chained delegate) the way a runtime would.

tulle's own types run in-process through the same `skel.handle` their
executables use; any other type is executed from CNI_PATH like the reference
plugins do. Either way the caller gets a Result or a CNIError with the
delegate's own code and message.
"""

from __future__ import annotations

import os
import subprocess

from tulle.cni import plugins
from tulle.cni.conf import load_json
from tulle.cni.errors import INTERNAL, NOT_FOUND, CNIError
from tulle.cni.skel import Call, handle
from tulle.cni.types import Result


def _find_executable(type_name: str, path: list[str]) -> str:
    for directory in path:
        candidate = os.path.join(directory, type_name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(NOT_FOUND, f"failed to find plugin {type_name!r} in CNI_PATH {path}")


def invoke(call: Call, type_name: str, command: str, stdin: bytes | None = None) -> Result | None:
    """Run `command` of plugin `type_name` with the caller's env; ADD returns its Result."""
    environ = call.env.to_environ()
    environ["CNI_COMMAND"] = command
    data = call.stdin if stdin is None else stdin
    if type_name in plugins.PLUGINS:
        out, code = handle(plugins.load(type_name), environ, data)
    else:
        exe = _find_executable(type_name, call.env.path)
        environ.setdefault("PATH", os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
        proc = subprocess.run([exe], input=data, env=environ, capture_output=True, check=False)
        out, code = proc.stdout, proc.returncode
        if code != 0 and not out.strip():
            raise CNIError(INTERNAL, f"plugin {type_name!r} failed with exit code {code}",
                           proc.stderr.decode(errors="replace").strip())
    if code != 0:
        raise _error_of(type_name, out)
    if command != "ADD":
        return None
    try:
        reply = load_json(out)
    except CNIError:
        raise CNIError(INTERNAL, f"plugin {type_name!r} printed an invalid result: {out[:200]!r}") from None
    return Result.from_dict(reply, f"the result of plugin {type_name!r}")


def _error_of(type_name: str, out: bytes) -> CNIError:
    """The delegate's own error, or 999 quoting its output when that is no CNI error object
    (not JSON, too deep, a code that is no integer)."""
    try:
        return CNIError.from_dict(load_json(out))
    except (CNIError, ValueError):
        return CNIError(INTERNAL, f"plugin {type_name!r} failed: {out[:200]!r}")
