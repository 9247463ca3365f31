"""A veth pair for a pod: the pod end created directly inside the pod's netns
under its final name, the host end named `<prefix><8 hex>` (veth1a2b3c4d, as
the reference names them). Deleting either end deletes both."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable

from tulle.cni import sandbox
from tulle.errors import ExistsError, KernelError
from tulle.kernel import links

ATTEMPTS = 5


@dataclass(frozen=True)
class Pair:
    host: str
    host_mac: str
    pod: str
    pod_mac: str
    pod_index: int
    mtu: int  # the host end's (both ends share it)


def host_name(prefix: str = "veth") -> str:
    return f"{prefix}{secrets.token_hex(4)}"[:15]


def create(pod_netns: str, ifname: str, prefix: str = "veth", mtu: int = 0, mac: str = "",
           name: str | None = None, host_mac: str = "",
           inside: Callable[[str], object] | None = None) -> Pair:
    """Create the pair and bring both ends up; `inside(ifname)`, when given, does the pod end's.

    The host end gets a random `<prefix><8 hex>` name, or exactly `name` when given
    (routed mode derives it from the attachment, as Calico does). `inside` is the
    plugin's pod-side configuration (addresses, link up, routes): it runs on the
    thread that reads the pod end back, so the pod's netns is entered once per
    ADD. On any failure the pair is gone again; on success the caller undoes
    with `remove`.
    """
    fixed = name
    for _ in range(ATTEMPTS if fixed is None else 1):
        name = fixed or host_name(prefix)
        try:
            links.add_veth(name, ifname, peer_netns=pod_netns, mtu=mtu, peer_mac=mac, mac=host_mac)
        except ExistsError:
            if sandbox.run(pod_netns, links.get, ifname) is not None:
                raise ExistsError(f"interface {ifname!r} already exists in the pod's netns") from None
            if fixed is not None:
                raise ExistsError(f"host interface {fixed!r} already exists (a stale attachment?)") from None
            continue  # the random host name is taken: draw again
        try:
            links.set_up(name)
            host = links.require(name)
            pod = sandbox.run(pod_netns, _pod_side, ifname, inside)
            return Pair(host=name, host_mac=host.mac, pod=ifname, pod_mac=pod.mac, pod_index=pod.index,
                        mtu=host.mtu)
        except BaseException:
            links.delete(name)
            raise
    raise KernelError(f"could not find a free host veth name {prefix}XXXXXXXX after {ATTEMPTS} tries")


def _pod_side(ifname: str, inside: Callable[[str], object] | None) -> links.Link:
    if inside is None:
        links.set_up(ifname)
    else:
        inside(ifname)  # brings the link up in its own order (addresses first, routes after)
    return links.require(ifname)


def remove(name: str) -> None:
    links.delete(name)
