"""Handing a CNI call to the node agent over its unix socket: the wire format
and the client side.

Imports only the standard library: this runs in every plugin executable before
anything else, and the point of forwarding is to skip loading the plugin (and
pyroute2) at all.

Wire format — one request per connection, newline-delimited JSON (json.dumps
escapes newlines inside strings, so a message is exactly one line):

    client -> agent   {"type": "bridge", "env": {"CNI_COMMAND": "ADD", ...}, "stdin": "<config>"}\\n
    agent  -> client  {"stdout": "<what the plugin printed>", "code": <exit code>}\\n

`env` carries only the CNI_* variables. Config and output are text; bytes that
are not UTF-8 travel as surrogate escapes, so they arrive unchanged. The agent
closes the connection after its reply. A connection that ends before a full
reply line means the agent failed mid-request.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Mapping

DEFAULT_SOCKET = "/run/tulle/agent.sock"
CONNECT_TIMEOUT = 1.0     # a live agent accepts at once; a full backlog means "busy": run here instead
REPLY_TIMEOUT = 300.0     # bounded, so a wedged agent cannot hang a runtime forever
MAX_MESSAGE = 16 << 20    # far above any real config or result; guards both ends' memory
TRY_AGAIN = 11            # the spec's "try again later"


class AgentUnavailable(Exception):
    """No agent took the request: nothing ran, so running standalone is safe."""


class AgentFailed(Exception):
    """The agent accepted the request but gave no complete reply: it may have half-run."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def encode(message: dict) -> bytes:
    """One message as one line."""
    return json.dumps(message).encode() + b"\n"


def read_message(sock: socket.socket, limit: int = MAX_MESSAGE) -> dict | None:
    """Read one line-framed JSON object; None when the peer closed before a full line."""
    buf = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        end = chunk.find(b"\n")
        if end >= 0:
            buf += chunk[:end]
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"message longer than {limit} bytes")
    message = json.loads(bytes(buf))
    if not isinstance(message, dict):
        raise ValueError("message is not a JSON object")
    return message


def request(plugin_type: str, environ: Mapping[str, str], stdin: bytes) -> dict:
    """The request message for one call (only the CNI_* variables travel)."""
    env = {k: v for k, v in environ.items() if k.startswith("CNI_")}
    return {"type": plugin_type, "env": env, "stdin": _text(stdin)}


def parse_request(message: dict) -> tuple[str, dict[str, str], bytes]:
    """(type, env, stdin) of a request, or ValueError naming what is wrong."""
    kind, env, stdin = message.get("type"), message.get("env"), message.get("stdin", "")
    if not isinstance(kind, str) or not kind:
        raise ValueError("request: type must be a non-empty string")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("request: env must be an object of strings")
    if not isinstance(stdin, str):
        raise ValueError("request: stdin must be a string")
    return kind, env, _bytes(stdin)


def reply(stdout: bytes, code: int) -> dict:
    return {"stdout": _text(stdout), "code": code}


def parse_reply(message: dict) -> tuple[bytes, int]:
    out, code = message.get("stdout"), message.get("code")
    if not isinstance(out, str) or isinstance(code, bool) or not isinstance(code, int):
        raise ValueError("reply: want {\"stdout\": str, \"code\": int}")
    return _bytes(out), code


def error_output(code: int, msg: str, stdin: bytes, details: str = "") -> bytes:
    """A CNI error object in the caller's cniVersion, built without the plugin code."""
    version = "1.1.0"
    try:
        conf = json.loads(stdin)
        if isinstance(conf, dict) and isinstance(conf.get("cniVersion"), str):
            version = conf["cniVersion"]
    except ValueError:
        pass
    out = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    return json.dumps(out).encode()


def socket_path(stdin: bytes) -> str:
    """The agent socket named by the config's `agentSocket`, or the default."""
    try:
        conf = json.loads(stdin)
    except ValueError:
        return DEFAULT_SOCKET
    path = conf.get("agentSocket") if isinstance(conf, dict) else None
    return path if isinstance(path, str) and path else DEFAULT_SOCKET


def connect(path: str, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connection to a live agent, or AgentUnavailable (absent, stale, refused, busy)."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise AgentUnavailable(f"{path} is not a socket")
    except OSError as exc:
        raise AgentUnavailable(f"{path}: {exc.strerror}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:  # ENOENT, ECONNREFUSED (stale file), EACCES, EAGAIN/timeout (backlog full)
        sock.close()
        raise AgentUnavailable(f"{path}: {exc}") from None
    return sock


def call(sock: socket.socket, plugin_type: str, environ: Mapping[str, str], stdin: bytes,
         timeout: float = REPLY_TIMEOUT) -> tuple[bytes, int]:
    """Send one call on a connected socket and wait for the reply; AgentFailed if none comes."""
    try:
        sock.settimeout(timeout)
        sock.sendall(encode(request(plugin_type, environ, stdin)))
        message = read_message(sock)
        if message is None:
            raise AgentFailed("the agent closed the connection before replying")
        return parse_reply(message)
    except (OSError, ValueError) as exc:
        raise AgentFailed(f"no valid reply from the agent: {exc}") from None
    finally:
        sock.close()


def try_forward(plugin_type: str, environ: Mapping[str, str], stdin: bytes) -> tuple[bytes, int] | None:
    """Run the call in the agent when one serves; None means "run it here instead".

    Once the agent has accepted, its answer stands: if it fails to give one the
    caller gets error 11 ("try again later") rather than a second, standalone
    run on top of a possibly half-done first one.
    """
    path = socket_path(stdin)
    try:
        sock = connect(path)
    except AgentUnavailable:
        return None
    try:
        return call(sock, plugin_type, environ, stdin, _reply_timeout(environ))
    except AgentFailed as exc:
        return error_output(TRY_AGAIN, f"the tulle agent at {path} failed to answer; try again later",
                            stdin, str(exc)), 1


def _reply_timeout(environ: Mapping[str, str]) -> float:
    try:
        return float(environ.get("TULLE_AGENT_TIMEOUT", REPLY_TIMEOUT))
    except ValueError:
        return REPLY_TIMEOUT
