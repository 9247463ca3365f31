from __future__ import annotations

import os

import pytest

from tests.cnirun import in_ns, ip_json
from tests.netns.cni.pods import make_pod

pytestmark = pytest.mark.netns

MAC = "0a:58:0a:4d:00:99"
SYSCTL = "net.ipv4.conf.eth0.rp_filter"


@pytest.fixture
def pod(host_ns, pod_ns):
    return make_pod(host_ns, pod_ns)


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "tuning")


def conf(prev, data_dir, **fields) -> dict:
    c = {"cniVersion": "1.0.0", "name": "tnet", "type": "tuning", "dataDir": data_dir, **fields}
    if prev is not None:
        c["prevResult"] = prev
    return c


def link(pod) -> dict:
    return ip_json(pod.pod_ns, "-d", "link", "show", pod.ifname)[0]


def sysctl(pod, key=SYSCTL) -> str:
    return in_ns(pod.pod_ns, "sysctl", "-n", key).strip()


def test_add_check_del_restores(cni, pod, data_dir):
    before = link(pod)
    rp_before = sysctl(pod)
    c = conf(pod.prev_result, data_dir, mac=MAC, mtu=1400, promisc=True, allmulti=True, txQLen=123,
             sysctl={SYSCTL: "2", "net/ipv4/conf/eth0/arp_ignore": "1"})
    res = cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    eth0 = res.out["interfaces"][1]
    assert eth0["mac"] == MAC and "mtu" not in eth0  # mtu is not part of a 1.0.0 result
    now = link(pod)
    assert now["address"] == MAC and now["mtu"] == 1400 and now["txqlen"] == 123
    assert "PROMISC" in now["flags"] and "ALLMULTI" in now["flags"]
    assert sysctl(pod) == "2" and sysctl(pod, "net.ipv4.conf.eth0.arp_ignore") == "1"
    assert os.listdir(data_dir) == ["c0ffee-eth0.json"]
    c["prevResult"] = res.out
    assert cni("tuning", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok

    assert cni("tuning", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    after = link(pod)
    for key in ("address", "mtu", "flags", "txqlen"):
        assert after[key] == before[key], key
    assert sysctl(pod) == rp_before
    assert os.listdir(data_dir) == []
    assert cni("tuning", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok


def test_result_mtu_in_1_1_0(cni, pod, data_dir):
    c = conf({**pod.prev_result, "cniVersion": "1.1.0"}, data_dir, mtu=1300)
    c["cniVersion"] = "1.1.0"
    res = cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    assert res.out["interfaces"][1]["mtu"] == 1300


def test_mac_sources_precedence(cni, pod, data_dir):
    c = conf(pod.prev_result, data_dir, mac="0a:00:00:00:00:01")
    res = cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns, args="MAC=0a:00:00:00:00:02")
    assert res.ok and link(pod)["address"] == "0a:00:00:00:00:02"
    assert cni("tuning", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    c["runtimeConfig"] = {"mac": "0a:00:00:00:00:03"}
    res = cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns, args="MAC=0a:00:00:00:00:02")
    assert res.ok and link(pod)["address"] == "0a:00:00:00:00:03"
    assert res.out["interfaces"][1]["mac"] == "0a:00:00:00:00:03"


def test_del_without_netns_drops_state(cni, pod, data_dir):
    c = conf(pod.prev_result, data_dir, mtu=1400)
    assert cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    bare = conf(None, data_dir)
    assert cni("tuning", "DEL", bare, netns="/run/netns/tulle-gone", host_ns=pod.host_ns).ok
    assert os.listdir(data_dir) == []


@pytest.mark.parametrize("fields", [
    {"sysctl": {"net/../../kernel/hostname": "x"}},
    {"sysctl": {"kernel.hostname": "x"}},
    {"sysctl": {"net..ipv4": "1"}},
    {"sysctl": {"net.ipv4.conf.eth0.no_such_thing": "1"}},
    {"sysctl": {SYSCTL: ["1"]}},
    {"sysctl": "net.ipv4.ip_forward=1"},
    {"mac": "not-a-mac"},
    {"mac": "01:00:5e:00:00:01"},
    {"mtu": 10},
    {"mtu": "1400"},
    {"promisc": "yes"},
    {"txQLen": -1},
    {"dataDir": "relative/dir"},
])
def test_bad_config_is_code_7_and_changes_nothing(cni, pod, data_dir, fields):
    before = link(pod)
    res = cni("tuning", "ADD", conf(pod.prev_result, data_dir, **{"mtu": 1400, **fields}),
              netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 7, res.out
    assert link(pod)["mtu"] == before["mtu"]
    assert not os.path.exists(data_dir) or os.listdir(data_dir) == []


def test_missing_prev_result_is_code_7(cni, pod, data_dir):
    res = cni("tuning", "ADD", conf(None, data_dir, mtu=1400), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 7


def test_failed_step_restores_everything(cni, pod, data_dir):
    rp_before = sysctl(pod)
    # the second sysctl write fails after the first one succeeded
    c = conf(pod.prev_result, data_dir, sysctl={SYSCTL: "2", "net.ipv4.conf.eth0.forwarding": "abc"})
    res = cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 100, res.out
    assert sysctl(pod) == rp_before
    assert os.listdir(data_dir) == []


def test_check_detects_drift(cni, pod, data_dir):
    c = conf(pod.prev_result, data_dir, mtu=1400, sysctl={SYSCTL: "2"})
    res = cni("tuning", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    c["prevResult"] = res.out
    assert cni("tuning", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    in_ns(pod.pod_ns, "sysctl", "-q", "-w", f"{SYSCTL}=0")
    assert cni("tuning", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    in_ns(pod.pod_ns, "sysctl", "-q", "-w", f"{SYSCTL}=2")
    in_ns(pod.pod_ns, "ip", "link", "set", "eth0", "mtu", "1450")
    assert cni("tuning", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103


def test_same_as_reference(cni, ref_cni, make_netns, tmp_path):
    ours = make_pod(make_netns("h1"), make_netns("p1"))
    theirs = make_pod(make_netns("h2"), make_netns("p2"))
    fields = {"mac": MAC, "mtu": 1400, "promisc": True, "sysctl": {SYSCTL: "2"}}
    a = cni("tuning", "ADD", conf(ours.prev_result, str(tmp_path / "a"), **fields), netns=ours.pod_ns,
            host_ns=ours.host_ns)
    b = ref_cni("tuning", "ADD", conf(theirs.prev_result, str(tmp_path / "b"), **fields), netns=theirs.pod_ns,
                host_ns=theirs.host_ns)
    assert a.ok and b.ok, (a.out, b.out)
    for r in (a.out, b.out):
        r["interfaces"][1].pop("sandbox")
        r["interfaces"][0].pop("mac")
    assert a.out == b.out
    la, lb = link(ours), link(theirs)
    for key in ("address", "mtu", "flags", "txqlen"):
        assert la[key] == lb[key], key
    assert sysctl(ours) == sysctl(theirs) == "2"
