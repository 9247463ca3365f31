"""The pause-container model through a real podman on tulle's plugins (seeds 001-003).

A pod's containers share one network namespace, made by its infra ("pause")
container, and reach each other on localhost; docker/podman's network modes
`none`, `host` and `container:<id>` decide whether a container gets a netns of its
own and whether the CNI plugins run at all.

Podman 4.3 needs no pull for a pod: with no `infra_image` configured it builds
`localhost/podman-pause:<version>` itself from the catatonit binary on the host (the
catatonit package), so `podman pod create` is used as is, infra container included.

The sandbox's plugins sit behind recording shims (harness.world(record_calls=True)),
so every test can say which CNI ADD/DEL podman asked for, not only what the kernel
holds. One sandbox serves the whole module; each scenario starts from an empty podman
(harness.scenario) and ends by looking for leftovers with the harness's independent
views (podman, host-local's files, ip/tc/nft, tulle's own checks).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

import pytest

from tests import cnirun
from tests.podman import harness
from tulle.demo import checks, image
from tulle.demo.podman import Container

pytestmark = pytest.mark.podman

POD = "pm-pod"
PAUSE_INIT = "/usr/libexec/podman/catatonit"  # where Debian's podman finds it


@pytest.fixture(scope="module")
def shared_world():
    missing = harness.missing_prerequisites(harness.TULLE)
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    with harness.world(harness.TULLE, record_calls=True) as w:
        yield w


@pytest.fixture
def world(shared_world):
    with harness.scenario(shared_world) as w:
        yield w


def _eth0_addresses(ns: str) -> list[str]:
    """eth0's IPv4 addresses in a netns, read with the ip tool from outside."""
    return [f"{a['local']}/{a['prefixlen']}" for link in cnirun.ip_json(ns, "addr", "show", "dev", "eth0")
            for a in link["addr_info"] if a["family"] == "inet"]


# --- a pod: one netns for all its containers, owned by the infra container ---

@dataclass
class Pod:
    world: harness.World
    infra: str          # the infra container's ID: the one CNI attachment is its
    ip: str
    a: Container        # runs the web server
    b: Container        # only sleeps: a client inside the pod


@pytest.fixture(scope="class")
def pod(shared_world):
    """`podman pod create --network <tulle>`, then two `podman run --pod` containers."""
    if not os.path.exists(PAUSE_INIT):
        pytest.skip(f"{PAUSE_INIT} is missing: podman builds its pause image from it (package catatonit)")
    with harness.scenario(shared_world) as w:
        w.sb.pod_create(POD)
        a = w.sb.run(f"{POD}-a", *harness.HTTPD, pod=POD)
        b = w.sb.run(f"{POD}-b", "sleep", "600", pod=POD)
        infra = w.sb.inspect(POD, kind="pod")["InfraContainerID"]
        ip = w.sb.inspect(infra)["NetworkSettings"]["Networks"][w.sb.network]["IPAddress"]
        yield Pod(w, infra, ip, a, b)


class TestPod:
    """One pod shared by the tests of this class, in file order; the last removes it."""

    def test_one_infra_container_made_the_pods_only_attachment(self, pod):
        sb = pod.world.sb
        info = sb.inspect(POD, kind="pod")
        assert "net" in info["SharedNamespaces"]
        assert {c["Id"] for c in info["Containers"]} == {pod.infra, pod.a.id, pod.b.id}
        for member in (pod.a, pod.b):  # what kubelet does with `--net=container:<pause>`
            assert sb.inspect(member.name)["HostConfig"]["NetworkMode"] == f"container:{pod.infra}"
        infras = [c for c in harness.ps(sb) if c["IsInfra"]]
        assert [c["Id"] for c in infras] == [pod.infra]
        assert infras[0]["Image"].startswith("localhost/podman-pause:")  # built here, not pulled
        assert pod.world.cni_calls("ADD") == [pod.infra]  # once, for the pod: not per container
        assert len(sb.new_podman_netns()) == 1

    def test_the_containers_share_the_infra_containers_netns(self, pod):
        sb = pod.world.sb
        spaces = {harness.netns_id(harness.container_netns(sb, c)) for c in (pod.infra, pod.a.name, pod.b.name)}
        assert len(spaces) == 1
        assert harness.links_seen(sb, pod.a.name) == harness.links_seen(sb, pod.b.name) == ["eth0", "lo"]
        seen = harness.addresses_seen(sb, pod.a.name)
        assert seen == harness.addresses_seen(sb, pod.b.name)
        assert f"eth0 inet {pod.ip}/24" in seen

    def test_one_pod_ip_from_host_local(self, pod):
        sb = pod.world.sb
        assert ipaddress.ip_address(pod.ip) in ipaddress.ip_network(sb.subnet)
        assert pod.a.ip == pod.b.ip == pod.ip
        assert harness.leases(sb) == [pod.ip]
        assert _eth0_addresses(harness.container_netns(sb, pod.b.name)) == [f"{pod.ip}/24"]
        assert len(harness.veths(pod.world.host)) == 1

    def test_b_reaches_a_on_localhost(self, pod):
        assert harness.container_http_get(pod.world.sb, pod.b.name, "127.0.0.1", 80) == image.PAGE

    def test_the_sandbox_host_reaches_the_pod_ip(self, pod):
        assert checks.http_get(pod.world.host, pod.ip, 80) == image.PAGE

    def test_pod_rm_runs_del_once_and_leaves_nothing(self, pod):
        w = pod.world
        w.sb.remove_pods(POD)
        w.sb.wait_quiet()
        assert w.cni_calls("DEL") == [pod.infra]
        assert harness.leftovers(w, [checks.Attached(pod.infra, pod.ip)]) == []


