"""bridge side by side with the reference (v1.1.1): same config, separate host
and pod netns per implementation; results and kernel state must match.

Intended differences (not compared here):
- ipMasq/macspoofchk: ours are tagged nftables rules, the reference uses
  iptables (ipMasq) and an nft `bridge nat` table (macspoofchk).
- Result DNS: the reference always replaces IPAM's DNS with the config's (even
  when empty); we keep IPAM's unless the config sets one. Both empty here.
"""

from __future__ import annotations

import pytest

from tests.netns.cni import mainhelp as h

pytestmark = pytest.mark.netns

BASE = {"cniVersion": "1.0.0", "name": "refnet", "type": "bridge", "bridge": "rbr0"}

CASES = {
    "gateway": {"isGateway": True, "ipam": h.static(routes=[{"dst": "0.0.0.0/0"}])},
    "default-gateway-mtu": {"isDefaultGateway": True, "mtu": 1400, "ipam": h.static(gateway=None)},
    "no-gateway": {"ipam": h.static(routes=[{"dst": "10.60.0.0/16", "gw": "10.22.0.254"}])},
    "l2-only": {"ipam": {}},
    "hairpin-dad": {"isGateway": True, "hairpinMode": True, "enabledad": True, "ipam": h.static()},
    "dual-stack": {"isGateway": True, "ipam": {"type": "static", "addresses": [
        {"address": "10.22.0.5/24", "gateway": "10.22.0.1"},
        {"address": "fd00:22::5/64", "gateway": "fd00:22::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
}


def state(host: str, pod: str) -> dict:
    veth = h.veths(host)
    port = h.link(host, veth[0]) if veth else {}
    return {
        "pod links": sorted(h.link_names(pod)),
        "pod v4": h.addresses(pod, "eth0"),
        "pod v6": h.addresses(pod, "eth0", "inet6"),
        "pod routes": h.route_lines(pod),
        "pod v6 routes": [l for l in h.route_lines(pod, "-6") if "fe80" not in l],
        "pod mtu": h.link(pod, "eth0")["mtu"],
        "pod up": "UP" in h.link(pod, "eth0")["flags"],
        "accept_dad": h.sysctl(pod, "net/ipv6/conf/eth0/accept_dad"),
        "arp_notify": h.sysctl(pod, "net/ipv4/conf/eth0/arp_notify"),
        "bridge v4": h.addresses(host, "rbr0"),
        "bridge v6": h.addresses(host, "rbr0", "inet6"),
        "bridge mtu": h.link(host, "rbr0")["mtu"],
        "bridge accept_ra": h.sysctl(host, "net/ipv6/conf/rbr0/accept_ra"),
        "host routes": h.route_lines(host),
        "host v6 routes": [l for l in h.route_lines(host, "-6") if "fe80" not in l],
        "ip_forward": h.sysctl(host, "net.ipv4.ip_forward"),
        "ip6 forwarding": h.sysctl(host, "net/ipv6/conf/all/forwarding"),
        "port master": port.get("master"),
        "port mtu": port.get("mtu"),
        "port hairpin": port.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin"),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_reference(cni, ref_cni, make_netns, case):
    conf = {**BASE, **CASES[case]}
    ours_host, ours_pod = make_netns("oh"), make_netns("op")
    ref_host, ref_pod = make_netns("rh"), make_netns("rp")
    a = cni("bridge", "ADD", conf, netns=ours_pod, host_ns=ours_host)
    b = ref_cni("bridge", "ADD", conf, netns=ref_pod, host_ns=ref_host)
    assert a.ok, a.out
    assert b.ok, b.out
    assert h.normalise(a.out) == h.normalise(b.out)
    # the MACs in the results are the live ones in both
    assert a.out["interfaces"][2]["mac"] == h.link(ours_pod, "eth0")["address"]
    assert state(ours_host, ours_pod) == state(ref_host, ref_pod)

    a = cni("bridge", "DEL", conf, netns=ours_pod, host_ns=ours_host)
    b = ref_cni("bridge", "DEL", conf, netns=ref_pod, host_ns=ref_host)
    assert a.ok and b.ok
    assert h.link_names(ours_pod) == h.link_names(ref_pod) == {"lo"}
    assert h.veths(ours_host) == h.veths(ref_host) == []
    assert h.route_lines(ours_host) == h.route_lines(ref_host)


def test_existing_ifname_both_fail(cni, ref_cni, make_netns):
    # Both refuse; ours with code 101, the reference with its generic 999.
    conf = {**BASE, **CASES["gateway"]}
    pods = [make_netns("op"), make_netns("rp")]
    for pod in pods:
        h.in_ns(pod, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "p0")
    a = cni("bridge", "ADD", conf, netns=pods[0], host_ns=make_netns("oh"))
    b = ref_cni("bridge", "ADD", conf, netns=pods[1], host_ns=make_netns("rh"))
    assert a.error_code == 101 and not b.ok
