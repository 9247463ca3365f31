"""tulle-routed: Calico-style L3 wiring (no bridge, proxy ARP for 169.254.1.1)."""

from __future__ import annotations

import pytest

from tests.cnirun import in_ns, ip_json

pytestmark = pytest.mark.netns


def conf(address: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "routed", "type": "tulle-routed",
            "ipam": {"type": "static", "addresses": [{"address": address}]}}


def test_two_pods_route_through_the_host(cni, host_ns, make_netns):
    a, b = make_netns("a"), make_netns("b")
    ra = cni("tulle-routed", "ADD", conf("10.244.7.2/26"), netns=a, container_id="ca", host_ns=host_ns)
    rb = cni("tulle-routed", "ADD", conf("10.244.7.3/26"), netns=b, container_id="cb", host_ns=host_ns)
    assert ra.ok and rb.ok, (ra.out, rb.out)
    assert ra.out["ips"][0]["address"] == "10.244.7.2/32"
    assert ra.out["ips"][0]["gateway"] == "169.254.1.1"
    host = ra.out["interfaces"][0]
    assert host["name"].startswith("tul") and host["mac"] == "ee:ee:ee:ee:ee:ee"
    host_addrs = ip_json(host_ns, "addr", "show", "dev", host["name"])[0]["addr_info"]
    assert [a for a in host_addrs if a["family"] == "inet"] == []  # no IPv4 on the host end
    host_routes = ip_json(host_ns, "route", "show", "dev", host["name"])
    assert [(r["dst"], r.get("scope")) for r in host_routes] == [("10.244.7.2", "link")]
    pod_routes = {r["dst"]: r.get("gateway") for r in ip_json(a, "route")}
    assert pod_routes == {"default": "169.254.1.1", "169.254.1.1": None}
    in_ns(a, "ping", "-c1", "-W2", "10.244.7.3")
    assert cni("tulle-routed", "CHECK", {**conf("10.244.7.2/26"), "prevResult": ra.out}, netns=a,
               container_id="ca", host_ns=host_ns).ok
    # drift: the host route goes -> CHECK fails with 103
    in_ns(host_ns, "ip", "route", "del", "10.244.7.2/32")
    bad = cni("tulle-routed", "CHECK", {**conf("10.244.7.2/26"), "prevResult": ra.out}, netns=a,
              container_id="ca", host_ns=host_ns)
    assert bad.error_code == 103
    for pod, cid in ((a, "ca"), (b, "cb")):
        assert cni("tulle-routed", "DEL", conf("10.244.7.2/26"), netns=pod, container_id=cid, host_ns=host_ns).ok
        assert cni("tulle-routed", "DEL", conf("10.244.7.2/26"), netns=pod, container_id=cid, host_ns=host_ns).ok
    assert [l["ifname"] for l in ip_json(host_ns, "link")] == ["lo"]


def test_ipv6_is_refused_and_nothing_left(cni, host_ns, pod_ns):
    res = cni("tulle-routed", "ADD", conf("fd00::5/64"), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7
    assert [l["ifname"] for l in ip_json(host_ns, "link")] == ["lo"]
    assert [l["ifname"] for l in ip_json(pod_ns, "link")] == ["lo"]


def test_existing_ifname_is_101_and_leaves_nothing(cni, host_ns, pod_ns):
    assert cni("tulle-routed", "ADD", conf("10.244.7.2/26"), netns=pod_ns, host_ns=host_ns).ok
    again = cni("tulle-routed", "ADD", conf("10.244.7.9/26"), netns=pod_ns, container_id="other", host_ns=host_ns)
    assert again.error_code == 101
    assert len(ip_json(host_ns, "link")) == 2  # lo + the first pod's veth only
