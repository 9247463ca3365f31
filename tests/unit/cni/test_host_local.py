"""host-local through its executable (no netns is touched, so no root): the
on-disk state, allocation order, requested IPs, errors, DEL/CHECK/GC, every
spec version, and concurrent executions."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tulle.cni import version as cniver

NETNS = "/run/netns/unused"   # host-local never enters the netns


@pytest.fixture
def data_dir(tmp_path) -> str:
    return str(tmp_path / "networks")


def conf(data_dir: str, ranges: list | None = None, version: str = "1.0.0", **ipam) -> dict:
    ipam.setdefault("ranges", ranges if ranges is not None else [[{"subnet": "10.1.0.0/29"}]])
    return {"cniVersion": version, "name": "net1", "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": data_dir, **ipam}}


def state(data_dir: str, network: str = "net1") -> dict[str, str]:
    d = os.path.join(data_dir, network)
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), newline="") as f:
            out[name] = f.read()
    return out


def add(cni, c, cid="c1", ifname="eth0", **kw):
    return cni("host-local", "ADD", c, netns=NETNS, container_id=cid, ifname=ifname, **kw)


def addrs(out) -> list[str]:
    assert out.ok, out
    return [ip["address"] for ip in out.out["ips"]]


@pytest.mark.parametrize("version", cniver.SUPPORTED)
def test_add_result_and_files(cni, data_dir, version):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/29"}], [{"subnet": "fd00:1::/64"}]], version,
             routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
    out = add(cni, c)
    assert out.ok, out
    v4 = {"address": "10.1.0.2/29", "gateway": "10.1.0.1"}
    v6 = {"address": "fd00:1::2/64", "gateway": "fd00:1::1"}
    if cniver.ips_carry_version(version):
        v4, v6 = {"version": "4", **v4}, {"version": "6", **v6}
    assert out.out == {"cniVersion": version, "ips": [v4, v6],
                       "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}], "dns": {}}
    assert state(data_dir) == {"10.1.0.2": "c1\r\neth0", "fd00:1::2": "c1\r\neth0",
                               "last_reserved_ip.0": "10.1.0.2", "last_reserved_ip.1": "fd00:1::2",
                               "lock": ""}
    if cniver.has_check(version):
        assert cni("host-local", "CHECK", c, netns=NETNS, container_id="c1").ok
    assert cni("host-local", "DEL", c, container_id="c1").ok
    assert set(state(data_dir)) == {"last_reserved_ip.0", "last_reserved_ip.1", "lock"}


def test_round_robin_wrap_and_gateway_skip(cni, data_dir):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/29", "gateway": "10.1.0.4"}]])   # .1-.6 minus .4
    got = [addrs(add(cni, c, cid=f"c{i}"))[0] for i in range(5)]
    assert got == ["10.1.0.1/29", "10.1.0.2/29", "10.1.0.3/29", "10.1.0.5/29", "10.1.0.6/29"]
    assert cni("host-local", "DEL", c, container_id="c1").ok
    assert addrs(add(cni, c, cid="c9")) == ["10.1.0.2/29"]          # wrapped into the only hole
    out = add(cni, c, cid="c10")
    assert out.error_code == 102 and "10.1.0.1-10.1.0.6" in out.out["msg"]


def test_legacy_single_range_and_resolv_conf(cni, data_dir, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\n; other\nnameserver 10.1.0.53\nnameserver fd00::53\n"
                      "domain example.org\nsearch a.example b.example\noptions ndots:2 edns0\nbogus\n")
    c = conf(data_dir, [], subnet="10.7.0.0/24", rangeStart="10.7.0.100", rangeEnd="10.7.0.101",
             gateway="10.7.0.254", resolvConf=str(resolv))
    del c["ipam"]["ranges"]
    out = add(cni, c)
    assert out.ok, out
    assert out.out["ips"] == [{"address": "10.7.0.100/24", "gateway": "10.7.0.254"}]
    assert out.out["dns"] == {"nameservers": ["10.1.0.53", "fd00::53"], "domain": "example.org",
                              "search": ["a.example", "b.example"], "options": ["ndots:2", "edns0"]}


def test_missing_resolv_conf_is_an_error(cni, data_dir, tmp_path):
    out = add(cni, conf(data_dir, resolvConf=str(tmp_path / "nope")))
    assert out.error_code == 5 and "ipam.resolvConf" in out.out["msg"]
    assert not os.path.exists(os.path.join(data_dir, "net1"))


@pytest.mark.parametrize("ipam,field", [
    ({"ranges": [[{"subnet": "10.1.0.0/33"}]]}, "ipam.ranges[0][0].subnet"),
    ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]]}, "ipam.ranges[0][0].rangeStart"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": []}, "no IP ranges"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "nope"}]}, "ipam.routes[0].dst"),
])
def test_config_errors_are_code_7(cni, data_dir, ipam, field):
    c = conf(data_dir, **ipam)
    out = add(cni, c)
    assert out.error_code == 7, out
    assert field in out.out["msg"]


def test_requested_ips_from_every_source(cni, data_dir):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]])
    assert addrs(add(cni, c, cid="a", args="IP=10.1.0.50,fd00:1::50")) == ["10.1.0.50/24", "fd00:1::50/64"]
    c2 = {**c, "args": {"cni": {"ips": ["10.1.0.60"]}}}
    assert addrs(add(cni, c2, cid="b")) == ["10.1.0.60/24", "fd00:1::51/64"]
    c3 = {**c, "runtimeConfig": {"ips": ["fd00:1::70/64"]}}
    assert addrs(add(cni, c3, cid="c")) == ["10.1.0.61/24", "fd00:1::70/64"]


def test_runtime_ip_ranges_come_first(cni, data_dir):
    c = conf(data_dir)
    c["runtimeConfig"] = {"ipRanges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.40"}]]}
    assert addrs(add(cni, c)) == ["10.9.0.40/24", "10.1.0.2/29"]
    assert set(state(data_dir)) == {"10.9.0.40", "10.1.0.2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"}


@pytest.mark.parametrize("name", ["..", "a/b", ""])
def test_network_name_must_be_a_safe_directory(cni, data_dir, name):
    c = {**conf(data_dir), "name": name}
    assert add(cni, c).error_code == 7
    assert not os.path.exists(data_dir)


def test_requested_ip_errors(cni, data_dir):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]])
    assert add(cni, c, cid="a", args="IP=10.1.0.50").ok
    taken = add(cni, c, cid="b", args="IP=10.1.0.50")
    assert taken.error_code == 101 and "10.1.0.50" in taken.out["msg"] and "container a" in taken.out["msg"]
    outside = add(cni, c, cid="b", args="IP=10.3.0.5")
    assert outside.error_code == 7 and "not in any range set" in outside.out["msg"]
    bad = add(cni, c, cid="b", args="IP=10.3.0.x")
    assert bad.error_code == 7 and "CNI_ARGS IP" in bad.out["msg"]
    unknown = add(cni, c, cid="b", args="GATEWAY=10.1.0.1")
    assert unknown.error_code == 4
    # nothing half-allocated for "b" after all those failures
    assert "b\r\neth0" not in state(data_dir).values()


def test_exhaustion_releases_the_other_sets(cni, data_dir):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]])   # set 1: one address
    assert add(cni, c, cid="a").ok
    out = add(cni, c, cid="b")
    assert out.error_code == 102 and "range set 1" in out.out["msg"]
    assert [n for n, v in state(data_dir).items() if v.startswith("b")] == []


def test_duplicate_add_is_refused(cni, data_dir):
    c = conf(data_dir)
    assert add(cni, c).ok
    out = add(cni, c)
    assert out.error_code == 101 and "duplicate" in out.out["msg"]
    assert addrs(add(cni, c, ifname="eth1")) == ["10.1.0.3/29"]


def test_del_is_idempotent(cni, data_dir):
    c = conf(data_dir)
    assert cni("host-local", "DEL", c, container_id="nothing").ok        # no dir at all
    assert cni("host-local", "DEL", c, container_id="nothing", args="IP=garbage").ok
    assert add(cni, c).ok
    for _ in range(2):
        assert cni("host-local", "DEL", c, container_id="c1").ok
    assert set(state(data_dir)) == {"last_reserved_ip.0", "lock"}


def test_del_releases_legacy_format(cni, data_dir):
    c = conf(data_dir)
    assert add(cni, c, cid="other").ok
    d = os.path.join(data_dir, "net1")
    with open(os.path.join(d, "10.1.0.5"), "w") as f:
        f.write("old\n")
    assert cni("host-local", "CHECK", c, netns=NETNS, container_id="old").ok
    assert cni("host-local", "DEL", c, container_id="old").ok
    assert "10.1.0.5" not in state(data_dir) and "10.1.0.2" in state(data_dir)


def test_check_fails_without_a_lease(cni, data_dir):
    c = conf(data_dir)
    out = cni("host-local", "CHECK", c, netns=NETNS, container_id="ghost")
    assert out.error_code == 103 and "ghost" in out.out["msg"]
    assert add(cni, c).ok
    assert cni("host-local", "CHECK", c, netns=NETNS, container_id="c1").ok
    assert cni("host-local", "CHECK", c, netns=NETNS, container_id="c1", ifname="eth1").error_code == 103


def gc(cni, c, keep):
    c = {**c, "cniVersion": "1.1.0", "cni.dev/valid-attachments":
         [{"containerID": cid, "ifname": ifn} for cid, ifn in keep]}
    return cni("host-local", "GC", c, container_id="", ifname="")


def test_gc_removes_stale_leases_only(cni, data_dir):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]], "1.1.0")
    for cid in ("a", "b", "c"):
        assert add(cni, c, cid=cid).ok
    with open(os.path.join(data_dir, "net1", "10.1.0.99"), "w") as f:
        f.write("c")                                   # legacy record of a live container
    with open(os.path.join(data_dir, "net1", "10.1.0.98"), "w") as f:
        f.write("")                                    # a crash between create and write
    out = gc(cni, c, [("a", "eth0"), ("c", "eth1")])
    assert out.ok and out.out is None, out
    assert state(data_dir) == {"10.1.0.2": "a\r\neth0", "fd00:1::2": "a\r\neth0", "10.1.0.99": "c",
                               "last_reserved_ip.0": "10.1.0.4", "last_reserved_ip.1": "fd00:1::4",
                               "lock": ""}
    assert gc(cni, c, []).ok
    assert set(state(data_dir)) == {"last_reserved_ip.0", "last_reserved_ip.1", "lock"}


def test_gc_without_state_dir(cni, data_dir):
    assert gc(cni, conf(data_dir, version="1.1.0"), []).ok
    assert not os.path.exists(data_dir)


def test_concurrent_adds_get_distinct_ips(cni, data_dir):
    c = conf(data_dir, [[{"subnet": "10.1.0.0/27"}]])     # 29 usable addresses for 24 callers
    with ThreadPoolExecutor(max_workers=24) as pool:
        outs = list(pool.map(lambda i: add(cni, c, cid=f"p{i}"), range(24)))
    got = [addrs(o)[0].split("/")[0] for o in outs]
    assert len(set(got)) == 24
    files = {k: v for k, v in state(data_dir).items() if k[0].isdigit()}
    assert files == {ip: f"p{i}\r\neth0" for i, ip in enumerate(got)}
