"""Each runtimeConfig capability as the runtimes really send it.

libcni copies a capability's value verbatim from the runtime, so its field names are
whatever the runtime's Go type marshals to: containerd (go-cni) has structs without JSON
tags (`HostPort`, `IngressRate`, `Servers`), CRI-O (ocicni) and podman (containers/common)
have tags (`hostPort`, `ingressRate`). The reference accepts both (Go's decoder ignores
case), so tulle must too. Where the reference runs without root (host-local), the same
ADD runs on both side by side; the hostPort path is proven end to end under a real
containerd in tests/containerd.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from tulle.cni.env import Env
from tulle.cni.hostports import PortMapping
from tulle.cni.plugins.ipam import host_local
from tulle.cni.plugins.meta import bandwidth, portmap, tuning
from tulle.cni.netconf import mac
from tulle.cni.skel import Call
from tulle.kernel import tc

MAX_UINT32 = 2**32 - 1   # containerd's burst for a pod's bandwidth annotation

PORT_MAPPINGS = {
    "containerd": [{"HostPort": 18080, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}],
    "CRI-O": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp", "hostIP": ""}],
    "podman": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}],   # hostIP omitempty
}
BANDWIDTH = {
    "containerd": {"IngressRate": 10_000_000, "IngressBurst": MAX_UINT32,
                   "EgressRate": 20_000_000, "EgressBurst": MAX_UINT32},
    "CRI-O": {"ingressRate": 10_000_000, "ingressBurst": MAX_UINT32,
              "egressRate": 20_000_000, "egressBurst": MAX_UINT32},
}
IP_RANGES = {
    # go-cni's IPRanges struct, in the range-set list the convention (and host-local) wants
    "containerd": [[{"Subnet": "10.30.0.0/24", "RangeStart": "10.30.0.10", "RangeEnd": "10.30.0.20",
                     "Gateway": "10.30.0.254"}]],
    "CRI-O": [[{"subnet": "10.30.0.0/24", "rangeStart": "10.30.0.10", "rangeEnd": "10.30.0.20",
                "gateway": "10.30.0.254"}]],
}
DNS = {
    "containerd": {"Servers": ["10.96.0.10"], "Searches": ["ns.svc.cluster.local"], "Options": ["ndots:5"]},
    "convention": {"servers": ["10.96.0.10"], "searches": ["ns.svc.cluster.local"], "options": ["ndots:5"]},
}
# podman sends two or more static IPs as the `ips` capability (one goes in CNI_ARGS IP=);
# containerd and CRI-O send none. The mac capability comes from Multus/KubeVirt-style
# callers (podman and CRI-O put the MAC in CNI_ARGS). "Go struct" is what a runtime
# marshalling a Go struct for the whole runtimeConfig would send: the reference takes it.
IPS = {"podman": ["10.31.0.7", "10.32.0.8"], "Go struct": ["10.31.0.7", "10.32.0.8"]}
MACS = {"convention": ("mac", "02:42:0a:1e:00:07"), "Go struct": ("Mac", "02:42:0a:1e:00:07")}
HOST_LOCAL = {"type": "host-local", "ranges": [[{"subnet": "10.31.0.0/24"}]]}
TWO_SETS = {"type": "host-local", "ranges": [[{"subnet": "10.31.0.0/24"}], [{"subnet": "10.32.0.0/24"}]]}


def call(conf: dict) -> Call:
    full = {"cniVersion": "1.0.0", "name": "net", **conf}
    env = Env(command="ADD", container_id="c1", netns="/run/netns/x", ifname="eth0", args=[])
    return Call(env=env, conf=full, stdin=json.dumps(full).encode(), version="1.0.0")


@pytest.mark.parametrize("runtime", PORT_MAPPINGS)
def test_port_mappings(runtime):
    c = call({"type": "portmap", "runtimeConfig": {"portMappings": PORT_MAPPINGS[runtime]}})
    assert portmap.load_mappings(c) == (PortMapping(18080, 8080, "tcp", None),)


def test_port_mappings_with_a_host_ip_and_the_key_as_a_go_struct_names_it():
    c = call({"type": "portmap", "runtimeConfig": {"PortMappings": [
        {"HostPort": 53, "ContainerPort": 5353, "Protocol": "udp", "HostIP": "198.51.100.1"}]}})
    assert portmap.load_mappings(c) == (PortMapping(53, 5353, "udp", ipaddress.ip_address("198.51.100.1")),)


@pytest.mark.parametrize("runtime", BANDWIDTH)
def test_bandwidth(runtime):
    c = call({"type": "bandwidth", "runtimeConfig": {"bandwidth": BANDWIDTH[runtime]}})
    assert bandwidth.load_conf(c) == bandwidth.BandwidthConf(
        ingress=bandwidth.Shape(10_000_000, MAX_UINT32), egress=bandwidth.Shape(20_000_000, MAX_UINT32))


@pytest.mark.parametrize("runtime", IPS)
def test_ips(runtime):
    key = "IPs" if runtime == "Go struct" else "ips"
    c = call({"type": "bridge", "ipam": HOST_LOCAL, "runtimeConfig": {key: IPS[runtime]}})
    assert [str(ip) for ip, _where in host_local.requested_ips(c)] == IPS[runtime]


@pytest.mark.parametrize("runtime", MACS)
def test_mac(runtime):
    key, value = MACS[runtime]
    assert mac(call({"type": "bridge", "runtimeConfig": {key: value}})) == value
    assert tuning.load_conf(call({"type": "tuning", "runtimeConfig": {key: value}})).link.mac == value


# --- host-local side by side with the reference (no root: it never enters the netns) ------

def add_both(cni, ref_cni, tmp_path, runtime_config: dict, ipam: dict = HOST_LOCAL) -> list:
    """One ADD on each plugin (own dataDir each); both outcomes, which must be equal."""
    outs = []
    for name, runner in (("tulle", cni), ("ref", ref_cni)):
        conf = {"cniVersion": "1.0.0", "name": "caps", "type": "bridge",
                "ipam": {**ipam, "dataDir": str(tmp_path / name)}, "runtimeConfig": runtime_config}
        outs.append(runner("host-local", "ADD", conf, netns="/run/netns/unused"))
    tulle_out, ref_out = outs
    assert (tulle_out.ok, tulle_out.out if tulle_out.ok else None) == (ref_out.ok, ref_out.out if ref_out.ok else None)
    return outs


@pytest.mark.parametrize("runtime", IP_RANGES)
def test_ip_ranges_as_the_reference_reads_them(cni, ref_cni, tmp_path, runtime):
    tulle_out, _ = add_both(cni, ref_cni, tmp_path, {"ipRanges": IP_RANGES[runtime]})
    assert [ip["address"] for ip in tulle_out.out["ips"]] == ["10.30.0.10/24", "10.31.0.2/24"]
    assert tulle_out.out["ips"][0]["gateway"] == "10.30.0.254"


def test_ip_ranges_as_go_cni_types_them_are_refused_like_the_reference_does(cni, ref_cni, tmp_path):
    """go-cni's WithCapabilityIPRanges takes a flat []IPRanges: not a list of range sets."""
    tulle_out, ref_out = add_both(cni, ref_cni, tmp_path, {"ipRanges": IP_RANGES["containerd"][0]})
    assert not ref_out.ok and tulle_out.error_code == 7


