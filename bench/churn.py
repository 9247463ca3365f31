"""Pod churn: N pods added then deleted, one at a time and 8 at a time, tulle (through
the agent socket) against the reference plugins, alternated in rounds; pods/s; and a
leak check after every round (no veth, no host-local lease, no nft rule left).

Pod netns are made before a round and removed after it (outside the timing): the
figure is the network plugin's share of a pod's life, which is what differs.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from bench import core
from bench.cni_latency import Peer, Peers, cycle, netconf
from tulle.kernel import netns

PEERS = ("agent", "reference")


def _host_state(peer: Peer) -> dict:
    """What an attachment leaves on the host: veths, lease files, nft rules."""
    links = json.loads(core.in_ns(peer.host, "ip", "-j", "link", "show").stdout or "[]")
    veths = [l["ifname"] for l in links if l.get("ifname", "").startswith("veth")]
    leases = []
    net_dir = os.path.join(peer.data_dir, "benchnet")
    if os.path.isdir(net_dir):
        leases = [f for f in os.listdir(net_dir) if f[:1].isdigit()]
    ruleset = json.loads(core.in_ns(peer.host, "nft", "-j", "list", "ruleset").stdout or '{"nftables": []}')
    rules = sum(1 for obj in ruleset.get("nftables", []) if "rule" in obj)
    return {"veths": veths, "leases": leases, "rules": rules}


def _round(peer: Peer, sandbox: core.Sandbox, n: int, parallel: int, tag: str) -> dict:
    pods = [sandbox.make(f"{tag}{i}") for i in range(n)]
    conf = netconf(peer.data_dir, peer.sock)
    results: dict[int, dict | None] = {}

    def add(i: int) -> None:
        _, results[i] = peer.run("ADD", conf, f"churn{i}", pods[i])

    def delete(i: int) -> None:
        peer.run("DEL", dict(conf, prevResult=results[i]), f"churn{i}", pods[i])

    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            with core.Timer() as t_add:
                list(pool.map(add, range(n)))
            with core.Timer() as t_del:
                list(pool.map(delete, range(n)))
    finally:
        for p in reversed(pods):
            sandbox.names.remove(core.name_of(p))
            netns.remove(core.name_of(p))
    return {"add_pods_per_s": n / t_add.seconds, "del_pods_per_s": n / t_del.seconds,
            "cycle_pods_per_s": n / (t_add.seconds + t_del.seconds)}


def run(sandbox: core.Sandbox, pods: int = 200, rounds: int = 4, parallel: tuple[int, ...] = (1, 8)) -> dict:
    """For each concurrency: `rounds` alternated rounds of pods/rounds pods per peer."""
    peers = Peers(sandbox, PEERS)
    out: dict = {"pods": pods, "rounds": rounds, "by_parallel": {}}
    try:
        for peer in peers.peers.values():   # warm up (tables, chains, bridge exist from here on)
            cycle(peer)
        baseline = {name: _host_state(peer) for name, peer in peers.peers.items()}
        per_round = max(1, pods // rounds)
        for par in parallel:
            samples: dict[str, list[dict]] = {name: [] for name in peers.peers}
            leaks: dict[str, list[str]] = {name: [] for name in peers.peers}

            def measure(name: str, par: int = par, samples=samples, leaks=leaks):
                def go(r: int) -> None:
                    peer = peers.peers[name]
                    samples[name].append(_round(peer, sandbox, per_round, par, f"c{name[:1]}{r}-"))
                    after = _host_state(peer)
                    if after != baseline[name]:
                        leaks[name].append(f"round {r}: {after} (baseline {baseline[name]})")
                return go

            core.alternate(rounds, {name: measure(name) for name in peers.peers})
            stats = {name: {k: core.summary([s[k] for s in xs]) for k in xs[0]} for name, xs in samples.items()}
            out["by_parallel"][str(par)] = {
                "stats": stats, "leaks": leaks,
                "ratio": {k: core.ratio(stats["agent"][k]["median"], stats["reference"][k]["median"])
                          for k in stats["agent"]},
            }
    finally:
        peers.close()
    return out
