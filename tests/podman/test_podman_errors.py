"""A failing ADD seen through podman: the error reaches the user and nothing is
left behind by the failed attachment (tulle's plugins only)."""

from __future__ import annotations

import os

import pytest

from tests.podman import harness
from tulle.demo.podman import PodmanError

pytestmark = pytest.mark.podman


@pytest.fixture
def tiny_world():
    missing = harness.missing_prerequisites(harness.TULLE)
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    with harness.world(harness.TULLE, subnet="10.88.7.0/30") as w:  # one address for pods: .2
        yield w


def test_exhausted_range_fails_podman_run_and_leaves_nothing(tiny_world):
    sb = tiny_world.sb
    first = sb.run("pm-first", "sleep", "60")
    assert first.ip == "10.88.7.2"
    veths, leases = harness.veths(tiny_world.host), sorted(os.listdir(sb.lease_dir))

    with pytest.raises(PodmanError) as err:
        sb.run("pm-second", "sleep", "60")
    assert 'plugin type="bridge" failed (add)' in err.value.msg
    assert "10.88.7" in err.value.msg  # the message names the exhausted range

    assert harness.veths(tiny_world.host) == veths
    assert sorted(os.listdir(sb.lease_dir)) == leases
    assert len(sb.new_podman_netns()) == 1  # the first container's only
    sb.remove("pm-first", "pm-second")
    sb.wait_quiet()
    assert harness.veths(tiny_world.host) == []
    assert harness.leases(sb) == []
    assert sb.new_podman_netns() == []
