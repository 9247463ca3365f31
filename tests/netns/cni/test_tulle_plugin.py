"""The fabric plugin `tulle` in sandbox netns: it turns a hand-written
subnet.env into a bridge + host-local pod, saves the delegate config per
attachment, and DEL/CHECK/GC/STATUS work from that saved config."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from tests.netns.cni import mainhelp as h

pytestmark = pytest.mark.netns

SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ={masq}\n"


@pytest.fixture
def fabric(tmp_path):
    """Paths of one node's fabric state: subnet.env (written) and the plugin's dataDir."""
    class Fabric:
        subnet_file = str(tmp_path / "subnet.env")
        data_dir = str(tmp_path / "cni")
        lease_dir = str(tmp_path / "cni" / "networks" / "tullenet")

        def write(self, masq: str = "true", text: str | None = None) -> None:
            with open(self.subnet_file, "w") as f:
                f.write(SUBNET_ENV.format(masq=masq) if text is None else text)

        def conf(self, version: str = "1.0.0", **fields) -> dict:
            return {"cniVersion": version, "name": "tullenet", "type": "tulle",
                    "subnetFile": self.subnet_file, "dataDir": self.data_dir,
                    "agentSocket": str(tmp_path / "no-agent.sock"), **fields}

        def saved(self) -> list[str]:
            if not os.path.isdir(self.data_dir):
                return []
            return sorted(n for n in os.listdir(self.data_dir)
                          if os.path.isfile(os.path.join(self.data_dir, n)))

        def leases(self) -> list[str]:
            if not os.path.isdir(self.lease_dir):
                return []
            return sorted(n for n in os.listdir(self.lease_dir) if n[0].isdigit())

    fab = Fabric()
    fab.write()
    return fab


def with_prev(c: dict, result: dict) -> dict:
    return {**c, "prevResult": result}


@pytest.mark.parametrize("version", h.VERSIONS)
def test_add_check_del(cni, fabric, pod_ns, host_ns, version):
    c = fabric.conf(version)
    res = cni("tulle", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    out = res.out
    assert out["cniVersion"] == version
    names = [i["name"] for i in out["interfaces"]]
    assert names[0] == "tulle0" and names[1].startswith("veth") and names[2] == "eth0"
    ip = out["ips"][0]
    assert ipaddress.ip_interface(ip["address"]) in ipaddress.ip_network("10.244.1.0/24")
    assert ip["address"].endswith("/24") and ip["gateway"] == "10.244.1.1"
    assert ("version" in ip) == (version in ("0.3.1", "0.4.0"))
    assert ("mtu" in out["interfaces"][2]) == (version == "1.1.0")
    assert out["routes"] == [{"dst": "10.244.0.0/16"}]

    # the pod: an address of the node's subnet, the cluster route via the bridge, the fabric MTU
    assert h.addresses(pod_ns, "eth0") == [ip["address"]]
    assert "10.244.0.0/16 via 10.244.1.1 dev eth0" in h.route_lines(pod_ns)
    assert h.link(pod_ns, "eth0")["mtu"] == 1450
    # the host: bridge tulle0 is the gateway; FLANNEL_IPMASQ=true means the agent masquerades, not bridge
    assert h.addresses(host_ns, "tulle0") == ["10.244.1.1/24"]
    assert h.link(host_ns, names[1])["master"] == "tulle0"
    assert not [r for r in h.nft_rules(host_ns) if ":c0ffee:eth0" in r.get("comment", "")]
    # the saved delegate config, as Flannel keeps it
    assert fabric.saved() == ["c0ffee-eth0"]
    with open(os.path.join(fabric.data_dir, "c0ffee-eth0")) as f:
        saved = json.load(f)
    assert saved["type"] == "bridge" and saved["bridge"] == "tulle0" and saved["mtu"] == 1450
    assert saved["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert fabric.leases() == [ip["address"].split("/")[0]]

    if version != "0.3.1":
        assert cni("tulle", "CHECK", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok
    assert cni("tulle", "DEL", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok
    assert "eth0" not in h.link_names(pod_ns) and h.veths(host_ns) == []
    assert fabric.saved() == [] and fabric.leases() == []
    assert cni("tulle", "DEL", with_prev(c, out), netns=pod_ns, host_ns=host_ns).ok  # idempotent


def test_delegate_overrides_and_ipmasq(cni, fabric, pod_ns, host_ns):
    """`delegate` fields win over the generated ones; FLANNEL_IPMASQ=false lets bridge masquerade."""
    fabric.write(masq="false")
    c = fabric.conf(delegate={"bridge": "tbr9", "hairpinMode": True, "mtu": 1400})
    res = cni("tulle", "ADD", c, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    host_veth = res.out["interfaces"][1]["name"]
    assert res.out["interfaces"][0]["name"] == "tbr9"
    assert h.link(pod_ns, "eth0")["mtu"] == 1400
    assert h.link(host_ns, host_veth)["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert [r for r in h.nft_rules(host_ns) if ":c0ffee:eth0" in r.get("comment", "")]
    assert h.ping(pod_ns, "10.244.1.1")
    # CHECK detects drift through the saved config (the bridge's gateway address is gone)
    h.in_ns(host_ns, "ip", "addr", "flush", "dev", "tbr9")
    chk = cni("tulle", "CHECK", with_prev(c, res.out), netns=pod_ns, host_ns=host_ns)
    assert chk.error_code == 103, chk.out
    assert cni("tulle", "DEL", with_prev(c, res.out), netns=pod_ns, host_ns=host_ns).ok
    assert not [r for r in h.nft_rules(host_ns) if ":c0ffee:eth0" in r.get("comment", "")]


def test_missing_subnet_file_is_try_again(cni, fabric, pod_ns, host_ns):
    os.unlink(fabric.subnet_file)
    res = cni("tulle", "ADD", fabric.conf(), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 11, res.out
    assert "subnetFile" in res.out["msg"] and "agent" in res.out["msg"]
    assert h.link_names(host_ns) == {"lo"} and h.link_names(pod_ns) == {"lo"}
    assert fabric.saved() == [] and fabric.leases() == []
    st = cni("tulle", "STATUS", fabric.conf("1.1.0"), container_id="", ifname="", host_ns=host_ns)
    assert st.error_code == 50, st.out


@pytest.mark.parametrize("text, field", [
    ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_SUBNET"),
    ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.9.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
     "FLANNEL_SUBNET"),
    ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=big\nFLANNEL_IPMASQ=true\n",
     "FLANNEL_MTU"),
])
def test_bad_subnet_file_is_invalid_config(cni, fabric, pod_ns, host_ns, text, field):
    fabric.write(text=text)
    res = cni("tulle", "ADD", fabric.conf(), netns=pod_ns, host_ns=host_ns)
    assert res.error_code == 7, res.out
    assert field in res.out["msg"]
    assert h.link_names(host_ns) == {"lo"} and h.link_names(pod_ns) == {"lo"}
    assert fabric.saved() == []


def test_failed_add_leaves_nothing(cni, fabric, pod_ns, host_ns):
    h.in_ns(pod_ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")  # the pod's ifname is taken
    res = cni("tulle", "ADD", fabric.conf(), netns=pod_ns, host_ns=host_ns)
    assert not res.ok
    assert fabric.saved() == [] and fabric.leases() == [] and h.veths(host_ns) == []


def test_del_without_subnet_file_or_saved_conf(cni, fabric, make_netns, host_ns):
    """The saved config releases the lease after subnet.env is gone; subnet.env does it when the
    saved config is gone; with neither, DEL still succeeds."""
    pods = {cid: make_netns(cid) for cid in ("a", "b")}
    outs = {}
    for cid, pod in pods.items():
        res = cni("tulle", "ADD", fabric.conf(), netns=pod, host_ns=host_ns, container_id=cid)
        assert res.ok, res.out
        outs[cid] = res.out
    assert len(fabric.leases()) == 2

    os.unlink(os.path.join(fabric.data_dir, "b-eth0"))          # b: only subnet.env left
    assert cni("tulle", "DEL", fabric.conf(), netns=pods["b"], host_ns=host_ns, container_id="b").ok
    assert fabric.leases() == [outs["a"]["ips"][0]["address"].split("/")[0]]

    os.unlink(fabric.subnet_file)                               # a: only the saved config left
    assert cni("tulle", "DEL", fabric.conf(), netns="/run/netns/gone", host_ns=host_ns, container_id="a").ok
    assert fabric.leases() == [] and fabric.saved() == []

    assert cni("tulle", "DEL", fabric.conf(), netns=pods["a"], host_ns=host_ns, container_id="zz").ok


def test_gc(cni, fabric, make_netns, host_ns):
    pods = {cid: make_netns(cid) for cid in ("keep", "gone")}
    for cid, pod in pods.items():
        assert cni("tulle", "ADD", fabric.conf("1.1.0"), netns=pod, host_ns=host_ns, container_id=cid).ok
    other = os.path.join(fabric.data_dir, "other-eth0")  # another network's saved config in the same dataDir
    with open(other, "w") as f:
        json.dump({"type": "bridge", "name": "othernet"}, f)
    gc = {**fabric.conf("1.1.0"), "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    res = cni("tulle", "GC", gc, container_id="", ifname="", netns="", host_ns=host_ns)
    assert res.ok, res.out
    assert fabric.saved() == ["keep-eth0", "other-eth0"]
    assert len(fabric.leases()) == 1
    st = cni("tulle", "STATUS", fabric.conf("1.1.0"), container_id="", ifname="", host_ns=host_ns)
    assert st.ok, st.out
