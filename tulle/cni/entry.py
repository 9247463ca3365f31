"""The entry point of every installed plugin executable.

Kept deliberately thin: when a node agent serves this host the call is handed
to it over its unix socket (tulle.cni.forward: `os` and `_socket` only), so the
executable never imports the plugin or pyroute2; the agent runs the very same
`skel.handle` in this process's network namespace. With no agent (no socket,
a stale one, or TULLE_STANDALONE=1) the plugin runs here, in-process, like the
reference plugins. VERSION is always answered locally.

The process ends with os._exit once stdout is flushed: there is nothing to
finalise, and interpreter teardown would add a millisecond or more to every call.
"""

from __future__ import annotations

import os
import sys


def main(plugin_type: str) -> None:
    stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    command = os.environ.get("CNI_COMMAND")
    reply = None
    if command != "VERSION" and os.environ.get("TULLE_STANDALONE") != "1":
        from tulle.cni import forward

        reply = forward.try_forward(plugin_type, os.environ, stdin)
    if reply is None:
        reply = standalone(plugin_type, command, stdin)
    out, code = reply
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.stderr.flush()
    os._exit(code)


def standalone(plugin_type: str, command: str | None, stdin: bytes) -> tuple[bytes, int]:
    """Run the plugin in this process (the plugin module is imported only now)."""
    from tulle.cni import skel

    if command == "VERSION":
        return skel.version_info(stdin), 0
    light_pyroute2()
    from tulle.cni.plugins import load

    return skel.handle(load(plugin_type), os.environ, stdin)


def light_pyroute2() -> None:
    """Make `import pyroute2.<module>` skip the package's __init__.

    pyroute2/__init__.py imports every API it has (NDB with sqlite, ssl, IPVS,
    wireless, …) — ~40 ms of a standalone call that needs IPRoute and a few
    message classes. A bare package module with the real search path stands in
    for it, so submodules load from the real files on demand. Only here, in a
    short-lived plugin process that imports nothing else: a long-lived process
    (the agent) keeps the normal package.
    """
    if "pyroute2" in sys.modules:
        return
    import importlib.machinery
    import types

    spec = importlib.machinery.PathFinder.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed as a regular package: let the normal import report it
    package = types.ModuleType("pyroute2")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    sys.modules["pyroute2"] = package
