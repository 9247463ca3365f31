"""The nftables ruleset of the portmap plugin, as pure functions over data.

Everything lives in one table, `inet tulle-portmap`: an inet table lets one
atomic transaction cover IPv4 and IPv6 together (separate ip/ip6 tables would
need two `nft` batches, and a failure between them would leave half a pod
mapped), and there is no IPv6 chain that can go missing for CHECK to trip on.

    prerouting  nat hook prerouting  prio -100  fib daddr type local -> hostports
    output      nat hook output      prio -100  fib daddr type local -> hostports
    postrouting nat hook postrouting prio  100  -> masq
    hostports   one `jump pm-<digest>` per attachment      (comment = attachment tag)
    masq        one masquerade rule per attachment IP      (comment = attachment tag)
    pm-<digest> the attachment's DNAT rules (and the hairpin/localhost mark)

As in the reference, a connection from the pod itself (hairpin) or from
127.0.0.1 (localhost) gets the masquerade bit (`markMasqBit`) in the mark, and
the attachment's `masq` rule masquerades marked packets to the pod so replies
come back through the host. Base chains hold only fixed rules, so every ADD
re-creates them (add + flush + add) in its own transaction; attachment objects
are found by their tag and chain name, so DEL and GC need neither netns nor
prevResult.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tulle.cni import attachment
from tulle.kernel import nft

FAMILY = "inet"
TABLE = "tulle-portmap"
HOSTPORTS = "hostports"
MASQ = "masq"
CHAIN_PREFIX = "pm"
DSTNAT, SRCNAT = -100, 100
LOCALHOST_V4 = ipaddress.ip_network("127.0.0.0/8")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"            # tcp, udp or sctp
    host_ip: IPAddress | None = None  # None: every local address


@dataclass(frozen=True)
class Attachment:
    """One pod interface's mappings, as ADD/CHECK need them."""

    network: str
    container_id: str
    ifname: str
    pod_ips: tuple[IPAddress, ...]
    mappings: tuple[PortMapping, ...]
    snat: bool = True
    masq_bit: int = 13

    @property
    def tag(self) -> str:
        return attachment.tag(self.network, self.container_id, self.ifname)

    @property
    def chain(self) -> str:
        return chain_of(self.network, self.container_id, self.ifname)

    @property
    def mark(self) -> int:
        return 1 << self.masq_bit


def chain_of(network: str, container_id: str, ifname: str) -> str:
    return attachment.chain_name(CHAIN_PREFIX, network, container_id, ifname)


def _nfproto(version: int) -> nft.Expr:
    return nft.match(nft.meta("nfproto"), "ipv4" if version == 4 else "ipv6")


def _mark_is_set(mark: int) -> nft.Expr:
    return nft.match(nft.bit_and(nft.meta("mark"), mark), mark)


def _nat_chain(hook: str, priority: int) -> nft.Chain:
    return nft.Chain(hook, type="nat", hook=hook, priority=priority, policy="accept")


def ensure_base(tx: nft.Transaction) -> None:
    """The table, its base chains and their fixed rules (idempotent in one batch)."""
    tx.add(nft.Table(FAMILY, TABLE))
    tx.add(nft.Chain(HOSTPORTS))
    tx.add(nft.Chain(MASQ))
    local = nft.match(nft.fib("type", ["daddr"]), "local")
    for chain, target in ((_nat_chain("prerouting", DSTNAT), [local, nft.jump(HOSTPORTS)]),
                          (_nat_chain("output", DSTNAT), [local, nft.jump(HOSTPORTS)]),
                          (_nat_chain("postrouting", SRCNAT), [nft.jump(MASQ)])):
        tx.add(chain).flush(chain)
        tx.add(nft.Rule(chain.name, target))


def dnat_rules(att: Attachment) -> list[list[nft.Expr]]:
    """The attachment chain's rules, in order: per mapping and pod IP, the
    hairpin/localhost mark (when snat) then the DNAT."""
    out: list[list[nft.Expr]] = []
    for m in att.mappings:
        for ip in att.pod_ips:
            if m.host_ip is not None and m.host_ip.version != ip.version:
                continue
            fam = "ip" if ip.version == 4 else "ip6"
            match = []
            if m.host_ip is not None:
                match.append(nft.match(nft.ip_field(ip.version, "daddr"), str(m.host_ip)))
            match.append(nft.match(nft.payload(m.protocol, "dport"), m.host_port))
            if att.snat:
                sources = [str(ip)] + ([nft.prefix(LOCALHOST_V4)] if ip.version == 4 else [])
                src = sources[0] if len(sources) == 1 else nft.set_of(sources)
                out.append([*match, nft.match(nft.ip_field(ip.version, "saddr"), src),
                            nft.set_mark(att.mark, mask=att.mark)])
            # an address match implies the family; without one, say it (nft lists it only then)
            family = [] if m.host_ip is not None else [_nfproto(ip.version)]
            out.append([*family, *match, nft.dnat(str(ip), m.container_port, family=fam)])
    return out


