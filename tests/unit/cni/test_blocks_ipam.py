"""tulle-blocks IPAM through its executable, against an SQLite store file."""

from __future__ import annotations

import json

from tulle.store import open_store

NS = "/run/netns/unused"  # IPAM never enters the pod's netns, but ADD/CHECK require the variable


def conf(tmp_path, node="n1", **extra) -> dict:
    ipam = {"type": "tulle-blocks", "store": f"sqlite://{tmp_path}/s.db", "node": node, **extra}
    return {"cniVersion": "1.1.0", "name": "pods", "type": "tulle-blocks", "ipam": ipam}


def seed(tmp_path, network="10.244.0.0/24", block=28, pools=None):
    s = open_store(f"sqlite://{tmp_path}/s.db")
    backend = {"Type": "bgp", "BlockSize": block, **({"Pools": pools} if pools else {})}
    s.put("/coreos.com/network/config", json.dumps({"Network": network, "Backend": backend}))
    s.close()


def run(cni, command, c, cid="c1"):
    return cni("tulle-blocks", command, c, netns=NS, container_id=cid)


def test_add_del_check_gc(cni, tmp_path):
    seed(tmp_path)
    a, b = run(cni, "ADD", conf(tmp_path), "c1"), run(cni, "ADD", conf(tmp_path), "c2")
    assert a.ok and b.ok, (a.out, b.out)
    ip_a, ip_b = a.out["ips"][0]["address"], b.out["ips"][0]["address"]
    assert ip_a.endswith("/32") and ip_a != ip_b
    assert run(cni, "CHECK", conf(tmp_path), "c1").ok
    assert run(cni, "DEL", conf(tmp_path), "c1").ok
    assert run(cni, "DEL", conf(tmp_path), "c1").ok
    assert run(cni, "CHECK", conf(tmp_path), "c1").error_code == 103
    gc = {**conf(tmp_path), "cni.dev/valid-attachments": []}
    assert cni("tulle-blocks", "GC", gc, container_id="").ok
    assert run(cni, "CHECK", conf(tmp_path), "c2").error_code == 103
    s = open_store(f"sqlite://{tmp_path}/s.db")
    assert s.list("/coreos.com/network/blocks/")[0] == []  # empty blocks were given back
    s.close()


def test_exhausted_is_102(cni, tmp_path):
    seed(tmp_path, network="10.244.0.0/24", block=30, pools=["10.244.0.0/30"])
    assert run(cni, "ADD", conf(tmp_path), "c1").ok
    assert run(cni, "ADD", conf(tmp_path), "c2").ok
    assert run(cni, "ADD", conf(tmp_path), "c3").error_code == 102


def test_missing_fields_and_config(cni, tmp_path):
    c = conf(tmp_path)
    del c["ipam"]["node"]
    assert run(cni, "ADD", c).error_code == 7
    assert run(cni, "ADD", conf(tmp_path)).error_code == 7  # no network config in the store
    assert run(cni, "ADD", conf(tmp_path, pools=["10.0.0.0/33"])).error_code == 7
