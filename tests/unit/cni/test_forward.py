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

from tulle.cni import forward

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
        self.requests: list[dict] = []
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
            msg = forward.read_message(conn)
            self.requests.append(msg)
            if self.behaviour == "reply":
                conn.sendall(forward.encode({"stdout": '{"from": "agent"}\udcff', "code": 3}))
            elif self.behaviour == "garbage":
                conn.sendall(b"not json\n")
            # "die": close without a reply

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def conf_with(path: str) -> bytes:
    return json.dumps({**CONF, "agentSocket": path}).encode()


def test_wire_format_round_trip_keeps_any_bytes():
    stdin = b'{"name": "n\xff"}\n'
    msg = forward.request("bridge", {"CNI_COMMAND": "ADD", "PATH": "/bin", "CNI_IFNAME": "eth0"}, stdin)
    assert msg["env"] == {"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0"}  # only CNI_* travels
    line = forward.encode(msg)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    kind, env, back = forward.parse_request(json.loads(line))
    assert (kind, back) == ("bridge", stdin)
    out, code = forward.parse_reply(json.loads(forward.encode(forward.reply(b"\x00\xfe ok", 1))))
    assert (out, code) == (b"\x00\xfe ok", 1)


@pytest.mark.parametrize("message", [{"env": {}}, {"type": "x", "env": {"A": 1}}, {"type": "x", "env": {}, "stdin": 1}])
def test_bad_requests_are_value_errors(message):
    with pytest.raises(ValueError):
        forward.parse_request(message)


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
    assert agent.requests[0]["type"] == "bridge" and agent.requests[0]["env"] == {"CNI_COMMAND": "ADD"}


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
    """Run the executable's entry in a fresh interpreter; report its exit code and loaded modules."""
    script = (
        "import json, sys\n"
        "from tulle.cni import entry\n"
        "try:\n    entry.main('bridge')\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2' or m.startswith("
        "('tulle.cni.skel', 'tulle.cni.plugins', 'tulle.kernel', 'tulle.cni.types')))\n"
        "sys.stderr.write(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})
    return json.loads(proc.stderr.decode().splitlines()[-1]), proc.stdout


def test_forwarding_path_loads_only_the_standard_library(sockdir):
    path = os.path.join(sockdir, "a.sock")
    agent = FakeAgent(path)
    try:
        info, out = _run_entry(conf_with(path), {"CNI_COMMAND": "ADD"})
    finally:
        agent.close()
    assert info == {"code": 3, "heavy": []}
    assert out == b'{"from": "agent"}\xff'


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
