"""Traffic control in the calling thread's namespace: a tbf root qdisc on a
device, the ingress qdisc, and a match-everything u32 filter that redirects a
device's incoming packets to an ifb (where they can be shaped as egress).

`tbf_params` is pure: it turns bit/s and bits into the kernel's tbf fields
exactly as the reference bandwidth plugin (v1.1.x) does, so both produce the
same `tc qdisc show`. (The kernel here has no `matchall` classifier, so the
redirect uses u32 with an empty key, as the reference does.)
"""

from __future__ import annotations

from dataclasses import dataclass

from pyroute2 import protocols
from pyroute2.netlink.rtnl.tcmsg import common as tc_common

from tulle.errors import NotFoundError
from tulle.kernel import links, rtnl
from tulle.kernel.rtnl import ipr

ROOT = 0xFFFFFFFF
INGRESS_PARENT = 0xFFFFFFF1
TBF_HANDLE = 0x10000          # 1:
INGRESS_HANDLE = 0xFFFF0000   # ffff:
REDIRECT_CLASSID = 0x10001    # 1:1, as the reference's filter carries
TBF_LATENCY_US = 25_000       # the reference's fixed 25 ms queueing latency
USEC_PER_SEC = 1_000_000
MAX_U32 = 2**32 - 1


@dataclass(frozen=True)
class Tbf:
    """tbf's kernel fields: rate (bytes/s), buffer (scheduler ticks), limit (bytes)."""

    rate: int
    buffer: int
    limit: int


@dataclass(frozen=True)
class Qdisc:
    kind: str
    handle: int
    parent: int
    tbf: Tbf | None = None


@dataclass(frozen=True)
class Redirect:
    """A filter on the ingress qdisc that redirects to another device."""

    prio: int
    target_index: int


def tick_in_usec() -> float:
    """Scheduler ticks per microsecond, from /proc/net/psched (as tc computes it)."""
    return float(tc_common.tick_in_usec)


def tbf_params(rate_bits: int, burst_bits: int, ticks_per_usec: float | None = None) -> Tbf:
    """The tbf fields for a rate (bit/s) and burst (bits), computed as the reference does:
    buffer = ticks(burst/rate seconds), limit = rate * 25 ms + burst (bytes) — except that
    the buffer is capped where tbf's 32 bits end (tbf_burst)."""
    if rate_bits < 8 or burst_bits < 8:
        raise ValueError("tbf rate and burst must be at least 8 bits")
    tpu = tick_in_usec() if ticks_per_usec is None else ticks_per_usec
    rate = rate_bits // 8
    asked = burst_bits // 8
    xmit_usec = int(tbf_burst(rate, asked, tpu) * USEC_PER_SEC / rate)
    buffer = int(xmit_usec * tpu)
    limit = min(int(rate * TBF_LATENCY_US / USEC_PER_SEC) + asked, MAX_U32)
    return Tbf(rate=rate, buffer=buffer, limit=limit)


