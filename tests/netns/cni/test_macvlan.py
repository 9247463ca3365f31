"""macvlan plugin in sandbox netns; the master is a veth inside the host netns."""

from __future__ import annotations

import os

import pytest

from tests.cnirun import in_ns
from tests.netns.cni import mainhelp as h
from tulle.kernel import netns

pytestmark = pytest.mark.netns


def conf(version: str = "1.0.0", ipam: dict | None = None, **fields) -> dict:
    return {"cniVersion": version, "name": "mvnet", "type": "macvlan", "master": "ul0",
            "ipam": h.static(routes=[{"dst": "10.70.0.0/16"}]) if ipam is None else ipam, **fields}


def with_prev(c: dict, result: dict) -> dict:
    return {**c, "prevResult": result}


@pytest.fixture
def host(host_ns) -> str:
    """A host netns with an underlay device ul0 (up, 198.51.100.2/24, default route on it)."""
    in_ns(host_ns, "ip", "link", "add", "ul0", "mtu", "1500", "type", "veth", "peer", "name", "ul0p")
    for dev in ("ul0", "ul0p"):
        in_ns(host_ns, "ip", "link", "set", dev, "up")
    in_ns(host_ns, "ip", "addr", "add", "198.51.100.2/24", "dev", "ul0")
    in_ns(host_ns, "ip", "route", "add", "default", "via", "198.51.100.1", "dev", "ul0")
    return host_ns


@pytest.mark.parametrize("version", h.VERSIONS)
def test_add_check_del(cni, pod_ns, host, version):
    c = conf(version, mtu=1400)
    res = cni("macvlan", "ADD", c, netns=pod_ns, host_ns=host)
    assert res.ok, res.out
    out = res.out
    assert [i["name"] for i in out["interfaces"]] == ["eth0"]
    assert out["interfaces"][0]["sandbox"] == pod_ns
    assert out["ips"][0]["interface"] == 0 and out["ips"][0]["address"] == "10.22.0.5/24"
    assert ("mtu" in out["interfaces"][0]) == (version == "1.1.0")
    link = h.link(pod_ns, "eth0")
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "bridge"
    assert link["mtu"] == 1400 and link["address"] == out["interfaces"][0]["mac"]
    assert h.addresses(pod_ns, "eth0") == ["10.22.0.5/24"]
    assert "10.70.0.0/16 via 10.22.0.1 dev eth0" in h.route_lines(pod_ns)
    assert h.sysctl(pod_ns, "net/ipv4/conf/eth0/arp_notify") == "1"
    assert h.link_names(host) == {"lo", "ul0", "ul0p"}
    if version != "0.3.1":
        assert cni("macvlan", "CHECK", with_prev(c, out), netns=pod_ns, host_ns=host).ok
    assert cni("macvlan", "DEL", c, netns=pod_ns, host_ns=host).ok
    assert h.link_names(pod_ns) == {"lo"}
    assert cni("macvlan", "DEL", c, netns=pod_ns, host_ns=host).ok


def test_two_pods_ping_in_bridge_mode(cni, make_netns, host):
    a, b = make_netns("a"), make_netns("b")
    assert cni("macvlan", "ADD", conf(), netns=a, host_ns=host, container_id="a").ok
    assert cni("macvlan", "ADD", conf(ipam=h.static("10.22.0.6/24")), netns=b, host_ns=host,
               container_id="b").ok
    assert h.ping(a, "10.22.0.6") and h.ping(b, "10.22.0.5")


def test_default_master_mode_mac_and_l2(cni, pod_ns, host):
    c = {k: v for k, v in conf(mode="private", mac="02:12:34:56:78:9a", ipam={}).items() if k != "master"}
    res = cni("macvlan", "ADD", c, netns=pod_ns, host_ns=host)
    assert res.ok, res.out
    link = h.link(pod_ns, "eth0")
    assert link["linkinfo"]["info_data"]["mode"] == "private"
    assert link["address"] == "02:12:34:56:78:9a" and "UP" in link["flags"]
    assert "ips" not in res.out
    assert cni("macvlan", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host).ok


