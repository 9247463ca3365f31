"""A hand-wired cluster for agent tests: a "fabric" netns with one bridge on
198.51.100.0/24 and node netns attached to it by veth (eth0 = 198.51.100.1k),
each node running the real agent as a subprocess entered with nsenter."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest

from tulle.kernel import addrs, links, netns

UNDERLAY = ipaddress.IPv4Network("198.51.100.0/24")


@dataclass
class Node:
    name: str
    ns: str
    ip: str
    dir: str
    proc: subprocess.Popen | None = None
    log_path: str = ""
    extra: list[str] = field(default_factory=list)

    @property
    def subnet_file(self) -> str:
        return os.path.join(self.dir, "subnet.env")

    def logs(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""


class Cluster:
    def __init__(self, make_netns, tmp_path) -> None:
        self.make_netns = make_netns
        self.tmp = tmp_path
        self.store_url = f"sqlite://{tmp_path}/store.db"
        self.fabric = make_netns("fab")
        netns.run_in(self.fabric, self._fabric_setup)
        self.nodes: dict[str, Node] = {}

    @staticmethod
    def _fabric_setup() -> None:
        links.set_up("lo")
        links.add_bridge("br0")
        links.set_up("br0")

    def add_node(self, k: int) -> Node:
        name = f"n{k}"
        ns = self.make_netns(name)
        ip = str(UNDERLAY.network_address + 10 + k)

        def fabric_side() -> None:
            links.add_veth(f"vf-{name}", "eth0", peer_netns=ns)
            links.set_master(f"vf-{name}", "br0")
            links.set_up(f"vf-{name}")

        def node_side() -> None:
            links.set_up("lo")
            addrs.add("eth0", ipaddress.IPv4Interface(f"{ip}/24"))
            links.set_up("eth0")

        netns.run_in(self.fabric, fabric_side)
        netns.run_in(ns, node_side)
        d = self.tmp / name
        d.mkdir()
        node = Node(name, ns, ip, str(d))
        self.nodes[name] = node
        return node

    def command(self, node: Node, *extra: str, store: str | None = None) -> list[str]:
        return ["nsenter", f"--net={node.ns}", sys.executable, "-m", "tulle.cli.main", "agent", "run",
                "--node", node.name, "--store", store or self.store_url, "--public-ip", node.ip,
                "--socket", os.path.join(node.dir, "agent.sock"), "--subnet-file", node.subnet_file,
                "--state-dir", os.path.join(node.dir, "state"), "--metrics-addr", f"{node.ip}:9109",
                "--reconcile-interval", "1", *extra]

    def start(self, node: Node, *extra: str) -> None:
        node.log_path = os.path.join(node.dir, f"agent-{time.monotonic_ns()}.log")
        with open(node.log_path, "w") as log:
            node.proc = subprocess.Popen(self.command(node, *extra), stdout=log, stderr=log)

    def stop(self, node: Node, timeout: float = 10) -> int | None:
        """SIGTERM by pid, then SIGKILL if it does not go; returns the exit code."""
        proc, node.proc = node.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise AssertionError(f"agent {node.name} ignored SIGTERM:\n{node.logs()}")
        return proc.returncode

    def close(self) -> None:
        for node in self.nodes.values():
            proc, node.proc = node.proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def cluster(make_netns, tmp_path):
    c = Cluster(make_netns, tmp_path)
    try:
        yield c
    finally:
        c.close()


def http_get(ns: str, url: str) -> tuple[int, str]:
    """GET from inside a netns (the socket is made by a thread entered into it)."""
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:  # not listening (yet)
            return 0, str(exc)

    return netns.run_in(ns, get)


def agent_routes(ns: str) -> dict[str, str]:
    """dst → gateway of the routes the agent owns (proto 250) in a node netns."""
    out = subprocess.run(["nsenter", f"--net={ns}", "ip", "-j", "route", "show", "proto", "250"],
                         capture_output=True, text=True, check=True).stdout
    return {r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]")}
