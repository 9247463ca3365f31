"""Three nodes in a node-to-node mesh on one segment, real agents and BIRD."""

from __future__ import annotations

import ipaddress
import signal
import time

import pytest

from tests.cnirun import wait_for
from tests.netns.topo import kernel_routes, ping_once

pytestmark = pytest.mark.netns


def block_of(ip: str, size: int = 26) -> str:
    return str(ipaddress.IPv4Network(f"{ip}/{size}", strict=False))


def test_mesh_routes_pods_join_leave(bgplab):
    lab = bgplab()
    lab.configure()
    nodes = [lab.add_node(k) for k in (1, 2, 3)]
    for n in nodes:
        wait_for(f"{n.name}: 2 sessions Established", lambda n=n: lab.established(n, 2), logs=lab.logs)
    pods = [lab.add_pod(n, f"p{n.name}") for n in nodes]
    blocks = {n.name: block_of(p.ip) for n, p in zip(nodes, pods)}
    assert len(set(blocks.values())) == 3
    for n in nodes:
        want = {blocks[o.name]: o.ip for o in nodes if o is not n}
        wait_for(f"{n.name}: peers' blocks via the peers (proto bird)",
                 lambda n=n, want=want: all(kernel_routes(n.ns, "bird").get(b) == gw for b, gw in want.items()),
                 logs=lab.logs)
        assert kernel_routes(n.ns, "bird").get(blocks[n.name]) == "blackhole"
        via_bird = {r.prefix: r for r in lab.bird_routes(n) if r.primary}
        assert via_bird[blocks[n.name]].kind == "blackhole"
    assert lab.unreachable() == []

    # a new pod on n1 is reachable from n3's pod within 3 s
    pids = {n.name: lab.bird_pid(n) for n in nodes}
    late = lab.add_pod(nodes[0], "late")
    t0 = time.monotonic()
    wait_for("the new pod from another node", lambda: ping_once(pods[2].ns, late.ip), timeout=3.0, logs=lab.logs)
    assert time.monotonic() - t0 <= 3.5

    # a node joins: the others reconfigure BIRD, they do not restart it
    n4 = lab.add_node(4)
    for n in nodes + [n4]:
        wait_for(f"{n.name}: 3 sessions Established", lambda n=n: lab.established(n, 3), logs=lab.logs)
    p4 = lab.add_pod(n4, "pn4")
    # n4's new block reaches the peers over BGP a few tens of ms after its claim (as the late pod above)
    wait_for("n4's pod and n1's pod reach each other", lambda: lab.unreachable([pods[0], p4]) == [],
             timeout=3.0, logs=lab.logs)
    assert {n.name: lab.bird_pid(n) for n in nodes} == pids

    # BIRD on n4 stops (crash-like: the agent is killed first): the others withdraw its block
    lab.stop(n4, signal.SIGKILL)
    n4.bird.stop()
    b4 = block_of(p4.ip)
    for n in nodes:
        wait_for(f"{n.name}: n4's block withdrawn", lambda n=n: b4 not in kernel_routes(n.ns, "bird"),
                 timeout=12.0, logs=lab.logs)

    # n4 leaves for good (its lease goes): the peers drop the session by reconfiguring
    from tulle.cluster.lease import DEFAULT_PREFIX, subnets_prefix
    kvs, _ = lab.store.list(subnets_prefix(DEFAULT_PREFIX))
    for kv in kvs:
        if b'"Node": "n4"' in kv.value:
            lab.store.delete(kv.key)
    for n in nodes:
        wait_for(f"{n.name}: back to 2 sessions", lambda n=n: len(lab.sessions(n)) == 2, logs=lab.logs)
    assert {n.name: lab.bird_pid(n) for n in nodes} == pids


def test_full_block_borrows_and_the_borrowed_address_is_announced(bgplab):
    lab = bgplab()
    lab.configure(Pools=["10.244.0.0/29"], BlockSize=30)   # two blocks of three usable addresses
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for n in (n1, n2):
        wait_for(f"{n.name}: session Established", lambda n=n: lab.established(n, 1), logs=lab.logs)
    theirs = lab.add_pod(n2, "b0")
    mine = [lab.add_pod(n1, f"a{i}") for i in range(4)]      # the fourth one must borrow
    own_block = block_of(mine[0].ip, 30)
    assert all(block_of(p.ip, 30) == own_block for p in mine[:3])
    borrowed = mine[3]
    assert block_of(borrowed.ip, 30) == block_of(theirs.ip, 30) != own_block
    wait_for("n2 routes the borrowed /32 to n1", lambda: kernel_routes(n2.ns, "bird").get(borrowed.ip) == n1.ip,
             logs=lab.logs)
    assert kernel_routes(n2.ns, "bird").get(own_block) == n1.ip
    assert ping_once(theirs.ns, borrowed.ip) and ping_once(borrowed.ns, theirs.ip)
    assert ping_once(theirs.ns, mine[0].ip)


def test_killed_agent_comes_back_without_touching_bird(bgplab):
    """The BIRD a killed agent leaves running is adopted: the new agent knows the peers before
    it configures BIRD, so its config is the same and no session is restarted."""
    lab = bgplab()
    lab.configure()
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for n in (n1, n2):
        wait_for(f"{n.name}: session Established", lambda n=n: lab.established(n, 1), logs=lab.logs)

    def bgp_since() -> dict[str, str]:
        return {p.name: p.since for p in n1.bird.protocols() if p.proto == "BGP"}

    pid, since, conf = lab.bird_pid(n1), bgp_since(), n1.bird.current_config()
    lab.stop(n1, signal.SIGKILL)
    lab.start(n1)
    wait_for("the new agent has listed the store", lambda: '"lease added"' in n1.logs(), logs=lab.logs)
    time.sleep(2.5)                        # --reconcile-interval 1: a start pass and full ticks ran
    assert n1.proc is not None and n1.proc.poll() is None, n1.logs()
    assert lab.bird_pid(n1) == pid and n1.bird.current_config() == conf
    assert bgp_since() == since and lab.established(n1, 1), n1.bird.birdc("show", "protocols")
