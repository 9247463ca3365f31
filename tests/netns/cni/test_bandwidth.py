from __future__ import annotations

import json
import subprocess

import pytest

from tests.cnirun import in_ns, ip_json
from tests.netns.cni.pods import make_pod
from tulle.cni import attachment
from tulle.kernel import links, netns, tc

pytestmark = pytest.mark.netns

RATE, BURST = 8_000_000, 400_000  # 8 Mbit/s, 50 kB
BASE = {"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth"}


def conf(prev=None, **fields) -> dict:
    c = {**BASE, **fields}
    if prev is not None:
        c["prevResult"] = prev
    return c


def limits(rate=RATE, burst=BURST) -> dict:
    return {"ingressRate": rate, "ingressBurst": burst, "egressRate": rate, "egressBurst": burst}


@pytest.fixture
def pod(host_ns, pod_ns):
    return make_pod(host_ns, pod_ns)


def ifb_of(cid="c0ffee", ifname="eth0") -> str:
    return attachment.device_name("bwp", cid, ifname)


def qdisc_json(ns: str, dev: str) -> list[dict]:
    return json.loads(in_ns(ns, "tc", "-j", "qdisc", "show", "dev", dev) or "[]")


def test_add_check_del(cni, pod):
    c = conf(pod.prev_result, **limits())
    res = cni("bandwidth", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    ifb = ifb_of()
    assert res.out["interfaces"][:2] == pod.prev_result["interfaces"]
    assert res.out["interfaces"][2]["name"] == ifb
    assert res.out["ips"] == pod.prev_result["ips"]
    want = tc.tbf_params(RATE, BURST)
    assert netns.run_in(pod.host_ns, tc.root_tbf, pod.host_veth) == want
    assert netns.run_in(pod.host_ns, tc.root_tbf, ifb) == want
    redirects = netns.run_in(pod.host_ns, tc.redirects, pod.host_veth)
    ifb_link = netns.run_in(pod.host_ns, links.require, ifb)
    assert [r.target_index for r in redirects] == [ifb_link.index]
    assert ifb_link.alias == attachment.tag("bwnet", "c0ffee", "eth0") and ifb_link.up
    assert cni("bandwidth", "CHECK", {**c, "prevResult": res.out}, netns=pod.pod_ns, host_ns=pod.host_ns).ok

    assert cni("bandwidth", "DEL", {**c, "prevResult": res.out}, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    assert netns.run_in(pod.host_ns, links.get, ifb) is None
    assert [q["kind"] for q in qdisc_json(pod.host_ns, pod.host_veth)] == ["noqueue"]
    assert cni("bandwidth", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok


def test_del_without_netns_or_prev_result_removes_ifb(cni, pod, make_netns):
    c = conf(pod.prev_result, **limits())
    assert cni("bandwidth", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    bare = {**BASE}
    res = cni("bandwidth", "DEL", bare, netns="/run/netns/tulle-gone", host_ns=pod.host_ns)
    assert res.ok, res.out
    assert netns.run_in(pod.host_ns, links.get, ifb_of()) is None
    assert cni("bandwidth", "DEL", bare, netns="", host_ns=pod.host_ns).ok


def test_runtime_config_capability(cni, pod):
    c = conf(pod.prev_result, runtimeConfig={"bandwidth": {"ingressRate": RATE, "ingressBurst": BURST}})
    res = cni("bandwidth", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    assert res.out["interfaces"] == pod.prev_result["interfaces"]  # no egress: no ifb
    assert netns.run_in(pod.host_ns, tc.root_tbf, pod.host_veth) == tc.tbf_params(RATE, BURST)
    assert netns.run_in(pod.host_ns, links.get, ifb_of()) is None


def test_no_limits_passes_through(cni, pod):
    res = cni("bandwidth", "ADD", conf(pod.prev_result), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok and res.out == pod.prev_result
    assert [q["kind"] for q in qdisc_json(pod.host_ns, pod.host_veth)] == ["noqueue"]


@pytest.mark.parametrize("fields", [
    {"ingressRate": RATE},
    {"egressBurst": BURST},
    {"ingressRate": -1, "ingressBurst": BURST},
    {"ingressRate": "fast", "ingressBurst": BURST},
    {"egressRate": 2**40, "egressBurst": BURST},
    {"egressRate": RATE, "egressBurst": 2**40},
    {"runtimeConfig": {"bandwidth": {"egressRate": RATE}}},
])
def test_bad_config_is_code_7(cni, pod, fields):
    res = cni("bandwidth", "ADD", conf(pod.prev_result, **fields), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 7, res.out
    assert [q["kind"] for q in qdisc_json(pod.host_ns, pod.host_veth)] == ["noqueue"]


def test_subnets_are_unsupported(cni, pod):
    res = cni("bandwidth", "ADD", conf(pod.prev_result, **limits(), unshapedSubnets=["10.0.0.0/8"]),
              netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 2


def test_missing_prev_result_is_code_7(cni, pod):
    res = cni("bandwidth", "ADD", conf(None, **limits()), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 7


def test_failed_add_leaves_nothing(cni, pod):
    netns.run_in(pod.host_ns, links.add_ifb, ifb_of())  # squats the ifb's name
    res = cni("bandwidth", "ADD", conf(pod.prev_result, **limits()), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 101, res.out
    assert [q["kind"] for q in qdisc_json(pod.host_ns, pod.host_veth)] == ["noqueue"]
    netns.run_in(pod.host_ns, links.delete, ifb_of())


def test_check_detects_drift(cni, pod):
    c = conf(pod.prev_result, **limits())
    res = cni("bandwidth", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    c["prevResult"] = res.out
    in_ns(pod.host_ns, "tc", "qdisc", "del", "dev", ifb_of(), "root")
    assert cni("bandwidth", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    in_ns(pod.host_ns, "tc", "qdisc", "del", "dev", pod.host_veth, "root")
    assert cni("bandwidth", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    changed = conf(res.out, **limits(rate=2 * RATE))
    in_ns(pod.host_ns, "tc", "qdisc", "add", "dev", pod.host_veth, "root", "tbf", "rate", "1mbit",
          "burst", "10k", "latency", "25ms")
    assert cni("bandwidth", "CHECK", changed, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    assert cni("bandwidth", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok


def test_gc_removes_ifbs_of_stale_attachments(cni, host_ns, make_netns):
    pods = [make_pod(host_ns, make_netns(f"p{i}"), veth=f"vbw{i}", net=i) for i in range(2)]
    for i, p in enumerate(pods):
        assert cni("bandwidth", "ADD", conf(p.prev_result, **limits()), netns=p.pod_ns,
                   container_id=f"c{i}", host_ns=host_ns).ok
    netns.run_in(host_ns, links.add_ifb, "bwpforeign")  # not ours: no tag
    gc = {**BASE, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}
    assert cni("bandwidth", "GC", gc, container_id="", ifname="", host_ns=host_ns).ok
    names = {l["ifname"] for l in ip_json(host_ns, "link", "show")}
    assert ifb_of("c0") not in names and ifb_of("c1") in names and "bwpforeign" in names
    other = {**gc, "name": "othernet", "cni.dev/valid-attachments": []}
    assert cni("bandwidth", "GC", other, container_id="", ifname="", host_ns=host_ns).ok
    assert ifb_of("c1") in {l["ifname"] for l in ip_json(host_ns, "link", "show")}


def _shape_view(ns: str, dev: str) -> list[dict]:
    out = []
    for q in qdisc_json(ns, dev):
        q.pop("dev", None)
        q.pop("refcnt", None)
        out.append(q)
    return out


def test_same_tbf_as_reference(cni, ref_cni, make_netns):
    ours = make_pod(make_netns("h1"), make_netns("p1"))
    theirs = make_pod(make_netns("h2"), make_netns("p2"))
    c = limits(rate=10_000_000, burst=123_456)
    a = cni("bandwidth", "ADD", conf(ours.prev_result, **c), netns=ours.pod_ns, host_ns=ours.host_ns)
    b = ref_cni("bandwidth", "ADD", conf(theirs.prev_result, **c), netns=theirs.pod_ns, host_ns=theirs.host_ns)
    assert a.ok and b.ok, (a.out, b.out)
    assert _shape_view(ours.host_ns, ours.host_veth) == _shape_view(theirs.host_ns, theirs.host_veth)
    ifb_a, ifb_b = a.out["interfaces"][-1]["name"], b.out["interfaces"][-1]["name"]
    assert _shape_view(ours.host_ns, ifb_a) == _shape_view(theirs.host_ns, ifb_b)
    assert ref_cni("bandwidth", "DEL", conf(b.out, **c), netns=theirs.pod_ns, host_ns=theirs.host_ns).ok


def _iperf_mbps(client_ns: str, server_ip: str, reverse: bool) -> float:
    cmd = ["nsenter", f"--net={client_ns}", "iperf3", "-c", server_ip, "-t", "2", "-J", "--connect-timeout", "2000"]
    if reverse:
        cmd.append("-R")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    data = json.loads(proc.stdout)
    return data["end"]["sum_received"]["bits_per_second"] / 1e6


def test_rate_is_enforced(cni, pod):
    rate = 20_000_000
    res = cni("bandwidth", "ADD", conf(pod.prev_result, **limits(rate=rate, burst=160_000)),
              netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    server = subprocess.Popen(["nsenter", f"--net={pod.pod_ns}", "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        time.sleep(0.3)
        into_pod = _iperf_mbps(pod.host_ns, pod.ip, reverse=False)
    finally:
        server.kill()
        server.wait(timeout=5)
    server = subprocess.Popen(["nsenter", f"--net={pod.pod_ns}", "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out_of_pod = _iperf_mbps(pod.host_ns, pod.ip, reverse=True)
    finally:
        server.kill()
        server.wait(timeout=5)
    assert 0 < into_pod < 2 * rate / 1e6, into_pod
    assert 0 < out_of_pod < 2 * rate / 1e6, out_of_pod
