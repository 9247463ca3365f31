"""macspoofchk: frames entering the bridge from a pod's port must carry the
pod's MAC; anything else is dropped before the bridge sees it.

One rule per attachment in the shared `bridge tulle-cni-macspoof` table
(prerouting, priority -300 like the reference), tagged with the attachment so
DEL and GC find it without the netns.
"""

from __future__ import annotations

from tulle.cni.tagged import TaggedChain
from tulle.errors import CheckFailed
from tulle.kernel import nft

CHAIN = TaggedChain(family="bridge", table="tulle-cni-macspoof",
                    base=nft.Chain("prerouting", type="filter", hook="prerouting", priority=-300, policy="accept"))


def rule_body(host_port: str, mac: str) -> list[nft.Expr]:
    return [
        nft.match(nft.meta("iifname"), host_port),
        nft.match(nft.payload("ether", "saddr"), mac.lower(), "!="),
        nft.counter(),
        nft.drop(),
    ]


def setup(tag: str, host_port: str, mac: str) -> None:
    CHAIN.replace(tag, [rule_body(host_port, mac)])


def teardown(tag: str) -> None:
    CHAIN.remove(tag)


def check(tag: str, host_port: str, mac: str) -> None:
    for rule in CHAIN.rules_of(tag):
        values = [e["match"]["right"] for e in rule.expr if "match" in e]
        if host_port in values and mac.lower() in values:
            return
    raise CheckFailed(f"macspoofchk: no rule for port {host_port} with MAC {mac} "
                      f"in nft table bridge {CHAIN.table}")


def gc(network: str, keep: set[tuple[str, str]]) -> None:
    CHAIN.collect(network, keep)
