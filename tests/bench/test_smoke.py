"""A seconds-long smoke of the bench: every scenario at a tiny size, so the suite
keeps working (figures are not checked — no timing assertions) and leaves nothing
behind. The real run is ./scripts/bench.sh (docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench import churn, cni_latency, control, core, objects, report, throughput
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


def test_objects_slices_and_failover():
    r = objects.run(rounds=2, failovers=1, lab=f"o{RUN_ID}"[:8])
    assert r["slice"]["ready_s"]["n"] == 2 and r["store_floor_s"]["n"] == 2
    assert r["failover"]["runs"][0]["to"] != r["failover"]["runs"][0]["from"]
    assert any(g["goal"].startswith("leader failover") for g in report.goals({"objects": r}))
    text = report.render({"id": "x", "started": "now", "duration_s": 1.0, "quick": True, "machine": {"cpu": "c"},
                          "objects": r})
    assert "## Cluster objects" in text and "leader failover" in text


def test_churn_leaves_nothing(sandbox):
    r = churn.run(sandbox, pods=2, rounds=1, parallel=(2,))
    assert r["by_parallel"]["2"]["leaks"] == {"agent": [], "reference": []}


def test_throughput_one_backend(sandbox):
    r = throughput.run(sandbox, ("vxlan",), seconds=1, rounds=1, pings=3, lab_prefix=f"s{RUN_ID}"[:8])
    cross = r["backends"]["vxlan"]["cross_node"]
    assert set(cross["streams1"]) == {"tulle", "hand", "veth"}
    assert cross["streams1"]["tulle"]["median"] > 0


def test_throughput_bgp_against_routed_hand_path(sandbox):
    r = throughput.run(sandbox, ("bgp",), seconds=1, rounds=1, pings=3, lab_prefix=f"s{RUN_ID}"[:8])
    b = r["backends"]["bgp"]
    assert (b["hand_path"], b["pod_wiring"]) == ("routed", "routed")
    for where in ("cross_node", "same_node"):
        assert set(b[where]["streams1"]) == {"tulle", "hand", "veth"}
        assert b[where]["streams1"]["hand"]["median"] > 0
    assert not sandbox.names


def test_throughput_unknown_backend_is_refused_before_any_lab(sandbox):
    with pytest.raises(ValueError, match="no hand-wired path for backend 'ipip'"):
        throughput.run(sandbox, ("host-gw", "ipip"), seconds=1, rounds=1, pings=1, lab_prefix=f"u{RUN_ID}"[:8])
    assert not sandbox.names


def _tp(backend: str, wiring: str) -> dict:
    path = {"n": 1, "median": 2.0, "p90": 2.0, "min": 2.0, "max": 2.0}
    d = {"streams1": {p: path for p in ("tulle", "hand", "veth")},
         "streams4": {p: path for p in ("tulle", "hand", "veth")},
         "rtt_ms": {p: {**path, "median": 0.05, "p90": 0.06} for p in ("tulle", "hand", "veth")},
         "ratios": {"tulle/hand": {"streams1": 0.94, "streams4": 1.0, "rtt": 1.0},
                    "tulle/veth": {"streams1": 0.9, "streams4": 1.0, "rtt": 1.0}}}
    return {"backend": backend, "pod_mtu": 1450, "pod_wiring": wiring, "cross_node": d, "same_node": d}


def test_report_renders_bgp_section_and_goal():
    r = {"id": "x", "started": "now", "duration_s": 1.0, "quick": True, "machine": {"cpu": "c"},
         "throughput": {"seconds": 1, "rounds": 1,
                        "backends": {"host-gw": _tp("host-gw", "bridge"), "bgp": _tp("bgp", "routed")}}}
    g = {x["goal"]: x for x in report.goals(r)}["bgp cross-node single stream vs hand-wired"]
    assert (g["target"], g["value"], g["met"]) == ("≥ 0.95×", 0.94, False)
    text = report.render(r)
    assert "### bgp, across nodes (pod MTU 1450)" in text
    assert "### bgp, same node (routed by the node; bgp's wiring)" in text
    assert "### host-gw, same node (bridge; the same for host-gw, vxlan, udp)" in text


def test_control_plane():
    r = control.run((2,), rounds=1, joins=1, window=0.2, lab_prefix=f"c{RUN_ID}"[:8])
    size = r["sizes"]["2"]
    assert size["alive"] and size["join"][0]["routed_on_all_s"] >= 0
    assert report.goals({"control": r})


def test_report_renders_without_runs():
    text = report.render({"id": "x", "started": "now", "duration_s": 1.0, "quick": True,
                          "machine": {"cpu": "c"}})
    assert "## Machine" in text and "## Goals" in text
