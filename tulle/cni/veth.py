"""A veth pair for a pod: the pod end created directly inside the pod's netns
under its final name, the host end named `<prefix><8 hex>` (veth1a2b3c4d, as
the reference names them). Deleting either end deletes both."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

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


def host_name(prefix: str = "veth") -> str:
    return f"{prefix}{secrets.token_hex(4)}"[:15]


def create(pod_netns: str, ifname: str, prefix: str = "veth", mtu: int = 0, mac: str = "",
           name: str | None = None, host_mac: str = "") -> Pair:
    """Create the pair and bring both ends up; the caller undoes with `remove`.

    The host end gets a random `<prefix><8 hex>` name, or exactly `name` when given
    (routed mode derives it from the attachment, as Calico does).
    """
    fixed = name
    for _ in range(ATTEMPTS if fixed is None else 1):
        name = fixed or host_name(prefix)
        if links.get(name) is not None:
            if fixed is not None:
                raise ExistsError(f"host interface {fixed!r} already exists (a stale attachment?)")
            continue
        try:
            links.add_veth(name, ifname, peer_netns=pod_netns, mtu=mtu, peer_mac=mac, mac=host_mac)
        except ExistsError:
            if sandbox.run(pod_netns, links.get, ifname) is not None:
                raise ExistsError(f"interface {ifname!r} already exists in the pod's netns") from None
            if fixed is not None:
                raise ExistsError(f"host interface {fixed!r} already exists") from None
            continue  # the random host name was taken meanwhile: draw again
        try:
            links.set_up(name)
            pod = sandbox.run(pod_netns, _up, ifname)
            return Pair(host=name, host_mac=links.require(name).mac, pod=ifname,
                        pod_mac=pod.mac, pod_index=pod.index)
        except BaseException:
            links.delete(name)
            raise
    raise KernelError(f"could not find a free host veth name {prefix}XXXXXXXX after {ATTEMPTS} tries")


def _up(ifname: str) -> links.Link:
    links.set_up(ifname)
    return links.require(ifname)


def remove(name: str) -> None:
    links.delete(name)
