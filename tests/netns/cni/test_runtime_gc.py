"""CNI GC as a runtime calls it (tulle.cni.runtime, libcni's GCNetworkList) through the installed
executables of a bridge + host-local, portmap, bandwidth conflist: an attachment the runtime
still caches but no longer wants is DELeted (its veth too), one it lost track of entirely (its
netns gone, no cache: a runtime killed mid-ADD) is collected by the plugins' GC — leases, nft
rules, ifbs — and the valid one keeps everything."""

from __future__ import annotations

import os

import pytest

from tests.cnirun import in_ns
from tulle.cni import attachment
from tulle.cni.runtime import Attachment, Runtime
from tulle.kernel import links, netns

pytestmark = pytest.mark.netns

LIMITS = {"ingressRate": 8_000_000, "ingressBurst": 400_000, "egressRate": 8_000_000, "egressBurst": 400_000}


def conflist(data_dir: str) -> dict:
    return {"cniVersion": "1.1.0", "name": "gcnet", "plugins": [
        {"type": "bridge", "bridge": "gcbr0", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.0.0/24"}]], "dataDir": data_dir}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}


def test_gc_dels_stale_cached_attachments_and_collects_lost_ones(cni_bin, host_ns, make_netns, tmp_path):
    conf = conflist(str(tmp_path / "ipam"))
    rt = Runtime([cni_bin], cache_dir=str(tmp_path / "cache"))
    atts = {}
    for i, cid in enumerate(("keep", "cached", "lost")):
        atts[cid] = Attachment(container_id=cid, netns=make_netns(cid), capability_args={
            "portMappings": [{"hostPort": 30080 + i, "containerPort": 80, "protocol": "tcp"}], "bandwidth": LIMITS})
        netns.run_in(host_ns, rt.add, conf, atts[cid])
    lost = atts["lost"]
    os.unlink(tmp_path / "cache" / "gcnet-lost-eth0")   # the runtime died before it cached the result...
    netns.remove(os.path.basename(lost.netns))         # ...and its sandbox went (the veth with it)

    netns.run_in(host_ns, rt.gc, conf, [("keep", "eth0")])

    leases = sorted(f for f in os.listdir(tmp_path / "ipam" / "gcnet") if f[0].isdigit())
    assert len(leases) == 1
    with open(tmp_path / "ipam" / "gcnet" / leases[0]) as f:
        assert f.read().startswith("keep")
    host_links = netns.run_in(host_ns, links.all_links)
    assert len([link for link in host_links if link.kind == "veth"]) == 1       # keep's
    assert sorted(link.name for link in host_links if link.kind == "ifb") == \
        [attachment.device_name("bwp", "keep", "eth0")]
    rules = in_ns(host_ns, "nft", "list", "ruleset")
    assert ":keep:eth0" in rules and ":cached:" not in rules and ":lost:" not in rules
    assert "30080" in rules and "30081" not in rules and "30082" not in rules
    assert netns.run_in(atts["cached"].netns, links.get, "eth0") is None     # DEL ran in its netns
    assert [a.container_id for a in rt.cached_attachments(conf)] == ["keep"]