def tbf_burst(rate: int, burst: int, ticks_per_usec: float) -> int:
    """`burst` (bytes) capped to what tbf can hold: its transmit time at `rate` (bytes/s),
    in scheduler ticks, is a 32-bit field (~275 s here). containerd asks for 2^32-1 bits
    with every bandwidth annotation ("no burst limit"), longer than that below ~16 Mbit/s;
    the reference's Go arithmetic wraps around there (at 10 Mbit/s it shapes with a
    193 MB burst), tulle takes the longest burst tbf holds."""
    return min(burst, int(MAX_U32 / ticks_per_usec) * rate // USEC_PER_SEC)


def add_tbf(dev: str, rate_bits: int, burst_bits: int) -> Tbf:
    """Put a tbf root qdisc (handle 1:) on `dev`; returns the fields it set."""
    params = tbf_params(rate_bits, burst_bits)
    burst_bytes = tbf_burst(params.rate, burst_bits // 8, tick_in_usec())
    with rtnl.errors(f"add tbf qdisc on {dev}"):
        # pyroute2 derives the same buffer from rate+burst; limit is given as computed.
        ipr().tc("add", "tbf", links.index_of(dev), handle=TBF_HANDLE, rate=params.rate,
                 burst=burst_bytes, limit=params.limit)
    return params


def add_ingress(dev: str) -> None:
    with rtnl.errors(f"add ingress qdisc on {dev}"):
        ipr().tc("add", "ingress", links.index_of(dev), handle=INGRESS_HANDLE)


def add_redirect(dev: str, target: str, prio: int = 1) -> None:
    """Redirect every packet arriving on `dev` to the egress of `target` (an ifb)."""
    target_index = links.index_of(target)
    with rtnl.errors(f"add redirect filter {dev} -> {target}"):
        ipr().tc("add-filter", "u32", links.index_of(dev), parent=INGRESS_HANDLE, prio=prio,
                 protocol=protocols.ETH_P_ALL, target=REDIRECT_CLASSID, keys=["0x0/0x0+0"],
                 action=[{"kind": "mirred", "direction": "egress", "action": "redirect",
                          "ifindex": target_index}])


def _to_qdisc(msg) -> Qdisc:
    kind = msg.get_attr("TCA_KIND") or ""
    tbf = None
    if kind == "tbf":
        opts = msg.get_attr("TCA_OPTIONS")
        parms = opts.get_attr("TCA_TBF_PARMS") if opts is not None else None
        if parms is not None:
            tbf = Tbf(rate=parms["rate"], buffer=parms["buffer"], limit=parms["limit"])
    return Qdisc(kind=kind, handle=msg["handle"], parent=msg["parent"], tbf=tbf)


def qdiscs(dev: str) -> list[Qdisc]:
    """The qdiscs of `dev` (empty when the device is gone)."""
    index = links.find_index(dev)
    if index is None:
        return []
    with rtnl.errors(f"list qdiscs of {dev}"):
        return [_to_qdisc(m) for m in ipr().get_qdiscs(index)]


def root_tbf(dev: str) -> Tbf | None:
    for q in qdiscs(dev):
        if q.parent == ROOT and q.kind == "tbf":
            return q.tbf
    return None


def has_ingress(dev: str) -> bool:
    return any(q.kind == "ingress" for q in qdiscs(dev))


def redirects(dev: str) -> list[Redirect]:
    """The mirred-redirect filters on `dev`'s ingress qdisc."""
    index = links.find_index(dev)
    if index is None:
        return []
    if not has_ingress(dev):
        return []
    out = []
    with rtnl.errors(f"list filters of {dev}"):
        msgs = ipr().get_filters(index, parent=INGRESS_HANDLE)
    for msg in msgs:
        opts = msg.get_attr("TCA_OPTIONS")
        act = opts.get_attr("TCA_U32_ACT") if opts is not None else None
        if act is None:
            continue
        for _, prio_attr in act["attrs"]:
            if prio_attr.get_attr("TCA_ACT_KIND") != "mirred":
                continue
            parms = prio_attr.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_MIRRED_PARMS")
            out.append(Redirect(prio=msg["info"] >> 16, target_index=parms["ifindex"]))
    return out


def _delete(dev: str, what: str, handle: int, parent: int) -> bool:
    index = links.find_index(dev)
    if index is None:
        return False
    try:
        with rtnl.errors(f"delete {what} qdisc of {dev}"):
            # no kind: a kind would make pyroute2 encode (and require) its options
            ipr().tc("del", index=index, handle=handle, parent=parent)
    except NotFoundError:
        return False
    except Exception as exc:  # EINVAL: no such qdisc on this device
        if getattr(exc, "errno", 0) == 22:
            return False
        raise
    return True


def delete_root(dev: str) -> bool:
    """Remove `dev`'s root qdisc (back to the default); False when there was none."""
    if root_tbf(dev) is None:
        return False
    return _delete(dev, "root", TBF_HANDLE, ROOT)


def delete_ingress(dev: str) -> bool:
    """Remove the ingress qdisc (and with it its filters)."""
    if not has_ingress(dev):
        return False
    return _delete(dev, "ingress", INGRESS_HANDLE, INGRESS_PARENT)


def max_rate_bits() -> int:
    """tbf holds the rate as 32-bit bytes/s (pyroute2 sends no 64-bit rate)."""
    return MAX_U32 * 8
