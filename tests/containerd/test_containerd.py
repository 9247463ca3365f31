"""Real-runtime proof: containerd 1.6 (CRI plugin, runc shim) on tulle's plugins, driven
over CRI as kubelet drives it (RunPodSandbox, CreateContainer/StartContainer, ExecSync,
StopPodSandbox, RemovePodSandbox).

containerd runs in a sandbox netns with a private mount namespace and private state
(tests/containerd/sandbox.py); its conflist is bridge + host-local, portmap, bandwidth,
firewall, tuning. Pod a serves HTTP; pod b too, behind a hostPort (containerd sends the
mapping with capitalised keys: `HostPort`) and with bandwidth annotations (sent as
`IngressRate`...). The same scenario runs on Debian's reference plugins side by side, so
a difference points at tulle. Tests run in file order on one scenario per flavour; the
last ones stop and remove the pods and look for leftovers.
"""

from __future__ import annotations

import pytest

from tests import cnirun, runtimes
from tests.containerd import cri, harness
from tulle.demo import cgroups, checks, image

pytestmark = pytest.mark.containerd

HOST_PORT = 18080
BANDWIDTH = {"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M"}


@pytest.fixture(scope="session")
def cri_api(tmp_path_factory):
    """The CRI stubs, generated once per session from the committed api.proto."""
    missing = cri.missing()
    if missing:
        pytest.skip(f"missing Python packages {', '.join(missing)} (pip install -e '.[test]')")
    return cri.generate(str(tmp_path_factory.mktemp("cri-stubs")))


@pytest.fixture(scope="module", params=runtimes.FLAVOURS)
def world(request, cri_api):
    missing = harness.missing_prerequisites(request.param)
    if missing:
        pytest.skip(f"{request.param}: missing {', '.join(missing)}")
    with harness.world(request.param, cri_api) as w:
        w.run_pod("ctd-a")
        w.run_pod("ctd-b", host_ports={HOST_PORT: harness.HTTP_PORT}, annotations=BANDWIDTH)
        yield w


def test_pods_get_distinct_addresses_from_the_conflist(world):
    a, b = world.pods["ctd-a"].sandbox, world.pods["ctd-b"].sandbox
    assert a.ip != b.ip and all(ip.startswith("10.88.9.") for ip in (a.ip, b.ip))
    assert runtimes.leases(world.lease_dir) == sorted([a.ip, b.ip])
    assert len(runtimes.veths(world.host)) == 2
    for s in (a, b):   # what the pod itself holds is what containerd reported
        assert harness.addresses(s.netns, checks.POD_IFNAME) == [f"{s.ip}/24"]


def test_loopback_is_up_in_every_pod(world):
    """containerd runs the loopback plugin (at CNI 0.3.1) from bin_dir for every pod."""
    for pod in world.pods.values():
        lo = cnirun.ip_json(pod.sandbox.netns, "link", "show", "lo")[0]
        assert "UP" in lo["flags"], lo
        assert harness.addresses(pod.sandbox.netns, "lo") == ["127.0.0.1/8"]


def test_pods_reach_each_other(world):
    a, b = world.pods["ctd-a"], world.pods["ctd-b"]
    for src, dst in ((a, b), (b, a)):
        proc = world.exec(src, "sh", "-c", f"echo -e 'GET / HTTP/1.0\\r\\n\\r' | nc -w 3 {dst.sandbox.ip} "
                                           f"{harness.HTTP_PORT}")
        assert proc.stdout.startswith(b"HTTP/1.") and proc.stdout.endswith(image.PAGE), proc


def test_host_port_answers_from_a_client_netns(world):
    outside = checks.SANDBOX_ADDR.split("/")[0]
    assert checks.http_get(world.client, outside, HOST_PORT) == image.PAGE


def test_host_port_answers_from_the_host_itself(world):
    assert checks.http_get(world.host, harness.GATEWAY, HOST_PORT) == image.PAGE


def test_bandwidth_annotations_shape_that_pod_only(world):
    veth_b = harness.host_veth(world, world.pods["ctd-b"])
    veth_a = harness.host_veth(world, world.pods["ctd-a"])
    qdiscs = runtimes.qdisc_kinds(world.host)
    assert f"tbf on {veth_b}" in qdiscs and f"ingress on {veth_b}" in qdiscs   # to the pod; egress via ifb
    ifbs = [link["ifname"] for link in runtimes.links(world.host)
            if link.get("linkinfo", {}).get("info_kind") == "ifb"]
    assert len(ifbs) == 1 and f"tbf on {ifbs[0]}" in qdiscs
    assert not [q for q in qdiscs if q.endswith(f" on {veth_a}")]


def test_stop_tears_the_network_down_and_remove_leaves_nothing(world):
    pods = list(world.pods.values())
    for pod in pods:
        world.cri.stop_pod(pod.sandbox.id)
    # StopPodSandbox runs the CNI DEL: nothing of the pods is left in the sandbox
    assert runtimes.sandbox_leftovers(world.host, harness.NETWORK, world.lease_dir,
                                      [p.attached for p in pods]) == []
    assert not any(world.cri.pod_ready(p.sandbox.id) for p in pods)
    for pod in pods:
        world.cri.remove_pod(pod.sandbox.id)
    assert world.cri.pod_ids() == []
    # containerd's own view: no pod netns file, no libcni result cached
    assert world.private("/run/netns") == []
    assert world.private("/var/lib/cni/results") == []
    assert cgroups.pids(world.ctd.cgroup_parent) == []       # no pause or app process runs on