def masq_rules(att: Attachment) -> list[list[nft.Expr]]:
    if not att.snat:
        return []
    return [[nft.match(nft.ip_field(ip.version, "daddr"), str(ip)), _mark_is_set(att.mark), nft.masquerade()]
            for ip in att.pod_ips]


def jump_rule(att: Attachment) -> list[nft.Expr]:
    return [nft.jump(att.chain)]


def owned_rules(listing: list[dict] | None, tag: str) -> list[nft.Rule]:
    """Rules of hostports/masq that belong to the attachment with `tag`."""
    return [r for r in nft.rules(listing) if r.chain in (HOSTPORTS, MASQ) and r.comment == tag]


def remove(tx: nft.Transaction, listing: list[dict] | None, tag: str, chain: str) -> None:
    """Delete an attachment's rules and chain (as found in `listing`)."""
    for rule in owned_rules(listing, tag):
        tx.delete(rule)
    if chain in nft.chains(listing):
        tx.flush(nft.Chain(chain)).delete(nft.Chain(chain))


def add(listing: list[dict] | None, att: Attachment) -> nft.Transaction:
    """The one transaction of an ADD: base objects, then this attachment's
    rules replacing whatever a previous ADD of it left."""
    tx = nft.Transaction(FAMILY, TABLE)
    ensure_base(tx)
    for rule in owned_rules(listing, att.tag):
        tx.delete(rule)
    chain = nft.Chain(att.chain)
    tx.add(chain).flush(chain)
    for expr in dnat_rules(att):
        tx.add(nft.Rule(att.chain, expr))
    tx.add(nft.Rule(HOSTPORTS, jump_rule(att), comment=att.tag))
    for expr in masq_rules(att):
        tx.add(nft.Rule(MASQ, expr, comment=att.tag))
    return tx


def delete(listing: list[dict] | None, network: str, container_id: str, ifname: str) -> nft.Transaction:
    tx = nft.Transaction(FAMILY, TABLE)
    if listing is not None:
        remove(tx, listing, attachment.tag(network, container_id, ifname), chain_of(network, container_id, ifname))
    return tx


def collect(listing: list[dict] | None, network: str, keep: set[tuple[str, str]]) -> nft.Transaction:
    """GC: remove every attachment of `network` whose (cid, ifname) is not kept."""
    tx = nft.Transaction(FAMILY, TABLE)
    keep_tags = {attachment.tag(network, cid, ifname) for cid, ifname in keep}
    mine = attachment.network_tag(network)
    stale: dict[str, str | None] = {}
    for rule in nft.rules(listing):
        if rule.chain not in (HOSTPORTS, MASQ) or not rule.comment:
            continue
        parsed = attachment.parse_tag(rule.comment)
        if parsed is None or parsed[0] != mine or rule.comment in keep_tags:
            continue
        tx.delete(rule)
        target = rule.expr[-1].get("jump", {}).get("target") if rule.expr else None
        if rule.chain == HOSTPORTS and target:
            stale[rule.comment] = target
    present = set(nft.chains(listing))
    for chain in stale.values():
        if chain in present:
            tx.flush(nft.Chain(chain)).delete(nft.Chain(chain))
    return tx


def drift(listing: list[dict] | None, att: Attachment) -> str | None:
    """Why the live ruleset does not hold `att`'s rules, or None when it does.

    The rules are generated in the very form `nft -j list` prints them back
    (no implied matches), so they compare as data."""
    if listing is None:
        return f"table {FAMILY} {TABLE} is missing"
    chains = set(nft.chains(listing))
    for base in ("prerouting", "output", "postrouting", HOSTPORTS, MASQ):
        if base not in chains:
            return f"chain {base} is missing"
    if att.chain not in chains:
        return f"chain {att.chain} of {att.tag} is missing"
    live = [r.expr for r in nft.rules(listing, att.chain)]
    want = dnat_rules(att)
    if live != want:
        return f"chain {att.chain} holds {len(live)} rules that differ from the {len(want)} expected"
    owned = owned_rules(listing, att.tag)
    if [r.expr for r in owned if r.chain == HOSTPORTS] != [jump_rule(att)]:
        return f"the jump to {att.chain} is missing from {HOSTPORTS}"
    if [r.expr for r in owned if r.chain == MASQ] != masq_rules(att):
        return f"the masquerade rules of {att.tag} differ"
    return None
