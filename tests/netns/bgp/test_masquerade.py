"""bgp mode masquerade: a node's pods live in its IPAM blocks, not in its lease, and
traffic from outside the cluster to them keeps its source (Flannel's ip-masq rule
"outside → local pods: return", with the blocks as the local prefixes)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

import pytest

from tests.cnirun import wait_for
from tests.netns.topo import in_ns, kernel_routes

pytestmark = pytest.mark.netns

# Accepts one TCP connection and prints the peer's address: what the pod sees as the source.
SERVER = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); "
          "s.bind(('0.0.0.0',8080)); s.listen(); s.settimeout(10); print('ready',flush=True); "
          "c,a=s.accept(); print(a[0],flush=True)")
CLIENT = "import socket,sys; socket.create_connection((sys.argv[1],8080),timeout=5).close()"


def local_rule(ns: str) -> str:
    out = in_ns(ns, "nft", "-j", "list", "chain", "inet", "tulle-agent", "postrouting").stdout
    comments = [o["rule"].get("comment", "") for o in json.loads(out or '{"nftables": []}')["nftables"]
                if "rule" in o]
    return next((c for c in comments if "outside-to-local-pods" in c), "")


def source_seen_by(pod_ns: str, pod_ip: str, client_ns: str) -> str:
    server = subprocess.Popen(["nsenter", f"--net={pod_ns}", sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        client = in_ns(client_ns, sys.executable, "-c", CLIENT, pod_ip)
        assert client.returncode == 0, client.stderr
        return server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait(5)


def test_outside_traffic_to_local_pods_keeps_its_source(bgplab):
    lab = bgplab()
    lab.configure()
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for n in (n1, n2):
        wait_for(f"{n.name}: 1 session", lambda n=n: lab.established(n, 1), logs=lab.logs)
    pod = lab.add_pod(n1, "pa")
    block = str(ipaddress.IPv4Network(f"{pod.ip}/26", strict=False))
    wait_for("n1: masquerade keeps outside sources to its block",
             lambda: local_rule(n1.ns) == f"tulle-agent outside-to-local-pods {block}", logs=lab.logs)
    wait_for("n2: n1's block via n1", lambda: kernel_routes(n2.ns, "bird").get(block) == n1.ip, logs=lab.logs)
    # n2's node address is outside the pod network: n2 masquerades it to itself (to remote pods),
    # and n1 must forward it unchanged — without the block in the rule n1 rewrote it to its own.
    assert source_seen_by(pod.ns, pod.ip, n2.ns) == n2.ip
    # the last pod gone, its block is released: no local prefixes, no rule
    res = lab.cni("tulle-routed", "DEL", lab.conf(n1), netns=pod.ns, container_id="pa", host_ns=n1.ns)
    assert res.ok, (res.out, res.stderr)
    wait_for("n1: no local-pods rule without blocks", lambda: local_rule(n1.ns) == "", logs=lab.logs)