@pytest.mark.parametrize("runtime", IPS)
def test_ips_as_the_reference_reads_them(cni, ref_cni, tmp_path, runtime):
    key = "IPs" if runtime == "Go struct" else "ips"
    tulle_out, _ = add_both(cni, ref_cni, tmp_path, {key: IPS[runtime]}, ipam=TWO_SETS)
    assert [ip["address"] for ip in tulle_out.out["ips"]] == ["10.31.0.7/24", "10.32.0.8/24"]


@pytest.mark.parametrize("runtime", DNS)
def test_dns_is_accepted_and_left_alone_like_the_reference_does(cni, ref_cni, tmp_path, runtime):
    """No Linux plugin (tulle's or the reference's) reads runtimeConfig.dns; a runtime that
    sends it (containerd does, for every pod with a DNS config) must not break the ADD."""
    tulle_out, _ = add_both(cni, ref_cni, tmp_path, {"dns": DNS[runtime]})
    assert tulle_out.ok and tulle_out.out["dns"] == {}


def test_containerd_burst_is_capped_where_tbf_ends():
    """containerd's burst (2^32-1 bits) lasts ~430 s at 10 Mbit/s: longer than tbf's 32-bit
    buffer holds. It gets the longest buffer there is; at 20 Mbit/s it fits unchanged."""
    capped = tc.tbf_params(10_000_000, MAX_UINT32, ticks_per_usec=15.625)
    assert 0 <= MAX_UINT32 - capped.buffer < 100                 # within rounding of the top
    assert capped.limit == 31_250 + MAX_UINT32 // 8            # the queue is the reference's
    assert tc.tbf_params(20_000_000, MAX_UINT32, ticks_per_usec=15.625).buffer == \
        int(int(MAX_UINT32 // 8 * 1e6 / 2_500_000) * 15.625)
