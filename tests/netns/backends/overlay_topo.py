"""Hand-built clusters for the backend tests, without the agent or the lab: a fabric
netns with one bridge per L2 segment, optionally a router netns between the
segments, and per node a netns with an underlay veth plus one pod netns behind a
bridge `cni0` in the node's subnet 10.244.<k>.0/24.

Backends are then driven through their contract from threads entered into the
node netns (kernel.netns.run_in), as the agent inside that netns would.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

from tulle.agent.backends.base import NodeInfo
from tulle.kernel import addrs, links, netns, routes, sysctl

NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
SEGMENTS = [ipaddress.IPv4Network("198.51.100.0/24"), ipaddress.IPv4Network("203.0.113.0/24")]
UNDERLAY_DEV = "eth0"
UNDERLAY_MTU = 1500


@dataclass
class Node:
    name: str
    ns: str
    segment: int
    ip: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network
    pod_ns: str
    pod_ip: ipaddress.IPv4Address

    def info(self, state_dir: str = "/nonexistent") -> NodeInfo:
        return NodeInfo(name=self.name, public_ip=self.ip, underlay_dev=UNDERLAY_DEV,
                        underlay_mtu=UNDERLAY_MTU, network=NETWORK, state_dir=state_dir)

    def run(self, fn: Callable, *args):
        """Call fn inside this node's netns (as the agent there would)."""
        return netns.run_in(self.ns, fn, *args)


def _iface(net: ipaddress.IPv4Network, host: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{net.network_address + host}/{net.prefixlen}")


def build(make_netns, segments: list[int], pod_mtu: int = 1400) -> list[Node]:
    """Nodes n1..nN, node k on segment segments[k-1] at .10+k; a router joins the
    segments when more than one is used. Every netns comes from make_netns, so the
    fixture removes all of it (veths die with their netns)."""
    fabric = make_netns("fab")
    used = sorted(set(segments))

    def fabric_setup() -> None:
        for s in used:
            links.add_bridge(f"seg{s}")
            links.set_up(f"seg{s}")
    netns.run_in(fabric, fabric_setup)

    if len(used) > 1:
        router = make_netns("rtr")

        def router_leg(s: int) -> None:
            links.add_veth(f"r{s}", f"eth{s}", peer_netns=router)
            links.set_master(f"r{s}", f"seg{s}")
            links.set_up(f"r{s}")
        for s in used:
            netns.run_in(fabric, router_leg, s)

        def router_setup() -> None:
            links.set_up("lo")
            for s in used:
                addrs.add(f"eth{s}", _iface(SEGMENTS[s], 1))
                links.set_up(f"eth{s}")
            sysctl.set("net.ipv4.ip_forward", 1)
        netns.run_in(router, router_setup)

    nodes = []
    for k, s in enumerate(segments, start=1):
        node_ns, pod_ns = make_netns(f"n{k}"), make_netns(f"p{k}")
        node = Node(name=f"n{k}", ns=node_ns, segment=s, ip=SEGMENTS[s].network_address + 10 + k,
                    subnet=ipaddress.IPv4Network(f"10.244.{k}.0/24"), pod_ns=pod_ns,
                    pod_ip=ipaddress.IPv4Address(f"10.244.{k}.2"))

        def uplink(k: int = k, s: int = s, node_ns: str = node_ns) -> None:
            links.add_veth(f"n{k}", UNDERLAY_DEV, peer_netns=node_ns)
            links.set_master(f"n{k}", f"seg{s}")
            links.set_up(f"n{k}")
        netns.run_in(fabric, uplink)

        def node_setup(node: Node = node) -> None:
            links.set_up("lo")
            addrs.add(UNDERLAY_DEV, ipaddress.IPv4Interface(f"{node.ip}/24"))
            links.set_up(UNDERLAY_DEV)
            for other in used:
                if other != node.segment:
                    routes.add(routes.Route(dst=SEGMENTS[other], gw=SEGMENTS[node.segment].network_address + 1))
            sysctl.set("net.ipv4.ip_forward", 1)
            links.add_bridge("cni0")
            addrs.add("cni0", ipaddress.IPv4Interface(f"{node.subnet.network_address + 1}/24"))
            links.add_veth("veth0", "eth0", peer_netns=node.pod_ns, mtu=pod_mtu)
            links.set_master("veth0", "cni0")
            links.set_up("veth0")
            links.set_up("cni0")
        netns.run_in(node_ns, node_setup)

        def pod_setup(node: Node = node) -> None:
            links.set_up("lo")
            addrs.add("eth0", ipaddress.IPv4Interface(f"{node.pod_ip}/24"))
            links.set_up("eth0")
            routes.add(routes.Route(dst=NETWORK, gw=node.subnet.network_address + 1))
        netns.run_in(pod_ns, pod_setup)
        nodes.append(node)
    return nodes


def ping(ns: str, ip: ipaddress.IPv4Address, deadline: float = 6.0) -> bool:
    """True as soon as one echo comes back from `ip` (retries until `deadline` s)."""
    end = time.monotonic() + deadline
    while True:
        proc = subprocess.run(["nsenter", f"--net={ns}", "ping", "-c1", "-W1", "-q", str(ip)],
                              capture_output=True, check=False, timeout=10)
        if proc.returncode == 0:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)


def ping_once(ns: str, ip: ipaddress.IPv4Address) -> bool:
    """A single echo with a short wait (for "must NOT be reachable" checks)."""
    proc = subprocess.run(["nsenter", f"--net={ns}", "ping", "-c1", "-W1", "-q", str(ip)],
                          capture_output=True, check=False, timeout=10)
    return proc.returncode == 0


def all_pairs_ping(nodes: list[Node]) -> list[str]:
    """The pod pairs that do NOT reach each other (empty list: full mesh works)."""
    return [f"{a.name}->{b.name}" for a in nodes for b in nodes
            if a is not b and not ping(a.pod_ns, b.pod_ip)]


def tcp_copy(src: Node, dst: Node, size: int, port: int = 5201, timeout: float = 20.0) -> tuple[str, str]:
    """Send `size` bytes over TCP from src's pod to dst's pod; (sent, received) sha256."""
    payload = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    payload = payload[:size]
    listening = threading.Event()
    box: dict = {}

    def server() -> None:
        with socket.socket() as srv:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((str(dst.pod_ip), port))
            srv.listen(1)
            srv.settimeout(timeout)
            listening.set()
            conn, _ = srv.accept()
            digest = hashlib.sha256()
            with conn:
                conn.settimeout(timeout)
                buf = bytearray(1 << 16)
                while True:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    digest.update(buf[:n])
            box["got"] = digest.hexdigest()

    def server_thread() -> None:
        try:
            netns.run_in(dst.pod_ns, server)
        except Exception as exc:  # reported through box
            box["error"] = exc
            listening.set()

    def client() -> None:
        with socket.create_connection((str(dst.pod_ip), port), timeout=timeout) as conn:
            conn.sendall(payload)

    t = threading.Thread(target=server_thread, daemon=True)
    t.start()
    assert listening.wait(timeout)
    netns.run_in(src.pod_ns, client)
    t.join(timeout)
    assert not t.is_alive(), "tcp receiver did not finish"
    if "error" in box:
        raise box["error"]
    return hashlib.sha256(payload).hexdigest(), box.get("got", "")