# --- network modes without an attachment of their own ---------------------

def test_network_none_has_only_loopback_and_no_cni_add(world):
    sb = world.sb
    c = sb.run("pm-none", "sleep", "600", network="none")
    ns = harness.container_netns(sb, c.name)
    assert c.ip == ""
    assert harness.links_seen(sb, c.name) == ["lo"]
    assert [link["ifname"] for link in cnirun.ip_json(ns, "link", "show")] == ["lo"]
    assert harness.netns_id(ns) != harness.netns_id(world.host)  # a netns of its own, empty
    assert world.cni_calls("ADD") == []
    assert harness.leases(sb) == [] and harness.veths(world.host) == []
    sb.remove(c.name)
    sb.wait_quiet()
    assert world.cni_calls("DEL") == []
    assert harness.leftovers(world, []) == []


def test_network_host_is_the_sandbox_podman_runs_in(world):
    sb = world.sb
    c = sb.run("pm-host", *harness.HTTPD, network="host")
    assert c.ip == ""
    assert harness.netns_id(harness.container_netns(sb, c.name)) == harness.netns_id(world.host)
    assert harness.links_seen(sb, c.name) == sorted(link["ifname"] for link in harness.links(world.host))
    assert f"{checks.CLIENT_LINK} inet {checks.SANDBOX_ADDR}" in harness.addresses_seen(sb, c.name)
    # its server listens on the sandbox's own address, reached over the client's link
    assert checks.http_get(world.client, checks.SANDBOX_ADDR.split("/")[0], 80) == image.PAGE
    assert world.cni_calls("ADD") == []
    assert harness.leases(sb) == [] and harness.veths(world.host) == []
    sb.remove(c.name)
    sb.wait_quiet()
    assert world.cni_calls("DEL") == []
    assert harness.leftovers(world, []) == []


# --- container:<id>: what a pod does, by hand ------------------------------

def test_network_container_joins_the_first_containers_netns(world):
    sb = world.sb
    first = sb.run("pm-first", *harness.HTTPD)
    joined = sb.run("pm-joined", "sleep", "600", network=f"container:{first.id}")
    assert sb.inspect(joined.name)["HostConfig"]["NetworkMode"] == f"container:{first.id}"
    assert harness.netns_id(harness.container_netns(sb, first.name)) == \
        harness.netns_id(harness.container_netns(sb, joined.name))
    assert harness.addresses_seen(sb, joined.name) == harness.addresses_seen(sb, first.name)
    assert joined.ip == first.ip
    assert world.cni_calls("ADD") == [first.id]  # no second attachment
    assert harness.leases(sb) == [first.ip]
    assert harness.container_http_get(sb, joined.name, "127.0.0.1", 80) == image.PAGE

    veths = harness.veths(world.host)
    sb.remove(joined.name)
    sb.wait_quiet()
    assert world.cni_calls("DEL") == []  # the netns and its attachment stay with the first
    assert harness.leases(sb) == [first.ip] and harness.veths(world.host) == veths
    assert checks.http_get(world.host, first.ip, 80) == image.PAGE

    sb.remove(first.name)
    sb.wait_quiet()
    assert world.cni_calls("DEL") == [first.id]
    assert harness.leftovers(world, [checks.Attached(first.id, first.ip)]) == []
