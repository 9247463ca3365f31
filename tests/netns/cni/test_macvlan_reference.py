"""macvlan side by side with the reference (v1.1.1), each with its own host
netns holding a master `ul0` (a veth) and a default route on it.

Intended differences: none in what ADD makes. Our DEL needs neither the master
nor the netns (the reference's DEL fails when the master is gone).
"""

from __future__ import annotations

import pytest

from tests.cnirun import in_ns
from tests.netns.cni import mainhelp as h

pytestmark = pytest.mark.netns

BASE = {"cniVersion": "1.0.0", "name": "refmv", "type": "macvlan"}

CASES = {
    "explicit-master": {"master": "ul0", "ipam": h.static(routes=[{"dst": "10.70.0.0/16"}])},
    "default-master-vepa-mtu": {"mode": "vepa", "mtu": 1400, "ipam": h.static()},
    "l2-only-private": {"master": "ul0", "mode": "private", "ipam": {}},
    "mac": {"master": "ul0", "mac": "02:12:34:56:78:9a", "ipam": h.static()},
}


def underlay(ns: str) -> str:
    in_ns(ns, "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0p")
    for dev in ("ul0", "ul0p"):
        in_ns(ns, "ip", "link", "set", dev, "up")
    in_ns(ns, "ip", "addr", "add", "198.51.100.2/24", "dev", "ul0")
    in_ns(ns, "ip", "route", "add", "default", "via", "198.51.100.1", "dev", "ul0")
    return ns


def state(host: str, pod: str) -> dict:
    link = h.link(pod, "eth0")
    return {
        "pod links": sorted(h.link_names(pod)),
        "kind": link["linkinfo"]["info_kind"],
        "mode": link["linkinfo"]["info_data"]["mode"],
        "mtu": link["mtu"],
        "up": "UP" in link["flags"],
        "v4": h.addresses(pod, "eth0"),
        "routes": h.route_lines(pod),
        "arp_notify": h.sysctl(pod, "net/ipv4/conf/eth0/arp_notify"),
        "host links": sorted(h.link_names(host)),
        "host routes": h.route_lines(host),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_reference(cni, ref_cni, make_netns, case):
    conf = {**BASE, **CASES[case]}
    ours_host, ours_pod = underlay(make_netns("oh")), make_netns("op")
    ref_host, ref_pod = underlay(make_netns("rh")), make_netns("rp")
    a = cni("macvlan", "ADD", conf, netns=ours_pod, host_ns=ours_host)
    b = ref_cni("macvlan", "ADD", conf, netns=ref_pod, host_ns=ref_host)
    assert a.ok, a.out
    assert b.ok, b.out
    assert h.normalise(a.out) == h.normalise(b.out)
    assert state(ours_host, ours_pod) == state(ref_host, ref_pod)
    assert cni("macvlan", "DEL", conf, netns=ours_pod, host_ns=ours_host).ok
    assert ref_cni("macvlan", "DEL", conf, netns=ref_pod, host_ns=ref_host).ok
    assert h.link_names(ours_pod) == h.link_names(ref_pod) == {"lo"}


def test_missing_master_both_fail(cni, ref_cni, make_netns):
    conf = {**BASE, "master": "nope0", "ipam": h.static()}
    a = cni("macvlan", "ADD", conf, netns=make_netns("op"), host_ns=make_netns("oh"))
    b = ref_cni("macvlan", "ADD", conf, netns=make_netns("rp"), host_ns=make_netns("rh"))
    assert a.error_code == 104 and not b.ok  # the reference: generic code 999
