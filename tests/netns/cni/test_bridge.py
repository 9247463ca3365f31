"""bridge plugin in sandbox netns: happy path, traffic, failures that leave
nothing behind, idempotent DEL, CHECK drift, GC."""

from __future__ import annotations

import os

import pytest

from tests.cnirun import in_ns
from tests.netns.cni import mainhelp as h
from tulle.kernel import netns

pytestmark = pytest.mark.netns


def conf(version: str = "1.0.0", ipam: dict | None = None, **fields) -> dict:
    return {"cniVersion": version, "name": "brnet", "type": "bridge", "bridge": "tbr0",
            "isGateway": True, "ipam": h.static() if ipam is None else ipam, **fields}


def with_prev(c: dict, result: dict) -> dict:
    return {**c, "prevResult": result}


@pytest.mark.parametrize("version", h.VERSIONS)
def test_add_check_del(cni, pod_ns, host_ns, version):
    c = conf(version, ipam=h.static(routes=[{"dst": "0.0.0.0/0"}]), mtu=1400)
    res = cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    out = res.out
    assert out["cniVersion"] == version
    names = [i["name"] for i in out["interfaces"]]
    assert names[0] == "tbr0" and names[1].startswith("veth") and len(names[1]) == 12 and names[2] == "eth0"
    assert out["interfaces"][2]["sandbox"] == pod_ns and "sandbox" not in out["interfaces"][1]
    ip = out["ips"][0]
    assert ip["address"] == "10.22.0.5/24" and ip["gateway"] == "10.22.0.1" and ip["interface"] == 2
    assert ("version" in ip) == (version in ("0.3.1", "0.4.0"))
    assert ("mtu" in out["interfaces"][2]) == (version == "1.1.0")
    assert out["routes"] == [{"dst": "0.0.0.0/0"}]

    # pod side
    assert h.addresses(pod_ns, "eth0") == ["10.22.0.5/24"]
    assert {"dst": "default", "gateway": "10.22.0.1"}.items() <= h.routes(pod_ns)[0].items()
    assert h.link(pod_ns, "eth0")["mtu"] == 1400
    assert h.link(pod_ns, "eth0")["address"] == out["interfaces"][2]["mac"]
    assert h.sysctl(pod_ns, "net/ipv6/conf/eth0/accept_dad") == "0"
    assert h.sysctl(pod_ns, "net/ipv4/conf/eth0/arp_notify") == "1"
    # host side
    assert h.addresses(host_ns, "tbr0") == ["10.22.0.1/24"]
    host_veth = h.link(host_ns, names[1])
    assert host_veth["master"] == "tbr0" and host_veth["mtu"] == 1400
    assert h.link(host_ns, "tbr0")["address"] == out["interfaces"][0]["mac"]
    assert h.sysctl(host_ns, "net.ipv4.ip_forward") == "1"

    if version != "0.3.1":
        assert cni("bridge", "CHECK", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok
    assert cni("bridge", "DEL", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok
    assert "eth0" not in h.link_names(pod_ns)
    assert h.veths(host_ns) == []
    assert cni("bridge", "DEL", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok  # idempotent


def test_two_pods_ping_each_other_and_gateway(cni, make_netns, host_ns):
    pods = [make_netns("p1"), make_netns("p2")]
    for pod, addr in zip(pods, ("10.22.0.5/24", "10.22.0.6/24")):
        res = cni("bridge", "ADD", conf(ipam=h.static(addr), mtu=1400), netns=pod, host_ns=host_ns,
                  container_id=f"c{addr[-4]}")
        assert res.ok, res.out
    assert h.ping(pods[0], "10.22.0.6")
    assert h.ping(pods[1], "10.22.0.5")
    assert h.ping(pods[0], "10.22.0.1")
    assert len(h.veths(host_ns)) == 2


def test_l2_only(cni, pod_ns, host_ns):
    c = conf(ipam={})
    res = cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    assert "ips" not in res.out and len(res.out["interfaces"]) == 3
    assert "UP" in h.link(pod_ns, "eth0")["flags"]
    assert h.addresses(pod_ns, "eth0") == [] and h.addresses(host_ns, "tbr0") == []
    assert cni("bridge", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host_ns).ok
    assert cni("bridge", "DEL", c, netns=pod_ns, host_ns=host_ns).ok


def test_default_gateway_mac_and_dad(cni, pod_ns, host_ns):
    c = conf(isDefaultGateway=True, enabledad=True, runtimeConfig={"mac": "02:11:22:33:44:55"})
    res = cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    assert res.out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}]
    assert res.out["interfaces"][2]["mac"] == "02:11:22:33:44:55"
    assert h.link(pod_ns, "eth0")["address"] == "02:11:22:33:44:55"
    assert h.sysctl(pod_ns, "net/ipv6/conf/eth0/accept_dad") == "1"
    assert any(r["dst"] == "default" and r.get("gateway") == "10.22.0.1" for r in h.routes(pod_ns))


def test_mac_from_cni_args(cni, pod_ns, host_ns):
    res = cni("bridge", "ADD", conf(), netns=pod_ns, host_ns=host_ns,
              args="IgnoreUnknown=1;MAC=02:aa:bb:cc:dd:ee")
    assert res.ok, res.out
    assert h.link(pod_ns, "eth0")["address"] == "02:aa:bb:cc:dd:ee"


def test_gateway_address_without_isgateway_stays_off_the_bridge(cni, pod_ns, host_ns):
    res = cni("bridge", "ADD", conf(isGateway=False, ipam=h.static(gateway=None)), netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    assert "gateway" not in res.out["ips"][0]
    assert h.addresses(host_ns, "tbr0") == []


def test_hairpin_and_promisc(cni, make_netns, host_ns):
    a, b = make_netns("a"), make_netns("b")
    res = cni("bridge", "ADD", conf(hairpinMode=True), netns=a, host_ns=host_ns)
    assert res.ok, res.out
    port = h.link(host_ns, res.out["interfaces"][1]["name"])
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    res = cni("bridge", "ADD", conf(bridge="tbr1", promiscMode=True, ipam=h.static("10.23.0.5/24", "10.23.0.1")),
              netns=b, host_ns=host_ns)
    assert res.ok, res.out
    assert "PROMISC" in h.link(host_ns, "tbr1")["flags"]


# --- ipMasq and macspoofchk -------------------------------------------------------

def test_ipmasq_rules_follow_the_attachment(cni, pod_ns, host_ns):
    c = conf(ipMasq=True, macspoofchk=True)
    res = cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns, container_id="masq1")
    assert res.ok, res.out
    rules = [r for r in h.nft_rules(host_ns) if ":masq1:eth0" in r.get("comment", "")]
    assert {(r["family"], r["table"]) for r in rules} == {("inet", "tulle-cni-masq"),
                                                          ("bridge", "tulle-cni-macspoof")}
    assert cni("bridge", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host_ns, container_id="masq1").ok
    # DEL without the netns and without prevResult still removes every rule
    assert cni("bridge", "DEL", c, netns="", host_ns=host_ns, container_id="masq1").ok
    assert not [r for r in h.nft_rules(host_ns) if "masq1" in r.get("comment", "")]


def test_del_after_netns_is_gone(cni, make_netns, host_ns):
    pod = make_netns("gone")
    c = conf(ipMasq=True)
    assert cni("bridge", "ADD", c, netns=pod, host_ns=host_ns).ok
    netns.remove(os.path.basename(pod))
    assert cni("bridge", "DEL", c, netns=pod, host_ns=host_ns).ok
    assert cni("bridge", "DEL", c, netns=pod, host_ns=host_ns).ok
    assert h.nft_rules(host_ns) == []
    assert h.veths(host_ns) == []


def test_macspoofchk_drops_a_forged_source_mac(cni, make_netns, host_ns):
    a, b = make_netns("a"), make_netns("b")
    assert cni("bridge", "ADD", conf(macspoofchk=True), netns=a, host_ns=host_ns, container_id="a").ok
    assert cni("bridge", "ADD", conf(ipam=h.static("10.22.0.6/24")), netns=b, host_ns=host_ns,
               container_id="b").ok
    assert h.ping(a, "10.22.0.6")
    in_ns(a, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
    in_ns(a, "ip", "neigh", "flush", "all")
    in_ns(b, "ip", "neigh", "flush", "all")
    assert not h.ping(a, "10.22.0.6")


# --- failures leave nothing --------------------------------------------------------

def _nothing_left(pod_ns: str, host_ns: str, pod_links: set[str] = frozenset({"lo"})) -> None:
    assert h.link_names(pod_ns) == set(pod_links)
    assert h.veths(host_ns) == []
    assert h.nft_rules(host_ns) == []


def test_existing_ifname_is_101_and_untouched(cni, pod_ns, host_ns):
    in_ns(pod_ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    res = cni("bridge", "ADD", conf(ipMasq=True), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 101, res.out
    assert "eth0" in res.out["msg"]
    _nothing_left(pod_ns, host_ns, {"lo", "eth0", "peer0"})
    assert h.link_names(host_ns) == {"lo"}


def test_conflicting_bridge_address_undoes_everything(cni, pod_ns, host_ns):
    in_ns(host_ns, "ip", "link", "add", "tbr0", "type", "bridge")
    in_ns(host_ns, "ip", "addr", "add", "10.99.0.1/24", "dev", "tbr0")
    res = cni("bridge", "ADD", conf(ipMasq=True, macspoofchk=True), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7, res.out
    assert "forceAddress" in res.out["msg"]
    _nothing_left(pod_ns, host_ns)
    assert h.addresses(host_ns, "tbr0") == ["10.99.0.1/24"]  # a bridge we did not make is left alone


def test_force_address_replaces_the_old_gateway(cni, pod_ns, host_ns):
    in_ns(host_ns, "ip", "link", "add", "tbr0", "type", "bridge")
    in_ns(host_ns, "ip", "addr", "add", "10.99.0.1/24", "dev", "tbr0")
    res = cni("bridge", "ADD", conf(forceAddress=True), netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    assert h.addresses(host_ns, "tbr0") == ["10.22.0.1/24"]


def test_kernel_failure_after_ipam_undoes_everything(cni, pod_ns, host_ns):
    # "tbr0" exists but is no bridge: found after the IPAM lease was taken
    in_ns(host_ns, "ip", "link", "add", "tbr0", "type", "veth", "peer", "name", "peer0")
    res = cni("bridge", "ADD", conf(), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7 and "not a bridge" in res.out["msg"], res.out
    _nothing_left(pod_ns, host_ns)


def test_vlan_failure_leaves_no_bridge(cni, pod_ns, host_ns):
    # This kernel has no bridge VLAN filtering: the bridge cannot be made (code 100).
    # On a kernel with it, the ADD succeeds; both ways nothing half-made may stay.
    res = cni("bridge", "ADD", conf(isGateway=False, vlan=10, ipam={}), netns=pod_ns, host_ns=host_ns)
    if res.ok:
        assert cni("bridge", "DEL", conf(isGateway=False, vlan=10, ipam={}), netns=pod_ns, host_ns=host_ns).ok
        return
    assert res.error_code == 100, res.out
    _nothing_left(pod_ns, host_ns)
    assert h.link_names(host_ns) == {"lo"}


@pytest.mark.parametrize("fields, word", [
    ({"mtu": "big"}, "mtu"),
    ({"mtu": 20}, "mtu"),
    ({"vlan": 5000}, "vlan"),
    ({"hairpinMode": True, "promiscMode": True}, "hairpinMode"),
    ({"bridge": "a/b"}, "bridge"),
    ({"runtimeConfig": {"mac": "zz"}}, "runtimeConfig.mac"),
    ({"ipam": {"type": "static", "addresses": [{"address": "10.22.0.300/24"}]}}, "address"),
])
def test_bad_config_is_7_and_leaves_nothing(cni, pod_ns, host_ns, fields, word):
    res = cni("bridge", "ADD", {**conf(), **fields}, netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7, res.out
    assert word in res.out["msg"]
    _nothing_left(pod_ns, host_ns)
    assert h.link_names(host_ns) == {"lo"}


def test_missing_netns_is_3(cni, host_ns):
    res = cni("bridge", "ADD", conf(), netns="/run/netns/tulle-nope", host_ns=host_ns)
    assert res.error_code == 3


@pytest.mark.parametrize("path", ["/proc/self/ns/mnt", "/proc/self/ns/uts"])
def test_a_namespace_that_is_not_a_netns_is_3_before_any_work(cni, host_ns, path):
    """nsfs holds every kind of namespace: a mount namespace used to pass the check and
    fail at veth creation (code 100), after the bridge had been made."""
    res = cni("bridge", "ADD", conf(ipMasq=True), netns=path, host_ns=host_ns)
    assert res.error_code == 3 and "not a network namespace" in res.out["msg"], res.out
    assert h.link_names(host_ns) == {"lo"} and h.nft_rules(host_ns) == []


def test_ifname_of_16_bytes_is_4_before_any_work(cni, pod_ns, host_ns):
    res = cni("bridge", "ADD", conf(), netns=pod_ns, host_ns=host_ns, ifname="é" * 8)  # 8 chars, 16 bytes
    assert res.error_code == 4 and "CNI_IFNAME" in res.out["msg"], res.out
    _nothing_left(pod_ns, host_ns)
    assert h.link_names(host_ns) == {"lo"}


# --- CHECK drift ---------------------------------------------------------------------

@pytest.fixture
def added(cni, pod_ns, host_ns):
    c = conf(ipMasq=True, macspoofchk=True, ipam=h.static(routes=[{"dst": "10.50.0.0/16"}]))
    res = cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out

    def check() -> tuple[int, str]:
        out = cni("bridge", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host_ns)
        return out.error_code or 0, (out.out or {}).get("msg", "") if not out.ok else ""

    assert check() == (0, "")
    return res.out, check


def test_check_drift_address(added, pod_ns):
    _, check = added
    in_ns(pod_ns, "ip", "addr", "del", "10.22.0.5/24", "dev", "eth0")
    code, msg = check()
    assert code == 103 and "10.22.0.5" in msg


def test_check_drift_route(added, pod_ns):
    _, check = added
    in_ns(pod_ns, "ip", "route", "del", "10.50.0.0/16")
    code, msg = check()
    assert code == 103 and "10.50.0.0/16" in msg


def test_check_drift_masq_rule(added, host_ns):
    _, check = added
    assert h.delete_nft_rules(host_ns, ":c0ffee:eth0") == 2
    code, msg = check()
    assert code == 103 and ("ipMasq" in msg or "macspoofchk" in msg)


def test_check_drift_port_off_bridge(added, host_ns):
    out, check = added
    in_ns(host_ns, "ip", "link", "set", out["interfaces"][1]["name"], "nomaster")
    code, msg = check()
    assert code == 103 and "not a port" in msg


def test_check_drift_bridge_gateway(added, host_ns):
    _, check = added
    in_ns(host_ns, "ip", "addr", "flush", "dev", "tbr0")
    code, msg = check()
    assert code == 103 and "gateway" in msg


def test_check_drift_mac(added, pod_ns):
    _, check = added
    in_ns(pod_ns, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:01")
    code, msg = check()
    assert code == 103 and "MAC" in msg


def test_check_without_prev_result_is_7(cni, pod_ns, host_ns):
    c = conf()
    assert cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns).ok
    assert cni("bridge", "CHECK", c, netns=pod_ns, host_ns=host_ns).error_code == 7


# --- GC and STATUS -------------------------------------------------------------------

def test_gc_removes_rules_of_stale_attachments(cni, make_netns, host_ns):
    a, b = make_netns("a"), make_netns("b")
    c = conf("1.1.0", ipMasq=True, macspoofchk=True)
    assert cni("bridge", "ADD", c, netns=a, host_ns=host_ns, container_id="keep").ok
    assert cni("bridge", "ADD", {**c, "ipam": h.static("10.22.0.6/24")}, netns=b, host_ns=host_ns,
               container_id="stale").ok
    # another network's rules are not ours to collect
    other = {**c, "name": "othernet", "bridge": "tbr9", "ipam": h.static("10.30.0.5/24", "10.30.0.1")}
    c3 = make_netns("c")
    assert cni("bridge", "ADD", other, netns=c3, host_ns=host_ns, container_id="stale").ok
    gc = {**c, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    res = cni("bridge", "GC", gc, netns="", ifname="", container_id="", host_ns=host_ns)
    assert res.ok, res.out
    comments = [r.get("comment", "") for r in h.nft_rules(host_ns)]
    assert sum(":keep:eth0" in x for x in comments) == 2
    assert sum(":stale:eth0" in x for x in comments) == 2  # only othernet's remain
    assert len(comments) == 4


def test_status(cni, host_ns):
    assert cni("bridge", "STATUS", conf("1.1.0"), netns="", ifname="", container_id="", host_ns=host_ns).ok


# --- with host-local: leases are released on every failure and on DEL/GC -------------

def leases(data_dir) -> list[str]:
    d = data_dir / "brnet"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit())


def test_host_local_exhausted_is_102_and_leaves_nothing(cni, make_netns, host_ns, tmp_path):
    a, b = make_netns("a"), make_netns("b")
    c = conf(ipMasq=True, ipam=h.host_local(str(tmp_path), rangeStart="10.22.0.2", rangeEnd="10.22.0.2"))
    res = cni("bridge", "ADD", c, netns=a, host_ns=host_ns, container_id="a")
    assert res.ok, res.out
    assert res.out["ips"][0]["address"] == "10.22.0.2/24" and leases(tmp_path) == ["10.22.0.2"]
    res = cni("bridge", "ADD", c, netns=b, host_ns=host_ns, container_id="b")
    assert res.error_code == 102, res.out
    assert h.link_names(b) == {"lo"} and len(h.veths(host_ns)) == 1
    assert len(h.nft_rules(host_ns)) == 1


def test_host_local_lease_released_when_add_fails_late(cni, pod_ns, host_ns, tmp_path):
    in_ns(host_ns, "ip", "link", "add", "tbr0", "type", "bridge")
    in_ns(host_ns, "ip", "addr", "add", "10.99.0.1/24", "dev", "tbr0")
    res = cni("bridge", "ADD", conf(ipMasq=True, ipam=h.host_local(str(tmp_path))), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7, res.out
    assert leases(tmp_path) == []
    _nothing_left(pod_ns, host_ns)


def test_host_local_del_without_netns_or_prev_result_releases(cni, make_netns, host_ns, tmp_path):
    pod = make_netns("gone")
    c = conf(ipMasq=True, ipam=h.host_local(str(tmp_path)))
    res = cni("bridge", "ADD", c, netns=pod, host_ns=host_ns)
    assert res.ok, res.out
    assert leases(tmp_path) == ["10.22.0.2"]
    netns.remove(os.path.basename(pod))
    assert cni("bridge", "DEL", c, netns="", host_ns=host_ns).ok
    assert leases(tmp_path) == [] and h.nft_rules(host_ns) == []
    assert cni("bridge", "DEL", c, netns="", host_ns=host_ns).ok


def test_host_local_gc_releases_stale_leases(cni, make_netns, host_ns, tmp_path):
    c = conf("1.1.0", ipMasq=True, ipam=h.host_local(str(tmp_path)))
    for cid in ("keep", "stale"):
        assert cni("bridge", "ADD", c, netns=make_netns(cid), host_ns=host_ns, container_id=cid).ok
    assert leases(tmp_path) == ["10.22.0.2", "10.22.0.3"]
    gc = {**c, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("bridge", "GC", gc, netns="", ifname="", container_id="", host_ns=host_ns).ok
    assert leases(tmp_path) == ["10.22.0.2"]
    assert [r["comment"].split(":")[1] for r in h.nft_rules(host_ns)] == ["keep"]


def test_ipmasq_lets_the_pod_reach_a_network_that_has_no_route_back(cni, make_netns, pod_ns, host_ns):
    ext = make_netns("ext")
    in_ns(host_ns, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "ext0", "netns", ext)
    in_ns(host_ns, "ip", "addr", "add", "198.51.100.2/24", "dev", "up0")
    in_ns(host_ns, "ip", "link", "set", "up0", "up")
    in_ns(ext, "ip", "addr", "add", "198.51.100.9/24", "dev", "ext0")
    in_ns(ext, "ip", "link", "set", "ext0", "up")
    plain = conf(ipam=h.static(routes=[{"dst": "198.51.100.0/24"}]))
    assert cni("bridge", "ADD", plain, netns=pod_ns, host_ns=host_ns).ok
    assert not h.ping(pod_ns, "198.51.100.9")
    assert cni("bridge", "DEL", plain, netns=pod_ns, host_ns=host_ns).ok
    c = {**plain, "ipMasq": True}
    assert cni("bridge", "ADD", c, netns=pod_ns, host_ns=host_ns).ok
    assert h.ping(pod_ns, "198.51.100.9")  # ext has no route to 10.22.0.0/24: only SNAT gets replies home
    assert h.ping(pod_ns, "10.22.0.1")     # the subnet itself is not masqueraded (the rule says so)
    assert cni("bridge", "DEL", c, netns=pod_ns, host_ns=host_ns).ok
