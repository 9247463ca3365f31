"""Handing a CNI call to the node agent over its unix socket: the wire format
and the client side.

This runs in every plugin executable before anything else, and forwarding
exists to skip loading the plugin (and pyroute2) at all — so the client path
imports nothing beyond `os`, `_socket`, tulle.node_defaults and tulle.cni.keys (both
import nothing): not even `json` or `socket`, which would add ~10 ms (`re`, `enum`, …)
to every call. JSON is loaded only to find a non-default `agentSocket` or to word an error.

Wire format — one request per connection, each direction a run of netstrings
(`<decimal length>:<bytes>,`) ended by the sender shutting down its side:

    client -> agent   ns(plugin type) ns(env) ns(stdin)         then SHUT_WR
    agent  -> client  ns(exit code, decimal) ns(stdout)         then close

`env` is the CNI_* variables as `KEY=VALUE` joined by NUL (environment strings
cannot contain NUL). Config and output travel as raw bytes, unchanged. A reply
that is cut short or malformed means the agent failed mid-request.
"""

from __future__ import annotations

import os

import _socket

from tulle import node_defaults
from tulle.cni import keys

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs milliseconds at every exec; annotations are strings anyway
    from typing import Mapping

DEFAULT_SOCKET = node_defaults.AGENT_SOCKET
CONNECT_TIMEOUT = 1.0     # a live agent accepts at once; a full backlog means "busy": run here instead
REPLY_TIMEOUT = 300.0     # bounded, so a wedged agent cannot hang a runtime forever
MAX_MESSAGE = 16 << 20    # far above any real config or result; guards both ends' memory
TRY_AGAIN = 11            # the spec's "try again later"


class AgentUnavailable(Exception):
    """No agent took the request: nothing ran, so running standalone is safe."""


class AgentFailed(Exception):
    """The agent accepted the request but gave no complete reply: it may have half-run."""


# --- wire format (pure) ------------------------------------------------------

def netstrings(*parts: bytes) -> bytes:
    return b"".join(b"%d:%s," % (len(p), p) for p in parts)


def parse_netstrings(data: bytes, count: int) -> list[bytes]:
    """Exactly `count` netstrings and nothing after them, or ValueError."""
    out, pos = [], 0
    for _ in range(count):
        colon = data.find(b":", pos, pos + 12)
        if colon < 0 or not data[pos:colon].isdigit():
            raise ValueError("malformed message: expected a netstring length")
        end = colon + 1 + int(data[pos:colon])
        if data[end:end + 1] != b",":
            raise ValueError("malformed message: netstring cut short")
        out.append(data[colon + 1:end])
        pos = end + 1
    if pos != len(data):
        raise ValueError("malformed message: trailing bytes")
    return out


def encode_request(plugin_type: str, environ: Mapping[str, str], stdin: bytes) -> bytes:
    """The request for one call (only the CNI_* variables travel)."""
    env = b"\0".join(f"{k}={v}".encode("utf-8", "surrogateescape")
                     for k, v in environ.items() if k.startswith("CNI_"))
    return netstrings(plugin_type.encode(), env, stdin)


def decode_request(data: bytes) -> tuple[str, dict[str, str], bytes]:
    """(type, env, stdin) of a request, or ValueError naming what is wrong."""
    kind, env_block, stdin = parse_netstrings(data, 3)
    if not kind:
        raise ValueError("request: the plugin type is empty")
    env: dict[str, str] = {}
    for item in env_block.split(b"\0") if env_block else []:
        key, sep, value = item.partition(b"=")
        if not sep or not key:
            raise ValueError("request: env entries must be KEY=VALUE")
        env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return kind.decode("utf-8", "surrogateescape"), env, stdin


def encode_reply(stdout: bytes, code: int) -> bytes:
    return netstrings(b"%d" % code, stdout)


def decode_reply(data: bytes) -> tuple[bytes, int]:
    code, out = parse_netstrings(data, 2)
    if not code.lstrip(b"-").isdigit():
        raise ValueError("reply: the exit code is not a number")
    return out, int(code)


def read_all(sock, limit: int = MAX_MESSAGE) -> bytes:
    """Everything the peer sends until it shuts its side down (bounded by `limit`)."""
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"message longer than {limit} bytes")
        chunks.append(chunk)


def error_output(code: int, msg: str, stdin: bytes, details: str = "") -> bytes:
    """A CNI error object in the caller's cniVersion, built without the plugin code."""
    import json

    version = "1.1.0"
    try:
        conf = json.loads(stdin)
        if isinstance(conf, dict) and isinstance(conf.get("cniVersion"), str):
            version = conf["cniVersion"]
    except (ValueError, RecursionError):  # too deep for the decoder: the default version
        pass
    out = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    return json.dumps(out).encode()


def socket_path(stdin: bytes) -> str:
    """The agent socket named by the config's `agentSocket` (in any spelling Go's decoder
    takes for it: tulle.cni.keys), or the default."""
    if stdin.isascii() and b"\\u" not in stdin and b'"agentsocket"' not in stdin.lower():
        return DEFAULT_SOCKET  # the common case, decided without parsing
    try:
        conf = _loads(stdin)
    except (ValueError, RecursionError):  # malformed or too deep: standalone reports it (error 6)
        return DEFAULT_SOCKET
    path = keys.get(conf, "agentSocket") if isinstance(conf, dict) else None
    return path if isinstance(path, str) and path else DEFAULT_SOCKET


class _Decoding:
    """What the C JSON scanner asks of its context (json.JSONDecoder's defaults)."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity


def _loads(data: bytes) -> object:
    """json.loads of a UTF-8 document through the C scanner alone: `import json`
    would drag in `re` and cost more than the rest of the forwarding path."""
    try:
        import _json

        scan = _json.make_scanner(_Decoding)
    except (ImportError, AttributeError):  # an interpreter without the accelerator
        import json

        return json.loads(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError("trailing data after the JSON document")
    return value


# --- client ------------------------------------------------------------------

S_IFSOCK = 0o140000


def connect(path: str, timeout: float = CONNECT_TIMEOUT) -> _socket.socket:
    """A connection to a live agent, or AgentUnavailable (absent, stale, refused, busy)."""
    try:
        if os.stat(path).st_mode & 0o170000 != S_IFSOCK:
            raise AgentUnavailable(f"{path} is not a socket")
    except OSError as exc:
        raise AgentUnavailable(f"{path}: {exc.strerror}") from None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:  # ENOENT, ECONNREFUSED (stale file), EACCES, EAGAIN/timeout (backlog full)
        sock.close()
        raise AgentUnavailable(f"{path}: {exc}") from None
    return sock


def call(sock: _socket.socket, plugin_type: str, environ: Mapping[str, str], stdin: bytes,
         timeout: float = REPLY_TIMEOUT) -> tuple[bytes, int]:
    """Send one call on a connected socket and wait for the reply; AgentFailed if none comes."""
    try:
        sock.settimeout(timeout)
        sock.sendall(encode_request(plugin_type, environ, stdin))
        sock.shutdown(_socket.SHUT_WR)
        data = read_all(sock)
        if not data:
            raise AgentFailed("the agent closed the connection before replying")
        return decode_reply(data)
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
