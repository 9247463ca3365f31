"""A seconds-long smoke of the bench: every scenario at a tiny size, so the suite
keeps working (figures are not checked — no timing assertions) and leaves nothing
behind. The real run is ./scripts/bench.sh (docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench import churn, cni_latency, control, core, report, throughput
from tests.conftest import RUN_ID

pytestmark = pytest.mark.netns


@pytest.fixture
def sandbox():
    sb = core.Sandbox()
    yield sb
    sb.close()


def test_cni_latency(sandbox):
    r = cni_latency.run(sandbox, cycles=1, warmup=0)
    assert set(r["stats"]) == {"agent", "standalone", "reference"}
    assert r["stats"]["agent"]["ADD"]["n"] == 1
    assert r["profile"]["standalone"]["top"]


def test_churn_leaves_nothing(sandbox):
    r = churn.run(sandbox, pods=2, rounds=1, parallel=(2,))
    assert r["by_parallel"]["2"]["leaks"] == {"agent": [], "reference": []}


def test_throughput_one_backend(sandbox):
    r = throughput.run(sandbox, ("vxlan",), seconds=1, rounds=1, pings=3, lab_prefix=f"s{RUN_ID}"[:8])
    cross = r["backends"]["vxlan"]["cross_node"]
    assert set(cross["streams1"]) == {"tulle", "hand", "veth"}
    assert cross["streams1"]["tulle"]["median"] > 0


def test_control_plane():
    r = control.run((2,), rounds=1, joins=1, window=0.2, lab_prefix=f"c{RUN_ID}"[:8])
    size = r["sizes"]["2"]
    assert size["alive"] and size["join"][0]["routed_on_all_s"] >= 0
    assert report.goals({"control": r})


def test_report_renders_without_runs():
    text = report.render({"id": "x", "started": "now", "duration_s": 1.0, "quick": True,
                          "machine": {"cpu": "c"}})
    assert "## Machine" in text and "## Goals" in text
