"""Masquerade for traffic leaving the cluster network, in the node's netns (Flannel's ip-masq).

One table, `inet tulle-agent`, chain `postrouting` (nat, srcnat priority):

  saddr in Network, daddr in Network       return       pod ↔ pod keeps its source, always
  saddr not in Network, daddr in own subnet return       outside → local pods keeps its source
  saddr in Network, daddr not multicast    masquerade   pods → outside the cluster
  saddr not in Network, daddr in Network   masquerade   node/outside → remote pods (replies route back)

The rules are pure data (`rules`); `ensure` compares the live chain with them
by their comments and rewrites the chain in one atomic transaction only when it
drifted, so the reconcile tick can call it every few seconds without churning
rule handles or counters. The agent owns the whole table; `remove` drops it.
"""

from __future__ import annotations

import ipaddress

from tulle.kernel import nft

FAMILY = "inet"
TABLE = "tulle-agent"
CHAIN = "postrouting"
MULTICAST = "224.0.0.0/4"


def _masq() -> nft.Expr:
    return {"masquerade": {"flags": ["fully-random"]}}


def rules(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> list[tuple[str, list[nft.Expr]]]:
    """(comment, rule body) for each rule, in order (pure)."""
    saddr, daddr = nft.payload("ip", "saddr"), nft.payload("ip", "daddr")
    net, sn = nft.prefix(network), nft.prefix(subnet)
    return [
        (f"tulle-agent pod-to-pod {network}",
         [nft.match(saddr, net), nft.match(daddr, net), nft.ret()]),
        (f"tulle-agent outside-to-local-pods {subnet}",
         [nft.match(saddr, net, "!="), nft.match(daddr, sn), nft.ret()]),
        (f"tulle-agent pods-to-outside {network}",
         [nft.match(saddr, net), nft.match(daddr, nft.prefix(MULTICAST), "!="), nft.counter(), _masq()]),
        (f"tulle-agent to-remote-pods {network}",
         [nft.match(saddr, net, "!="), nft.match(daddr, net), nft.counter(), _masq()]),
    ]


def transaction(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> nft.Transaction:
    """Table + base chain (created if absent), chain flushed and refilled: one atomic batch."""
    tx = nft.Transaction(FAMILY, TABLE).add_table()
    tx.add_chain(CHAIN, type="nat", hook="postrouting", priority=100)
    tx.flush_chain(CHAIN)
    for comment, body in rules(network, subnet):
        tx.add_rule(CHAIN, body, comment=comment)
    return tx


def in_place(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> bool:
    """Does the kernel hold exactly our rules (by comment, in order)?"""
    objects = nft.list_table(FAMILY, TABLE)
    if objects is None or CHAIN not in nft.chains(objects):
        return False
    have = [r.comment for r in nft.rules(objects, CHAIN)]
    return have == [c for c, _ in rules(network, subnet)]


def ensure(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> bool:
    """Create or repair the masquerade rules; True when something had to be written."""
    if in_place(network, subnet):
        return False
    nft.run(transaction(network, subnet))
    return True


def remove() -> bool:
    """Drop the agent's table (ip-masq turned off); False when it was not there."""
    if nft.list_table(FAMILY, TABLE) is None:
        return False
    nft.run(nft.Transaction(FAMILY, TABLE).delete_table())
    return True
