"""The pod containers' servers on their own (no lab up): each answers TCP and UDP with who it is,
containers of one netns reach each other on localhost, a taken port is a clean error, stop
leaves nothing."""

from __future__ import annotations

import os
import socket

import pytest

from tulle import procs
from tulle.errors import ExistsError
from tulle.kernel import links, netns
from tulle.lab import containers, state
from tulle.lab.podspec import Container, Port

pytestmark = pytest.mark.netns


def tcp(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")        # a client that talks first still gets the answer
        return s.makefile().read().strip()


def udp(address: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((address, port))       # connected: an answer from another source address is dropped
        s.send(b"?")
        return s.recv(512).decode().strip()


@pytest.fixture
def sandbox(make_netns, lab_name):
    path = make_netns("pod")
    netns.run_in(path, links.set_up, "lo")
    os.makedirs(state.path(lab_name), exist_ok=True)      # lab_name's teardown (lab down) removes it
    return lab_name, path


def test_servers_answer_with_pod_and_container_over_tcp_and_udp(sandbox):
    lab, path = sandbox
    pod = (Container("web", (Port(8080, "TCP", "http"), Port(5353, "UDP", "dns"))),
           Container("side", (Port(9090, "TCP"),)), Container("idle", ()))
    servers = containers.start(lab, "demo", "web-1", path, pod, "pod demo/web-1")
    assert sorted(servers) == ["side", "web"]                    # no ports, no process
    assert all(procs.carries(pid, containers.log_path(lab, "demo", "web-1", c)) for c, pid in servers.items())
    # the containers share the netns: each reaches the other on localhost
    assert netns.run_in(path, tcp, "127.0.0.1", 8080) == "demo/web-1 (container web)"
    assert netns.run_in(path, tcp, "127.0.0.1", 9090) == "demo/web-1 (container side)"
    for _ in range(3):                                           # every datagram is answered
        assert netns.run_in(path, udp, "127.0.0.1", 5353) == "demo/web-1 (container web)"
    # answered from the address it was sent to (lo holds all of 127/8; its route's source is .1)
    assert netns.run_in(path, udp, "127.0.0.2", 5353) == "demo/web-1 (container web)"

    with pytest.raises(ExistsError, match=r"port 9090/TCP is already in use in pod demo/web-2"):
        containers.start(lab, "demo", "web-2", path, (Container("a", (Port(7000, "TCP"),)),
                                                     Container("b", (Port(9090, "TCP"),))), "pod demo/web-2")
    assert not os.path.exists(containers.pod_dir(lab, "demo", "web-2"))
    with pytest.raises(ConnectionRefusedError):                 # the first container of the failed start is gone
        netns.run_in(path, tcp, "127.0.0.1", 7000)

    containers.stop(lab, "demo", "web-1", servers)
    assert not any(procs.alive(pid) for pid in servers.values())
    assert not os.path.exists(containers.pod_dir(lab, "demo", "web-1"))
    with pytest.raises(ConnectionRefusedError):
        netns.run_in(path, tcp, "127.0.0.1", 8080)
