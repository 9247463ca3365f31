"""What the demo (and the podman tests) look at inside the sandbox: an HTTP
answer through a published port, and what is left after `podman rm -f`.

Everything is read through `tulle.kernel`, inside the sandbox netns.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from dataclasses import dataclass

from tulle.cni import attachment
from tulle.kernel import addrs, links, netns, nft, tc

CLIENT_ADDR = "198.51.100.2/24"    # the outside client, in its own netns
SANDBOX_ADDR = "198.51.100.1/24"   # the sandbox "host" side of the client's link
POD_IFNAME = "eth0"                # podman's interface name in the containers
CLIENT_LINK = "tclient"            # the sandbox end of the client's veth


def http_get(ns_path: str, host: str, port: int, timeout: float = 5.0) -> bytes:
    """GET / from inside netns `ns_path`, retried until `timeout`; returns the body.

    Only a full HTTP answer counts: the runtime holds the published port open on
    the host, so a bare TCP connect would succeed even without any DNAT.
    """
    def once() -> bytes:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: tulle\r\n\r\n")
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
        data = b"".join(chunks)
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
            raise OSError(f"no HTTP 200 from {host}:{port}: {head[:80]!r}")
        return body

    deadline = time.monotonic() + timeout
    while True:
        try:
            return netns.run_in(ns_path, once)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def wire_client(sandbox: str, client: str, name: str = CLIENT_LINK) -> None:
    """Link a client netns to the sandbox with a veth (198.51.100.0/24 on both ends)."""
    def host_side() -> None:
        links.add_veth(name, "eth0", peer_netns=client)
        addrs.add(name, ipaddress.ip_interface(SANDBOX_ADDR))
        links.set_up(name)

    def client_side() -> None:
        addrs.add("eth0", ipaddress.ip_interface(CLIENT_ADDR))
        links.set_up("eth0")
        links.set_up("lo")

    netns.run_in(sandbox, host_side)
    netns.run_in(client, client_side)


@dataclass(frozen=True)
class Attached:
    """What identifies one container's attachment on the host side."""
    container_id: str
    ip: str


def _host_leftovers(network: str, pods: list[Attached]) -> list[str]:
    left = []
    for link in links.all_links():
        if link.kind in ("veth", "ifb") and link.name != CLIENT_LINK:
            left.append(f"{link.kind} {link.name}")
        if link.kind not in ("veth", "ifb"):
            kinds = {q.kind for q in tc.qdiscs(link.name)}
            left += [f"qdisc {k} on {link.name}" for k in sorted(kinds & {"tbf", "ingress", "clsact"})]
    digests = {attachment.digest(network, p.container_id, POD_IFNAME) for p in pods}
    needles = [p.container_id for p in pods] + [p.ip for p in pods]
    for family, table in nft.list_tables():
        objects = nft.list_table(family, table)
        for chain in nft.chains(objects):
            if any(chain.endswith(d) for d in digests):
                left.append(f"nft chain {family} {table} {chain}")
        for rule in nft.rules(objects):
            text = (rule.comment or "") + json.dumps(rule.expr)
            if any(n in text for n in needles):
                left.append(f"nft rule {family} {table} {rule.chain}: {rule.comment or rule.expr}")
    return left


def leftovers(sandbox: str, network: str, lease_dir: str, pods: list[Attached]) -> list[str]:
    """Everything of these pods still present after their removal (empty: clean)."""
    left = [f"lease {lease_dir}/{n}" for n in _listdir(lease_dir)
            if n not in ("lock",) and not n.startswith("last_reserved_ip")]
    return left + netns.run_in(sandbox, _host_leftovers, network, pods)


def nft_summary(sandbox: str) -> list[str]:
    """"family table: N chains, M rules" for each table in the sandbox (for the report)."""
    def summary() -> list[str]:
        out = []
        for family, table in nft.list_tables():
            objects = nft.list_table(family, table)
            out.append(f"{family} {table}: {len(nft.chains(objects))} chains, {len(nft.rules(objects))} rules")
        return out
    return netns.run_in(sandbox, summary)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
