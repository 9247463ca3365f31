"""The entry point of every installed plugin executable.

Kept deliberately thin: this module imports only the standard library, and the
plugin module (with pyroute2 behind it) is imported only for the verb that
needs it. The next layer (the agent) will be tried here first.
"""

from __future__ import annotations

import os
import sys


def main(plugin_type: str) -> None:
    stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    from tulle.cni import skel

    if os.environ.get("CNI_COMMAND") == "VERSION":
        out, code = skel.version_info(stdin), 0
    else:
        from tulle.cni.plugins import load

        out, code = skel.handle(load(plugin_type), os.environ, stdin)
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.exit(code)
