"""firewall: accepts forwarded traffic from the pod, and to the pod when it
belongs to a connection already seen (ct state established,related) — the
reference's iptables backend, expressed in one nftables table:

    table inet tulle-firewall
      forward  filter hook forward priority -10 (filter - 10), policy accept:
               jump admin; jump pods
      admin    left to the administrator (never flushed: their own rules,
               like the reference's CNI-ADMIN chain, run first)
      pods     per pod IP: `saddr IP accept`, `daddr IP ct state established,related accept`,
               each tagged with the attachment (DEL and GC find them without prevResult)

Priority -10 runs this table just before the usual `filter` tables (priority 0)
so the admin chain sees packets first. In nftables an accept is final only for
its own base chain: a drop in another table on the forward hook still applies,
as a DROP in an iptables chain after the reference's CNI-FORWARD jump would not.
`ingressPolicy: same-bridge` and the firewalld backend are not implemented and
are refused (code 2) rather than silently ignored.
"""

from __future__ import annotations

from tulle.cni import attachment, chained
from tulle.cni.errors import UNSUPPORTED_FIELD, CNIError
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import IPAddress, Result
from tulle.errors import CheckFailed, ConfigError
from tulle.kernel import nft

FAMILY = "inet"
TABLE = "tulle-firewall"
FORWARD, ADMIN, PODS = "forward", "admin", "pods"
FORWARD_CHAIN = nft.Chain(FORWARD, type="filter", hook="forward", priority="filter - 10", policy="accept")
BACKENDS = ("", "iptables", "nftables")
INGRESS_POLICIES = ("", "open")


def load_conf(call: Call) -> None:
    f = call.fields
    backend = f.str("backend")
    if backend not in BACKENDS:
        if backend == "firewalld":
            raise CNIError(UNSUPPORTED_FIELD, "firewall: the firewalld backend is not supported")
        raise ConfigError(f"backend must be one of iptables, nftables, got {backend!r}")
    policy = f.str("ingressPolicy")
    if policy == "same-bridge":
        raise CNIError(UNSUPPORTED_FIELD, "firewall: ingressPolicy same-bridge is not supported")
    if policy not in INGRESS_POLICIES:
        raise ConfigError(f"ingressPolicy must be \"open\" or \"same-bridge\", got {policy!r}")
    f.str("iptablesAdminChainName")  # accepted for compatibility: tulle's admin chain is `admin`


def pod_rules(ips: list[IPAddress]) -> list[list[nft.Expr]]:
    """The attachment's rules in `pods`, in order."""
    out: list[list[nft.Expr]] = []
    for ip in ips:
        out.append([nft.match(nft.ip_field(ip.version, "saddr"), str(ip)), nft.accept()])
        out.append([nft.match(nft.ip_field(ip.version, "daddr"), str(ip)),
                    nft.match(nft.ct("state"), ["established", "related"], op="in"), nft.accept()])
    return out


def ensure_base(tx: nft.Transaction) -> None:
    tx.add(nft.Table(FAMILY, TABLE))
    tx.add(nft.Chain(ADMIN))
    tx.add(nft.Chain(PODS))
    tx.add(FORWARD_CHAIN).flush(FORWARD_CHAIN)
    tx.add(nft.Rule(FORWARD, [nft.jump(ADMIN)]))
    tx.add(nft.Rule(FORWARD, [nft.jump(PODS)]))


def owned(listing: list[dict] | None, tag: str) -> list[nft.Rule]:
    return [r for r in nft.rules(listing, PODS) if r.comment == tag]


def add_tx(listing: list[dict] | None, tag: str, ips: list[IPAddress]) -> nft.Transaction:
    tx = nft.Transaction(FAMILY, TABLE)
    ensure_base(tx)
    for rule in owned(listing, tag):
        tx.delete(rule)
    for expr in pod_rules(ips):
        tx.add(nft.Rule(PODS, expr, comment=tag))
    return tx


def delete_tx(listing: list[dict] | None, tag: str) -> nft.Transaction:
    tx = nft.Transaction(FAMILY, TABLE)
    for rule in owned(listing, tag):
        tx.delete(rule)
    return tx


def collect_tx(listing: list[dict] | None, network: str, keep: set[tuple[str, str]]) -> nft.Transaction:
    keep_tags = {attachment.tag(network, cid, ifname) for cid, ifname in keep}
    mine = attachment.network_tag(network)
    tx = nft.Transaction(FAMILY, TABLE)
    for rule in nft.rules(listing, PODS):
        parsed = attachment.parse_tag(rule.comment) if rule.comment else None
        if parsed and parsed[0] == mine and rule.comment not in keep_tags:
            tx.delete(rule)
    return tx


def drift(listing: list[dict] | None, tag: str, ips: list[IPAddress]) -> str | None:
    if listing is None:
        return f"table {FAMILY} {TABLE} is missing"
    chains = set(nft.chains(listing))
    for name in (FORWARD, ADMIN, PODS):
        if name not in chains:
            return f"chain {name} is missing"
    if [r.expr for r in nft.rules(listing, FORWARD)] != [[nft.jump(ADMIN)], [nft.jump(PODS)]]:
        return f"chain {FORWARD} no longer jumps to {ADMIN} and {PODS}"
    if [r.expr for r in owned(listing, tag)] != pod_rules(ips):
        return f"the rules of {tag} in {PODS} differ from the expected ones"
    return None


def _tag(call: Call) -> str:
    return attachment.tag(call.name, call.env.container_id, call.env.ifname)


def _ips(prev: Result) -> list[IPAddress]:
    return [ip.address.ip for ip in chained.pod_ips(prev)]


def cmd_add(call: Call) -> Result:
    load_conf(call)
    result = chained.pass_through(call)
    ips = _ips(result)
    if not ips:
        raise ConfigError("firewall: prevResult has no IP addresses for the pod")
    nft.run(add_tx(nft.list_table(FAMILY, TABLE), _tag(call), ips))
    return result


def cmd_del(call: Call) -> None:
    load_conf(call)
    nft.run(delete_tx(nft.list_table(FAMILY, TABLE), _tag(call)))


def cmd_check(call: Call) -> None:
    load_conf(call)
    why = drift(nft.list_table(FAMILY, TABLE), _tag(call), _ips(call.require_prev_result()))
    if why:
        raise CheckFailed(f"firewall: {why}")


def cmd_gc(call: Call) -> None:
    nft.run(collect_tx(nft.list_table(FAMILY, TABLE), call.name, call.valid_attachments()))


PLUGIN = Plugin(name="firewall", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)
