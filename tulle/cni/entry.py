"""The entry point of every installed plugin executable.

Kept deliberately thin: when a node agent serves this host the call is handed
to it over its unix socket (tulle.cni.forward, standard library only), so the
executable never imports the plugin or pyroute2; the agent runs the very same
`skel.handle` in this process's network namespace. With no agent (no socket,
a stale one, or TULLE_STANDALONE=1) the plugin runs here, in-process, like the
reference plugins. VERSION is always answered locally.
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
    sys.exit(code)


def standalone(plugin_type: str, command: str | None, stdin: bytes) -> tuple[bytes, int]:
    """Run the plugin in this process (the plugin module is imported only now)."""
    from tulle.cni import skel

    if command == "VERSION":
        return skel.version_info(stdin), 0
    from tulle.cni.plugins import load

    return skel.handle(load(plugin_type), os.environ, stdin)
