"""Forwarding from the executable to the agent: wire format, the client's
decisions (agent / standalone / "try again"), and that the forwarding path of
an executable loads nothing but the standard library. A fake agent stands in
for the real one here; tests/netns/agent/test_cni_socket.py uses the real one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from tulle.cni import forward, install

CONF = {"cniVersion": "0.4.0", "name": "n", "type": "bridge"}


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="tcf", dir="/tmp")  # short: unix socket paths max out at 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


class FakeAgent:
    """Accepts connections on a thread; `behaviour` decides what each one gets."""

    def __init__(self, path: str, behaviour: str = "reply") -> None:
        self.path = path
        self.behaviour = behaviour
        self.requests: list[tuple[str, dict, bytes]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                break
            except OSError:  # timeout: look at the stop flag again
                continue
        else:
            return
        with conn:
            conn.settimeout(10)
            self.requests.append(forward.decode_request(forward.read_all(conn)))
            if self.behaviour == "reply":
                conn.sendall(forward.encode_reply(b'{"from": "agent"}\xff', 3))
            elif self.behaviour == "garbage":
                conn.sendall(b"not a netstring\n")
            # "die": close without a reply

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def conf_with(path: str) -> bytes:
    return json.dumps({**CONF, "agentSocket": path}).encode()


def test_wire_format_round_trip_keeps_any_bytes():
    stdin = b'{"name": "n\xff"}\n,3:x,'
    data = forward.encode_request("bridge", {"CNI_COMMAND": "ADD", "PATH": "/bin", "CNI_IFNAME": "eth0",
                                             "CNI_ARGS": "A=b=c;\udcff"}, stdin)
    kind, env, back = forward.decode_request(data)
    assert (kind, back) == ("bridge", stdin)
    assert env == {"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_ARGS": "A=b=c;\udcff"}  # only CNI_* travels
    assert forward.decode_reply(forward.encode_reply(b"\x00\xfe ok", 1)) == (b"\x00\xfe ok", 1)
    assert forward.decode_reply(forward.encode_reply(b"", 0)) == (b"", 0)


@pytest.mark.parametrize("data", [b"", b"6:bridge,0:,", b"0:,0:,0:,", b"6:bridge,3:A=b,0:,x", b"6:bridge,5:A=b,0:,",
                                  b"6:bridge,1:A,0:,", b"x:bridge,0:,0:,", b"99999999999999:", b"6:bridge;0:,0:,"])
def test_bad_requests_are_value_errors(data):
    with pytest.raises(ValueError):
        forward.decode_request(data)


@pytest.mark.parametrize("data", [b"", b"1:x,0:,", b"1:0,", b"1:0,3:abc"])
def test_bad_replies_are_value_errors(data):
    with pytest.raises(ValueError):
        forward.decode_reply(data)


def test_socket_path_from_config():
    assert forward.socket_path(conf_with("/x/a.sock")) == "/x/a.sock"
    assert forward.socket_path(json.dumps(CONF).encode()) == forward.DEFAULT_SOCKET
    assert forward.socket_path(b"not json") == forward.DEFAULT_SOCKET
    assert forward.socket_path(b'{"agentSocket": 5}') == forward.DEFAULT_SOCKET


def test_no_agent_means_standalone(sockdir):
    env = {"CNI_COMMAND": "ADD"}
    assert forward.try_forward("bridge", env, conf_with(os.path.join(sockdir, "absent.sock"))) is None
    regular = os.path.join(sockdir, "file")
    open(regular, "w").close()
    assert forward.try_forward("bridge", env, conf_with(regular)) is None
    stale = os.path.join(sockdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    assert forward.try_forward("bridge", env, conf_with(stale)) is None


def test_agent_reply_is_printed_exactly(sockdir):
    path = os.path.join(sockdir, "a.sock")
    agent = FakeAgent(path)
    try:
        out, code = forward.try_forward("bridge", {"CNI_COMMAND": "ADD", "HOME": "/root"}, conf_with(path))
    finally:
        agent.close()
    assert (out, code) == (b'{"from": "agent"}\xff', 3)
    assert agent.requests[0][:2] == ("bridge", {"CNI_COMMAND": "ADD"})


@pytest.mark.parametrize("behaviour", ["die", "garbage"])
def test_agent_failing_mid_request_is_try_again(sockdir, behaviour):
    path = os.path.join(sockdir, "a.sock")
    agent = FakeAgent(path, behaviour)
    try:
        out, code = forward.try_forward("bridge", {"CNI_COMMAND": "ADD"}, conf_with(path))
    finally:
        agent.close()
    err = json.loads(out)
    assert code == 1 and err["code"] == 11 and err["cniVersion"] == "0.4.0"
    assert path in err["msg"] and len(agent.requests) == 1


def _run_entry(stdin: bytes, env: dict) -> tuple[dict, bytes]:
    """Run the executable's entry as the installed executable does (`-IS`, explicit sys.path) and
    report its exit code, the heavy modules it loaded, and which costly standard modules."""
    script = (
        f"import os, sys\nsys.path[:0] = {install.import_paths()!r}\nbefore = set(sys.modules)\n"
        "def exit_(code):\n    raise SystemExit(code)\n"
        "os._exit = exit_  # entry.main ends with os._exit: turn it into something we can catch\n"
        "from tulle.cni import entry\n"
        "try:\n    entry.main('bridge')\nexcept SystemExit as e:\n    code = e.code\n"
        "new = set(sys.modules) - before\n"
        "heavy = sorted(m for m in new if m.split('.')[0] == 'pyroute2' or m.startswith("
        "('tulle.cni.skel', 'tulle.cni.plugins', 'tulle.kernel', 'tulle.cni.types')))\n"
        "costly = sorted(m for m in ('json', 're', 'socket', 'typing', 'enum') if m in new)\n"
        "import json\n"
        "sys.stderr.write(json.dumps({'code': code, 'heavy': heavy, 'costly': costly}))\n"
    )
    proc = subprocess.run([sys.executable, "-IS", "-c", script], input=stdin, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})
    return json.loads(proc.stderr.decode().splitlines()[-1]), proc.stdout


def test_forwarding_path_loads_only_the_standard_library(sockdir):
    """Nothing of the plugin, and not even json/socket/typing: each would add milliseconds to every call."""
    path = os.path.join(sockdir, "a.sock")
    agent = FakeAgent(path)
    try:
        info, out = _run_entry(conf_with(path), {"CNI_COMMAND": "ADD"})
    finally:
        agent.close()
    assert info == {"code": 3, "heavy": [], "costly": []}
    assert out == b'{"from": "agent"}\xff'


def test_socket_path_reads_json_like_json_does():
    for doc in (b' {"agentSocket": "/a\\u00e9/b"}\n', b'{"x": [1, 2.5e3, null, true, {"y": NaN}], "agentSocket": "/s"}'):
        assert forward.socket_path(doc) == json.loads(doc)["agentSocket"]
    for bad in (b'{"agentSocket": "/s"', b'{"agentSocket": "/s"} trailing', b'\xff"agentSocket"', b'"agentSocket"'):
        assert forward.socket_path(bad) == forward.DEFAULT_SOCKET


def test_standalone_env_and_version_stay_local(sockdir):
    path = os.path.join(sockdir, "a.sock")
    agent = FakeAgent(path)
    try:
        info, out = _run_entry(conf_with(path), {"CNI_COMMAND": "VERSION"})
        assert info["code"] == 0 and "supportedVersions" in json.loads(out)
        info, out = _run_entry(conf_with(path), {"CNI_COMMAND": "ADD", "TULLE_STANDALONE": "1"})
        assert info["code"] == 1 and json.loads(out)["code"] == 4  # ran here: CNI_CONTAINERID etc. missing
        assert "tulle.cni.skel" in info["heavy"]
    finally:
        agent.close()
    assert agent.requests == []
