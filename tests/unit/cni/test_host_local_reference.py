"""host-local side by side with the reference plugin (/usr/lib/cni/host-local):
the same configs and ADD/DEL sequences must give identical results and
identical state directories. The reference accepts any CNI_NETNS path and never
enters it, so this needs no root and no netns."""

from __future__ import annotations

import os

import pytest

from tulle.cni import version as cniver

NETNS = "/run/netns/unused"


def snapshot(data_dir: str) -> dict[str, tuple[str, int]]:
    """Every file of every network dir: content and permission bits."""
    out = {}
    for root, _, files in os.walk(data_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, newline="") as f:
                out[os.path.relpath(path, data_dir)] = (f.read(), os.stat(path).st_mode & 0o777)
    return out


class Pair:
    """Runs each step with both plugins, each on its own dataDir, and compares."""

    def __init__(self, cni, ref_cni, tmp_path) -> None:
        self.runners = {"tulle": cni, "ref": ref_cni}
        self.dirs = {k: str(tmp_path / k) for k in self.runners}

    def run(self, command: str, conf: dict, cid: str, ifname: str = "eth0", args: str = "", ok=True):
        outs = {}
        for key, runner in self.runners.items():
            c = {**conf, "ipam": {**conf["ipam"], "dataDir": self.dirs[key]}}
            outs[key] = runner("host-local", command, c, netns=NETNS, container_id=cid,
                               ifname=ifname, args=args)
        assert outs["ref"].ok == ok, outs["ref"]
        assert outs["tulle"].ok == ok, outs["tulle"]
        if ok:
            assert outs["tulle"].out == outs["ref"].out
        assert snapshot(self.dirs["tulle"]) == snapshot(self.dirs["ref"])
        return outs["tulle"].out


@pytest.fixture
def pair(cni, ref_cni, tmp_path) -> Pair:
    return Pair(cni, ref_cni, tmp_path)


def conf(ranges: list, version: str = "1.0.0", **ipam) -> dict:
    return {"cniVersion": version, "name": "refnet", "type": "bridge",
            "ipam": {"type": "host-local", "ranges": ranges, **ipam}}


@pytest.mark.parametrize("version", cniver.SUPPORTED[:-1])   # the reference speaks up to 1.0.0
def test_sequence_with_hole_and_wrap(pair, version):
    c = conf([[{"subnet": "10.5.0.0/29"}]], version, routes=[{"dst": "0.0.0.0/0", "gw": "10.5.0.1"}])
    ips = [pair.run("ADD", c, f"c{i}")["ips"][0]["address"] for i in range(4)]
    assert ips == ["10.5.0.2/29", "10.5.0.3/29", "10.5.0.4/29", "10.5.0.5/29"]
    pair.run("DEL", c, "c1")                          # a hole in the middle
    assert pair.run("ADD", c, "c4")["ips"][0]["address"] == "10.5.0.6/29"
    assert pair.run("ADD", c, "c5")["ips"][0]["address"] == "10.5.0.3/29"   # wrapped into the hole
    pair.run("ADD", c, "c6", ok=False)                # exhausted
    pair.run("DEL", c, "c0")
    pair.run("DEL", c, "c0")                          # idempotent
    assert pair.run("ADD", c, "c7")["ips"][0]["address"] == "10.5.0.2/29"


def test_dual_stack_multiple_ranges(pair):
    # set 0: .250-.254 then 10.6.1.1-3 (8 addresses); set 1: fffe..1:4 (7 addresses)
    c = conf([[{"subnet": "10.6.0.0/24", "rangeStart": "10.6.0.250"},
               {"subnet": "10.6.1.0/24", "rangeEnd": "10.6.1.3", "gateway": "10.6.1.254"}],
              [{"subnet": "fd00:6::/64", "rangeStart": "fd00:6::fffe", "rangeEnd": "fd00:6::1:4"}]])
    for i in range(7):
        pair.run("ADD", c, f"c{i}")
    pair.run("ADD", c, "c7", ok=False)               # the v6 set is full: the v4 lease is rolled back
    pair.run("DEL", c, "c3")
    pair.run("ADD", c, "c8")
    pair.run("ADD", c, "c9", ok=False)


def test_requested_ip_and_duplicates(pair):
    c = conf([[{"subnet": "10.7.0.0/24"}], [{"subnet": "fd00:7::/64"}]])
    pair.run("ADD", c, "a", args="IP=10.7.0.77")
    pair.run("ADD", c, "b")
    pair.run("ADD", c, "b", ok=False)                 # already has an IP in the set
    pair.run("ADD", c, "b", ifname="eth1")
    pair.run("ADD", c, "c", args="IP=10.7.0.77", ok=False)
    pair.run("ADD", {**c, "args": {"cni": {"ips": ["fd00:7::99"]}}}, "d")
    pair.run("DEL", c, "b")
    pair.run("DEL", c, "b", ifname="eth1")


def test_legacy_subnet_and_legacy_records(pair, tmp_path):
    c = conf([], subnet="10.8.0.0/28", gateway="10.8.0.14")
    pair.run("ADD", c, "a")
    pair.run("ADD", c, "b")
    for d in pair.dirs.values():                      # a record from an older plugin version
        with open(os.path.join(d, "refnet", "10.8.0.9"), "w") as f:
            f.write("old")
    pair.run("ADD", c, "old", ok=False)               # the legacy record counts as "has an IP"
    pair.run("DEL", c, "old")
    pair.run("ADD", c, "old")
