"""A hand-made pod for the chained plugins' tests: a veth between a sandbox
"host" netns and a pod netns, addressed like a bridge/ptp plugin would, plus
the prevResult such a main plugin would have printed.

Also small traffic helpers (a TCP/UDP echo-once server inside a netns, a client)
with bounded timeouts; servers are ended by pid.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from tulle.kernel import addrs, links, netns, routes

HOST_VETH = "veth77a"


def host_addr(net: int = 0) -> ipaddress.IPv4Interface:
    return ipaddress.ip_interface(f"10.77.{net}.1/24")


def pod_addr(net: int = 0) -> ipaddress.IPv4Interface:
    return ipaddress.ip_interface(f"10.77.{net}.2/24")


@dataclass
class Pod:
    host_ns: str
    pod_ns: str
    host_veth: str
    ifname: str
    prev_result: dict
    net: int = 0

    @property
    def ip(self) -> str:
        return str(pod_addr(self.net).ip)

    @property
    def host_ip(self) -> str:
        return str(host_addr(self.net).ip)


def _host_side(veth: str, ifname: str, pod_ns: str, net: int) -> None:
    links.set_up("lo")
    links.add_veth(veth, ifname, peer_netns=pod_ns)
    addrs.add(veth, host_addr(net))
    links.set_up(veth)


def _pod_side(ifname: str, net: int) -> str:
    links.set_up("lo")
    addrs.add(ifname, pod_addr(net))
    links.set_up(ifname)
    routes.add(routes.Route(dst=ipaddress.ip_network("0.0.0.0/0"), gw=host_addr(net).ip, dev=ifname))
    return links.require(ifname).mac


def make_pod(host_ns: str, pod_ns: str, ifname: str = "eth0", veth: str = HOST_VETH,
             version: str = "1.0.0", net: int = 0) -> Pod:
    """Wire pod_ns to host_ns (10.77.<net>.1 host side, .2 in the pod)."""
    netns.run_in(host_ns, _host_side, veth, ifname, pod_ns, net)
    pod_mac = netns.run_in(pod_ns, _pod_side, ifname, net)
    host_mac = netns.run_in(host_ns, lambda: links.require(veth).mac)
    prev = {
        "cniVersion": version,
        "interfaces": [
            {"name": veth, "mac": host_mac},
            {"name": ifname, "mac": pod_mac, "sandbox": pod_ns},
        ],
        "ips": [{"address": str(pod_addr(net)), "gateway": str(host_addr(net).ip), "interface": 1}],
        "dns": {},
    }
    return Pod(host_ns, pod_ns, veth, ifname, prev, net)


# --- traffic ------------------------------------------------------------------

_SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(8)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, peer = s.accept()
        c.settimeout(5)
        data = c.recv(100)
        c.sendall(b"pong:" + data + b":" + peer[0].encode())
        c.close()
    else:
        data, peer = s.recvfrom(100)
        s.sendto(b"pong:" + data + b":" + peer[0].encode(), peer)
"""

_CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(3)
try:
    if proto == "tcp":
        s.connect((host, port)); s.sendall(b"ping"); print(s.recv(200).decode())
    else:
        s.sendto(b"ping", (host, port)); print(s.recvfrom(200)[0].decode())
except OSError as e:
    print("ERR", e)
"""


class Server:
    """An echo server inside a netns; `stop()` ends it by pid."""

    def __init__(self, ns: str, port: int, proto: str = "tcp") -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={ns}", sys.executable, "-c", _SERVER, proto, str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"server did not start: {self.proc.stderr.read()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def talk(ns: str, host: str, port: int, proto: str = "tcp") -> str:
    """Send "ping" from inside `ns`; returns the reply ("pong:ping:<peer seen>") or "ERR ..."."""
    proc = subprocess.run(["nsenter", f"--net={ns}", sys.executable, "-c", _CLIENT, proto, host, str(port)],
                          capture_output=True, text=True, timeout=15, check=False)
    return proc.stdout.strip() or f"ERR {proc.stderr.strip()}"


def wait_for(fn, timeout: float = 3.0):
    """Poll fn until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# --- an outside client behind the "host" ----------------------------------------

EXT_HOST = ipaddress.ip_interface("203.0.113.1/24")
EXT_CLIENT = ipaddress.ip_interface("203.0.113.2/24")


def _host_uplink(name: str, client_ns: str) -> None:
    from tulle.kernel import sysctl

    sysctl.set("net/ipv4/ip_forward", 1)
    links.add_veth(name, "up0", peer_netns=client_ns)
    addrs.add(name, EXT_HOST)
    links.set_up(name)


def _client_side(name: str) -> None:
    links.set_up("lo")
    addrs.add(name, EXT_CLIENT)
    links.set_up(name)
    routes.add(routes.Route(dst=ipaddress.ip_network("0.0.0.0/0"), gw=EXT_HOST.ip, dev=name))


def add_client(host_ns: str, client_ns: str) -> None:
    """Forwarding on in host_ns, and client_ns (203.0.113.2) wired to it (203.0.113.1)."""
    netns.run_in(host_ns, _host_uplink, "uplink0", client_ns)
    netns.run_in(client_ns, _client_side, "up0")
