"""ptp side by side with the reference (v1.1.1).

Intended differences:
- the host route to the pod is `scope link` here, `scope host` in the
  reference (both forward; "reachable on this link" is what the route means):
  normalised below.
- ipMasq uses tagged nftables rules instead of iptables (not compared).
"""

from __future__ import annotations

import pytest

from tests.netns.cni import mainhelp as h

pytestmark = pytest.mark.netns

BASE = {"cniVersion": "1.0.0", "name": "refptp", "type": "ptp"}

CASES = {
    "default-route": {"ipam": h.static(routes=[{"dst": "0.0.0.0/0"}])},
    "mtu": {"mtu": 1300, "ipam": h.static("10.30.1.7/16", "10.30.0.1")},
    "dual-stack": {"ipam": {"type": "static", "addresses": [
        {"address": "10.22.0.5/24", "gateway": "10.22.0.1"},
        {"address": "fd00:22::5/64", "gateway": "fd00:22::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
}


def state(host: str, pod: str) -> dict:
    veth = h.veths(host)[0]
    return {
        "pod v4": h.addresses(pod, "eth0"),
        "pod v6": h.addresses(pod, "eth0", "inet6"),
        "pod routes": h.route_lines(pod),
        "pod v6 routes": [l for l in h.route_lines(pod, "-6") if "fe80" not in l],
        "pod mtu": h.link(pod, "eth0")["mtu"],
        "accept_dad": h.sysctl(pod, "net/ipv6/conf/eth0/accept_dad"),
        "arp_notify": h.sysctl(pod, "net/ipv4/conf/eth0/arp_notify"),
        "host v4": h.addresses(host, veth),
        "host v6": h.addresses(host, veth, "inet6"),
        "host mtu": h.link(host, veth)["mtu"],
        "host routes": [l.replace(veth, "VETH").replace("scope host", "scope link") for l in h.route_lines(host)],
        "host v6 routes": [l.replace(veth, "VETH") for l in h.route_lines(host, "-6") if "fe80" not in l],
        "ip_forward": h.sysctl(host, "net.ipv4.ip_forward"),
        "ip6 forwarding": h.sysctl(host, "net/ipv6/conf/all/forwarding"),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_reference(cni, ref_cni, make_netns, case):
    conf = {**BASE, **CASES[case]}
    ours_host, ours_pod = make_netns("oh"), make_netns("op")
    ref_host, ref_pod = make_netns("rh"), make_netns("rp")
    a = cni("ptp", "ADD", conf, netns=ours_pod, host_ns=ours_host)
    b = ref_cni("ptp", "ADD", conf, netns=ref_pod, host_ns=ref_host)
    assert a.ok, a.out
    assert b.ok, b.out
    assert h.normalise(a.out) == h.normalise(b.out)
    assert state(ours_host, ours_pod) == state(ref_host, ref_pod)
    assert h.ping(ours_pod, "10.22.0.1" if case != "mtu" else "10.30.0.1")
    assert cni("ptp", "DEL", conf, netns=ours_pod, host_ns=ours_host).ok
    assert ref_cni("ptp", "DEL", conf, netns=ref_pod, host_ns=ref_host).ok
    assert h.veths(ours_host) == h.veths(ref_host) == []
    assert h.route_lines(ours_host) == h.route_lines(ref_host) == []
