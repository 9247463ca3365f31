"""ipMasq: pod traffic leaving the pod's subnet is masqueraded (multicast is not).

As the reference's ipMasq, but through nftables: one rule per pod address in
the shared `inet tulle-cni-masq` table, tagged with the attachment, so DEL
removes them even when the netns and the prevResult are gone, and GC collects
the rules of attachments that no longer exist.
"""

from __future__ import annotations

from tulle.cni.tagged import TaggedChain
from tulle.cni.types import IPInterface
from tulle.errors import CheckFailed
from tulle.kernel import nft

CHAIN = TaggedChain(family="inet", table="tulle-cni-masq",
                    base=nft.Chain("postrouting", type="nat", hook="postrouting", priority="srcnat", policy="accept"))

MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}


def rule_body(address: IPInterface) -> list[nft.Expr]:
    """from this pod address, to neither its subnet nor multicast: masquerade."""
    v = address.version
    return [
        nft.match(nft.ip_field(v, "saddr"), str(address.ip)),
        nft.match(nft.ip_field(v, "daddr"), nft.prefix(address.network), "!="),
        nft.match(nft.ip_field(v, "daddr"), nft.prefix(MULTICAST[v]), "!="),
        nft.counter(),
        nft.masquerade(),
    ]


def setup(tag: str, addresses: list[IPInterface]) -> None:
    CHAIN.replace(tag, [rule_body(a) for a in addresses])


def teardown(tag: str) -> None:
    CHAIN.remove(tag)


def _source(rule: nft.Rule) -> str | None:
    for e in rule.expr:
        m = e.get("match")
        if m and m.get("op") == "==" and m["left"].get("payload", {}).get("field") == "saddr":
            return str(m["right"])
    return None


def check(tag: str, addresses: list[IPInterface]) -> None:
    have = {_source(r) for r in CHAIN.rules_of(tag)}
    missing = [str(a.ip) for a in addresses if str(a.ip) not in have]
    if missing:
        raise CheckFailed(f"ipMasq: no masquerade rule for {', '.join(missing)} "
                          f"in nft table inet {CHAIN.table}")


def gc(network: str, keep: set[tuple[str, str]]) -> None:
    CHAIN.collect(network, keep)
