"""ptp plugin in sandbox netns: routed veth pairs, failures, DEL, CHECK drift, GC."""

from __future__ import annotations

import os

import pytest

from tests.cnirun import in_ns
from tests.netns.cni import mainhelp as h
from tulle.kernel import netns

pytestmark = pytest.mark.netns


def conf(version: str = "1.0.0", ipam: dict | None = None, **fields) -> dict:
    return {"cniVersion": version, "name": "ptpnet", "type": "ptp",
            "ipam": h.static(routes=[{"dst": "0.0.0.0/0"}]) if ipam is None else ipam, **fields}


def with_prev(c: dict, result: dict) -> dict:
    return {**c, "prevResult": result}


@pytest.mark.parametrize("version", h.VERSIONS)
def test_add_check_del(cni, pod_ns, host_ns, version):
    c = conf(version, mtu=1400)
    res = cni("ptp", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    out = res.out
    host_veth = out["interfaces"][0]["name"]
    assert host_veth.startswith("veth") and out["interfaces"][1]["name"] == "eth0"
    assert out["interfaces"][1]["sandbox"] == pod_ns
    ip = out["ips"][0]
    assert ip["interface"] == 1 and ip["address"] == "10.22.0.5/24" and ip["gateway"] == "10.22.0.1"
    assert ("version" in ip) == (version in ("0.3.1", "0.4.0"))
    assert ("mtu" in out["interfaces"][1]) == (version == "1.1.0")
    # pod: the subnet goes via the gateway, which is reachable on the link only
    assert h.addresses(pod_ns, "eth0") == ["10.22.0.5/24"]
    assert h.route_lines(pod_ns) == [
        "10.22.0.0/24 via 10.22.0.1 dev eth0 src 10.22.0.5",
        "10.22.0.1 dev eth0 scope link src 10.22.0.5",
        "default via 10.22.0.1 dev eth0",
    ]
    assert h.link(pod_ns, "eth0")["mtu"] == 1400
    # host: gateway /32 on the veth, a route to the pod
    assert h.addresses(host_ns, host_veth) == ["10.22.0.1/32"]
    assert f"10.22.0.5 dev {host_veth} scope link" in h.route_lines(host_ns)
    assert h.sysctl(host_ns, "net.ipv4.ip_forward") == "1"
    assert h.ping(pod_ns, "10.22.0.1")
    if version != "0.3.1":
        assert cni("ptp", "CHECK", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok
    assert cni("ptp", "DEL", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok
    assert h.link_names(pod_ns) == {"lo"} and h.veths(host_ns) == []
    assert cni("ptp", "DEL", c, netns=pod_ns, host_ns=host_ns).ok


def test_two_pods_ping_through_the_host(cni, make_netns, host_ns):
    a, b = make_netns("a"), make_netns("b")
    assert cni("ptp", "ADD", conf(), netns=a, host_ns=host_ns, container_id="a").ok
    assert cni("ptp", "ADD", conf(ipam=h.static("10.22.0.6/24")), netns=b, host_ns=host_ns,
               container_id="b").ok
    assert h.ping(a, "10.22.0.6") and h.ping(b, "10.22.0.5")


def test_host_device_named_like_the_pod_interface(cni, pod_ns, host_ns):
    in_ns(host_ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    assert cni("ptp", "ADD", conf(), netns=pod_ns, host_ns=host_ns).ok


def test_ipmasq_and_del_without_netns(cni, make_netns, host_ns, tmp_path):
    pod = make_netns("gone")
    c = conf(ipMasq=True, ipam={**h.host_local(str(tmp_path)), "routes": [{"dst": "0.0.0.0/0"}]})
    res = cni("ptp", "ADD", c, netns=pod, host_ns=host_ns, container_id="m1")
    assert res.ok, res.out
    assert [r["comment"].split(":")[1] for r in h.nft_rules(host_ns)] == ["m1"]
    assert os.listdir(tmp_path / "ptpnet")
    netns.remove(os.path.basename(pod))
    assert cni("ptp", "DEL", c, netns=pod, host_ns=host_ns, container_id="m1").ok
    assert h.nft_rules(host_ns) == [] and h.veths(host_ns) == []
    assert not [f for f in os.listdir(tmp_path / "ptpnet") if f[0].isdigit()]
    assert cni("ptp", "DEL", c, netns="", host_ns=host_ns, container_id="m1").ok


# --- failures leave nothing -----------------------------------------------------------

def test_existing_ifname_is_101(cni, pod_ns, host_ns):
    in_ns(pod_ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    res = cni("ptp", "ADD", conf(ipMasq=True), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 101, res.out
    assert h.link_names(pod_ns) == {"lo", "eth0", "peer0"}
    assert h.link_names(host_ns) == {"lo"} and h.nft_rules(host_ns) == []


def test_exhausted_is_102(cni, make_netns, host_ns, tmp_path):
    c = conf(ipMasq=True, ipam=h.host_local(str(tmp_path), rangeStart="10.22.0.9", rangeEnd="10.22.0.9"))
    assert cni("ptp", "ADD", c, netns=make_netns("a"), host_ns=host_ns, container_id="a").ok
    b = make_netns("b")
    res = cni("ptp", "ADD", c, netns=b, host_ns=host_ns, container_id="b")
    assert res.error_code == 102, res.out
    assert h.link_names(b) == {"lo"} and len(h.veths(host_ns)) == 1 and len(h.nft_rules(host_ns)) == 1


def test_host_route_conflict_undoes_everything(cni, make_netns, host_ns, tmp_path):
    # The same pod address twice: the second host route clashes after veth and pod setup.
    c = conf(ipMasq=True)
    assert cni("ptp", "ADD", c, netns=make_netns("a"), host_ns=host_ns, container_id="a").ok
    b = make_netns("b")
    res = cni("ptp", "ADD", c, netns=b, host_ns=host_ns, container_id="b")
    assert res.error_code == 101, res.out
    assert h.link_names(b) == {"lo"} and len(h.veths(host_ns)) == 1
    assert [r["comment"].split(":")[1] for r in h.nft_rules(host_ns)] == ["a"]


@pytest.mark.parametrize("fields, word", [
    ({"ipam": {}}, "ipam"),
    ({"ipam": h.static(gateway=None)}, "gateway"),
    ({"mtu": -1}, "mtu"),
    ({"ipMasq": "yes"}, "ipMasq"),
])
def test_bad_config_is_7(cni, pod_ns, host_ns, fields, word):
    res = cni("ptp", "ADD", {**conf(), **fields}, netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7, res.out
    assert word in res.out["msg"]
    assert h.link_names(pod_ns) == {"lo"} and h.link_names(host_ns) == {"lo"}


# --- CHECK drift ----------------------------------------------------------------------

@pytest.fixture
def added(cni, pod_ns, host_ns):
    c = conf(ipMasq=True)
    res = cni("ptp", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out

    def check() -> tuple[int, str]:
        out = cni("ptp", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host_ns)
        return (0, "") if out.ok else (out.error_code, out.out["msg"])

    assert check() == (0, "")
    return res.out, check


def test_check_drift_pod_route(added, pod_ns):
    _, check = added
    in_ns(pod_ns, "ip", "route", "del", "default")
    assert check()[0] == 103


def test_check_drift_pod_gateway_route(added, pod_ns):
    _, check = added
    in_ns(pod_ns, "ip", "route", "del", "10.22.0.0/24")
    assert check()[0] == 103


def test_check_drift_host_route(added, host_ns):
    out, check = added
    in_ns(host_ns, "ip", "route", "del", "10.22.0.5/32")
    code, msg = check()
    assert code == 103 and "10.22.0.5" in msg


def test_check_drift_host_address(added, host_ns):
    out, check = added
    in_ns(host_ns, "ip", "addr", "flush", "dev", out["interfaces"][0]["name"])
    code, msg = check()
    assert code == 103


def test_check_drift_masq(added, host_ns):
    _, check = added
    h.delete_nft_rules(host_ns, ":c0ffee:eth0")
    code, msg = check()
    assert code == 103 and "ipMasq" in msg


def test_gc(cni, make_netns, host_ns):
    c = conf("1.1.0", ipMasq=True)
    assert cni("ptp", "ADD", c, netns=make_netns("a"), host_ns=host_ns, container_id="keep").ok
    assert cni("ptp", "ADD", {**c, "ipam": h.static("10.22.0.6/24")}, netns=make_netns("b"),
               host_ns=host_ns, container_id="stale").ok
    gc = {**c, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("ptp", "GC", gc, netns="", ifname="", container_id="", host_ns=host_ns).ok
    assert [r["comment"].split(":")[1] for r in h.nft_rules(host_ns)] == ["keep"]
    assert cni("ptp", "STATUS", c, netns="", ifname="", container_id="", host_ns=host_ns).ok
