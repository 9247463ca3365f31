"""Real-runtime proof: podman 4 (runc, CNI backend) on tulle's plugins.

Podman runs inside a sandbox netns with private state (tests/podman/harness.py);
two busybox containers get bridge + host-local + portmap + firewall + tuning.
The same scenario runs on Debian's reference plugins side by side, so a
difference points at tulle. Tests run in file order on one scenario per
flavour; the last one removes the containers and looks for leftovers.
"""

from __future__ import annotations

import pytest

from tests.podman import harness
from tulle.demo import checks, image

pytestmark = pytest.mark.podman

REQUEST = b"GET / HTTP/1.0\r\n\r\n"


@pytest.fixture(scope="module", params=[harness.TULLE, harness.REFERENCE])
def world(request):
    missing = harness.missing_prerequisites(request.param)
    if missing:
        pytest.skip(f"{request.param}: missing {', '.join(missing)}")
    with harness.world(request.param) as w:
        w.a = w.sb.run("pm-a", *harness.HTTPD)
        w.b = w.sb.run("pm-b", *harness.HTTPD, publish=("8080:80",))
        yield w


def test_containers_get_addresses_from_the_subnet(world):
    ips = {world.a.ip, world.b.ip}
    assert len(ips) == 2
    assert all(ip.startswith("10.88.7.") for ip in ips)
    assert harness.leases(world.sb) == sorted(ips)
    assert len(harness.veths(world.host)) == 2


def test_containers_ping_each_other(world):
    for src, dst in ((world.a, world.b), (world.b, world.a)):
        proc = world.sb.exec(src.name, "ping", "-c", "1", "-W", "2", dst.ip)
        assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_containers_talk_tcp(world):
    for src, dst in ((world.a, world.b), (world.b, world.a)):
        proc = world.sb.exec(src.name, "nc", "-w", "3", dst.ip, "80", input=REQUEST)
        assert proc.stdout.startswith(b"HTTP/1.") and proc.stdout.endswith(image.PAGE), proc.stdout[:200]


def test_published_port_answers_from_the_sandbox_host(world):
    assert checks.http_get(world.host, "10.88.7.1", 8080) == image.PAGE


def test_published_port_answers_from_a_client_netns(world):
    outside = checks.SANDBOX_ADDR.split("/")[0]
    assert checks.http_get(world.client, outside, 8080) == image.PAGE


def test_rm_leaves_nothing_behind(world):
    pods = [world.a, world.b]
    world.sb.remove(*(p.name for p in pods))
    world.sb.wait_quiet()
    # podman, host-local's files, the ip/tc/nft tools and tulle's own checks all see nothing left
    assert harness.leftovers(world, [checks.Attached(p.id, p.ip) for p in pods]) == []
    print(f"{world.flavour}: nft tables left (empty of the pods): {harness.tables(world.host)}")
