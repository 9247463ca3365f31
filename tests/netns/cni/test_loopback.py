from __future__ import annotations

import pytest

from tests.cnirun import ip_json

pytestmark = pytest.mark.netns

CONF = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}


def test_loopback_add_check_del(cni, pod_ns):
    res = cni("loopback", "ADD", CONF, netns=pod_ns, ifname="lo")
    assert res.ok, res.out
    assert res.out["interfaces"][0]["name"] == "lo"
    lo = ip_json(pod_ns, "link", "show", "lo")[0]
    assert "UP" in lo["flags"]
    assert cni("loopback", "CHECK", {**CONF, "prevResult": res.out}, netns=pod_ns, ifname="lo").ok
    assert cni("loopback", "DEL", CONF, netns=pod_ns, ifname="lo").ok
    assert "UP" not in ip_json(pod_ns, "link", "show", "lo")[0]["flags"]
    assert cni("loopback", "DEL", CONF, netns="/run/netns/tulle-gone", ifname="lo").ok


def test_loopback_same_as_reference(cni, ref_cni, make_netns):
    ours, theirs = make_netns("a"), make_netns("b")
    a = cni("loopback", "ADD", CONF, netns=ours, ifname="lo")
    b = ref_cni("loopback", "ADD", CONF, netns=theirs, ifname="lo")
    assert a.ok and b.ok
    for r in (a.out, b.out):
        r["interfaces"][0].pop("sandbox")
    assert a.out == b.out


def test_loopback_missing_netns_is_code_3(cni):
    res = cni("loopback", "ADD", CONF, netns="/run/netns/tulle-missing", ifname="lo")
    assert res.error_code == 3
