"""Masquerade for traffic leaving the cluster network, in the node's netns (Flannel's ip-masq).

One table, `inet tulle-agent`, chain `postrouting` (nat, srcnat priority):

  saddr in Network, daddr in Network       return       pod ↔ pod keeps its source, always
  saddr not in Network, daddr in local pods return       outside → local pods keeps its source
  saddr in Network, daddr not multicast    masquerade   pods → outside the cluster
  saddr not in Network, daddr in Network   masquerade   node/outside → remote pods (replies route back)

"Local pods" are the node's own subnet (host-gw, vxlan, udp: the lease) or, in
bgp mode, the IPAM blocks affine to the node and the addresses it borrowed
from other nodes' blocks — its lease carries no pods there. Without that rule
traffic from outside to a local pod would leave with the node's address
instead of the client's.

The rules are pure data (`rules`); `ensure` compares the live chain with them
by their comments and rewrites the chain in one atomic transaction only when it
drifted, so the reconcile tick can call it every few seconds without churning
rule handles or counters. The agent owns the whole table; `remove` drops it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Sequence

from tulle.kernel import nft

IPv4Net = ipaddress.IPv4Network

FAMILY = "inet"
TABLE = "tulle-agent"
CHAIN = "postrouting"
POSTROUTING = nft.Chain(CHAIN, type="nat", hook="postrouting", priority="srcnat", policy="accept")
MULTICAST = "224.0.0.0/4"
COMMENT_ROOM = 80   # characters of local prefixes spelled out in a comment before it becomes a digest


def _local_comment(local: Sequence[IPv4Net]) -> str:
    """The local prefixes as a rule comment (drift is found by comment; nft keeps ≤ 128 bytes)."""
    text = ",".join(str(n) for n in local)
    if len(text) > COMMENT_ROOM:
        text = f"{len(local)} prefixes sha1:{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    return f"tulle-agent outside-to-local-pods {text}"


def rules(network: IPv4Net, local: Sequence[IPv4Net]) -> list[tuple[str, list[nft.Expr]]]:
    """(comment, rule body) for each rule, in order (pure). `local`: where this node's pods
    are (see the module text); none yet (a bgp node before its first pod) drops that rule."""
    saddr, daddr = nft.payload("ip", "saddr"), nft.payload("ip", "daddr")
    net = nft.prefix(network)
    local = sorted(set(local))
    out = [(f"tulle-agent pod-to-pod {network}", [nft.match(saddr, net), nft.match(daddr, net), nft.ret()])]
    if local:
        where = nft.prefix(local[0]) if len(local) == 1 else nft.set_of([nft.prefix(n) for n in local])
        out.append((_local_comment(local), [nft.match(saddr, net, "!="), nft.match(daddr, where), nft.ret()]))
    masq = [nft.counter(), nft.masquerade(fully_random=True)]
    out += [
        (f"tulle-agent pods-to-outside {network}",
         [nft.match(saddr, net), nft.match(daddr, nft.prefix(MULTICAST), "!="), *masq]),
        (f"tulle-agent to-remote-pods {network}", [nft.match(saddr, net, "!="), nft.match(daddr, net), *masq]),
    ]
    return out


def transaction(network: IPv4Net, local: Sequence[IPv4Net]) -> nft.Transaction:
    """Table + base chain (created if absent), chain flushed and refilled: one atomic batch."""
    tx = nft.Transaction(FAMILY, TABLE).add(nft.Table(FAMILY, TABLE))
    tx.add(POSTROUTING).flush(POSTROUTING)
    for comment, body in rules(network, local):
        tx.add(nft.Rule(CHAIN, body, comment=comment))
    return tx


def in_place(network: IPv4Net, local: Sequence[IPv4Net], runner: nft.Runner = nft.KERNEL) -> bool:
    """Does the kernel hold exactly our rules (by comment, in order)?"""
    objects = runner.list_table(FAMILY, TABLE)
    if objects is None or CHAIN not in nft.chains(objects):
        return False
    have = [r.comment for r in nft.rules(objects, CHAIN)]
    return have == [c for c, _ in rules(network, local)]


def ensure(network: IPv4Net, local: Sequence[IPv4Net], runner: nft.Runner = nft.KERNEL) -> bool:
    """Create or repair the masquerade rules; True when something had to be written."""
    if in_place(network, local, runner):
        return False
    runner.run(transaction(network, local))
    return True


def remove(runner: nft.Runner = nft.KERNEL) -> bool:
    """Drop the agent's table (ip-masq turned off); False when it was not there."""
    if runner.list_table(FAMILY, TABLE) is None:
        return False
    runner.run(nft.Transaction(FAMILY, TABLE).delete(nft.Table(FAMILY, TABLE)))
    return True
