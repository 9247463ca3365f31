"""Fixtures of the bgp netns tests: `bgplab(segments=1)` builds a topo.BgpLab and tears it down."""

from __future__ import annotations

import shutil

import pytest

from tests.netns.bgp.topo import BgpLab


@pytest.fixture
def bgplab(make_netns, tmp_path, cni):
    if not shutil.which("bird"):
        pytest.skip("bird2 is not installed")
    made: list[BgpLab] = []

    def make(segments: int = 1) -> BgpLab:
        lab = BgpLab(make_netns, tmp_path, cni, segments)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        lab.close()