def test_host_device_named_like_the_pod_interface(cni, pod_ns, host):
    in_ns(host, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    assert cni("macvlan", "ADD", conf(), netns=pod_ns, host_ns=host).ok


def test_del_without_netns_releases_lease(cni, make_netns, host, tmp_path):
    pod = make_netns("gone")
    c = conf(ipam=h.host_local(str(tmp_path)))
    assert cni("macvlan", "ADD", c, netns=pod, host_ns=host).ok
    netns.remove(os.path.basename(pod))
    in_ns(host, "ip", "link", "del", "ul0")  # even the master is gone: DEL still works
    assert cni("macvlan", "DEL", c, netns=pod, host_ns=host).ok
    assert not [f for f in os.listdir(tmp_path / "mvnet") if f[0].isdigit()]


# --- failures -----------------------------------------------------------------------

def test_missing_master_is_104(cni, pod_ns, host, tmp_path):
    res = cni("macvlan", "ADD", conf(master="nope0", ipam=h.host_local(str(tmp_path))), netns=pod_ns, host_ns=host)
    assert res.error_code == 104 and "nope0" in res.out["msg"], res.out
    assert h.link_names(pod_ns) == {"lo"}
    assert not (tmp_path / "mvnet").exists() or not [f for f in os.listdir(tmp_path / "mvnet") if f[0].isdigit()]


def test_no_default_route_is_104(cni, pod_ns, host_ns):
    c = {k: v for k, v in conf().items() if k != "master"}
    res = cni("macvlan", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 104 and "default route" in res.out["msg"], res.out


def test_mtu_above_master_is_7(cni, pod_ns, host):
    res = cni("macvlan", "ADD", conf(mtu=9000), netns=pod_ns, host_ns=host)
    assert res.error_code == 7 and "1500" in res.out["msg"], res.out
    assert h.link_names(pod_ns) == {"lo"} and h.link_names(host) == {"lo", "ul0", "ul0p"}


@pytest.mark.parametrize("fields, word", [
    ({"mode": "source"}, "mode"),
    ({"mac": "01:00:00:00:00:01"}, "mac"),
    ({"mtu": "x"}, "mtu"),
])
def test_bad_config_is_7(cni, pod_ns, host, fields, word):
    res = cni("macvlan", "ADD", conf(**fields), netns=pod_ns, host_ns=host)
    assert res.error_code == 7 and word in res.out["msg"], res.out
    assert h.link_names(pod_ns) == {"lo"} and h.link_names(host) == {"lo", "ul0", "ul0p"}


def test_existing_ifname_is_101(cni, pod_ns, host, tmp_path):
    in_ns(pod_ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    res = cni("macvlan", "ADD", conf(ipam=h.host_local(str(tmp_path))), netns=pod_ns, host_ns=host)
    assert res.error_code == 101, res.out
    assert h.link_names(pod_ns) == {"lo", "eth0", "peer0"} and h.link_names(host) == {"lo", "ul0", "ul0p"}


def test_exhausted_is_102_and_leaves_no_device(cni, make_netns, host, tmp_path):
    c = conf(ipam=h.host_local(str(tmp_path), rangeStart="10.22.0.9", rangeEnd="10.22.0.9"))
    assert cni("macvlan", "ADD", c, netns=make_netns("a"), host_ns=host, container_id="a").ok
    b = make_netns("b")
    res = cni("macvlan", "ADD", c, netns=b, host_ns=host, container_id="b")
    assert res.error_code == 102, res.out
    assert h.link_names(b) == {"lo"} and h.link_names(host) == {"lo", "ul0", "ul0p"}


def test_late_failure_removes_device_and_lease(cni, pod_ns, host, tmp_path):
    # A route via a gateway outside the pod's subnet fails after the device is in the pod.
    ipam = {**h.host_local(str(tmp_path)), "routes": [{"dst": "10.80.0.0/16", "gw": "10.99.0.1"}]}
    res = cni("macvlan", "ADD", conf(ipam=ipam), netns=pod_ns, host_ns=host)
    assert res.error_code == 100, res.out
    assert h.link_names(pod_ns) == {"lo"}
    assert not [f for f in os.listdir(tmp_path / "mvnet") if f[0].isdigit()]


# --- CHECK drift ----------------------------------------------------------------------

def test_check_drift(cni, pod_ns, host):
    c = conf()
    res = cni("macvlan", "ADD", c, netns=pod_ns, host_ns=host)
    assert res.ok
    check = lambda: cni("macvlan", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host)  # noqa: E731
    assert check().ok
    in_ns(pod_ns, "ip", "route", "del", "10.70.0.0/16")
    assert check().error_code == 103
    in_ns(pod_ns, "ip", "route", "add", "10.70.0.0/16", "via", "10.22.0.1")
    assert check().ok
    assert cni("macvlan", "CHECK", with_prev({**c, "mode": "vepa"}, res.out), netns=pod_ns,
               host_ns=host).error_code == 103
    in_ns(pod_ns, "ip", "addr", "flush", "dev", "eth0")
    assert check().error_code == 103


def test_gc_and_status(cni, make_netns, host, tmp_path):
    c = conf("1.1.0", ipam=h.host_local(str(tmp_path)))
    for cid in ("keep", "stale"):
        assert cni("macvlan", "ADD", c, netns=make_netns(cid), host_ns=host, container_id=cid).ok
    gc = {**c, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("macvlan", "GC", gc, netns="", ifname="", container_id="", host_ns=host).ok
    assert [f for f in os.listdir(tmp_path / "mvnet") if f[0].isdigit()] == ["10.22.0.2"]
    assert cni("macvlan", "STATUS", c, netns="", ifname="", container_id="", host_ns=host).ok
