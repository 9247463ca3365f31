from __future__ import annotations

import pytest

from tests.cnirun import in_ns
from tests.netns.cni.pods import EXT_CLIENT, Server, add_client, make_pod, talk
from tulle.cni import attachment
from tulle.cni.plugins.meta import firewall
from tulle.kernel import netns, nft

pytestmark = pytest.mark.netns

BASE = {"cniVersion": "1.0.0", "name": "fwnet", "type": "firewall"}


def conf(prev, **fields) -> dict:
    c = {**BASE, **fields}
    if prev is not None:
        c["prevResult"] = prev
    return c


def listing(ns):
    return netns.run_in(ns, nft.list_table, firewall.FAMILY, firewall.TABLE)


def pod_rules(ns) -> list[nft.Rule]:
    return nft.rules(listing(ns), firewall.PODS)


def both_ways(pod, client) -> tuple[str, str]:
    with Server(pod.pod_ns, 80), Server(client, 81):
        return talk(client, pod.ip, 80), talk(pod.pod_ns, str(EXT_CLIENT.ip), 81)


def test_add_check_del(cni, lab):
    pod, client = lab
    c = conf(pod.prev_result)
    res = cni("firewall", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    assert res.out == pod.prev_result
    tag = attachment.tag("fwnet", "c0ffee", "eth0")
    rules = pod_rules(pod.host_ns)
    assert [r.comment for r in rules] == [tag, tag]
    assert [r.expr for r in rules] == firewall.pod_rules([__import__("ipaddress").ip_address(pod.ip)])
    assert both_ways(pod, client) == (f"pong:ping:{EXT_CLIENT.ip}", f"pong:ping:{pod.ip}")
    assert cni("firewall", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    assert cni("firewall", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    assert pod_rules(pod.host_ns) == []
    assert cni("firewall", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    assert cni("firewall", "DEL", conf(None), netns="/run/netns/tulle-gone", host_ns=pod.host_ns).ok


def test_del_without_prev_result_removes_only_its_rules(cni, lab, make_netns):
    pod, _ = lab
    assert cni("firewall", "ADD", conf(pod.prev_result), netns=pod.pod_ns, host_ns=pod.host_ns).ok
    other = make_pod(pod.host_ns, make_netns("p2"), veth="vfw2", net=1)
    assert cni("firewall", "ADD", conf(other.prev_result), netns=other.pod_ns, container_id="c2",
               host_ns=pod.host_ns).ok
    assert cni("firewall", "DEL", conf(None), netns="", host_ns=pod.host_ns).ok
    left = pod_rules(pod.host_ns)
    assert {r.comment for r in left} == {attachment.tag("fwnet", "c2", "eth0")} and len(left) == 2


def test_admin_chain_is_kept_and_runs_first(cni, lab, make_netns):
    pod, client = lab
    assert cni("firewall", "ADD", conf(pod.prev_result), netns=pod.pod_ns, host_ns=pod.host_ns).ok
    in_ns(pod.host_ns, "nft", "add", "rule", "inet", firewall.TABLE, "admin", "ip", "saddr",
          str(EXT_CLIENT.ip), "tcp", "dport", "80", "drop")
    other = make_pod(pod.host_ns, make_netns("p2"), veth="vfw2", net=1)
    assert cni("firewall", "ADD", conf(other.prev_result), netns=other.pod_ns, container_id="c2",
               host_ns=pod.host_ns).ok
    assert len(nft.rules(listing(pod.host_ns), "admin")) == 1  # a later ADD did not flush it
    inbound, outbound = both_ways(pod, client)
    assert inbound.startswith("ERR") and outbound.startswith("pong")
    assert cni("firewall", "CHECK", conf(pod.prev_result), netns=pod.pod_ns, host_ns=pod.host_ns).ok


@pytest.mark.parametrize("fields,code", [
    ({"backend": "bogus"}, 7),
    ({"ingressPolicy": "closed"}, 7),
    ({"ingressPolicy": "same-bridge"}, 2),
    ({"backend": "firewalld"}, 2),
    ({"iptablesAdminChainName": 5}, 7),
])
def test_bad_config(cni, lab, fields, code):
    pod, _ = lab
    res = cni("firewall", "ADD", conf(pod.prev_result, **fields), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == code, res.out
    assert listing(pod.host_ns) is None


def test_missing_prev_result_or_ips_is_code_7(cni, lab):
    pod, _ = lab
    assert cni("firewall", "ADD", conf(None), netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 7
    no_ips = {**pod.prev_result, "ips": []}
    assert cni("firewall", "ADD", conf(no_ips), netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 7
    assert listing(pod.host_ns) is None


def test_check_detects_drift(cni, lab):
    pod, _ = lab
    c = conf(pod.prev_result)
    assert cni("firewall", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    handle = pod_rules(pod.host_ns)[1].handle
    in_ns(pod.host_ns, "nft", "delete", "rule", "inet", firewall.TABLE, "pods", "handle", str(handle))
    assert cni("firewall", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    assert cni("firewall", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok  # re-ADD repairs
    assert cni("firewall", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    in_ns(pod.host_ns, "nft", "flush", "chain", "inet", firewall.TABLE, "forward")
    assert cni("firewall", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    in_ns(pod.host_ns, "nft", "delete", "table", "inet", firewall.TABLE)
    assert cni("firewall", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103


def test_gc(cni, lab):
    pod, _ = lab
    for cid in ("keep", "stale"):
        assert cni("firewall", "ADD", conf(pod.prev_result), netns=pod.pod_ns, container_id=cid,
                   host_ns=pod.host_ns).ok
    assert cni("firewall", "ADD", {**conf(pod.prev_result), "name": "other"}, netns=pod.pod_ns,
               container_id="stale", host_ns=pod.host_ns).ok
    gc = {**BASE, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("firewall", "GC", gc, container_id="", ifname="", host_ns=pod.host_ns).ok
    left = {r.comment for r in pod_rules(pod.host_ns)}
    assert left == {attachment.tag("fwnet", "keep", "eth0"), attachment.tag("other", "stale", "eth0")}


def test_same_connectivity_as_reference(cni, ref_cni, make_netns):
    seen = {}
    for who, runner in (("tulle", cni), ("ref", ref_cni)):
        host, pod_ns, client = make_netns("h"), make_netns("p"), make_netns("c")
        pod = make_pod(host, pod_ns)
        add_client(host, client)
        res = runner("firewall", "ADD", conf(pod.prev_result), netns=pod_ns, host_ns=host)
        assert res.ok, (who, res.out)
        seen[who] = (res.out == pod.prev_result, both_ways(pod, client))
        assert runner("firewall", "DEL", conf(res.out), netns=pod_ns, host_ns=host).ok
    assert seen["tulle"] == seen["ref"]
    assert seen["tulle"][1][0].startswith("pong")
