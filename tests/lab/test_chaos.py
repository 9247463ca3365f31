"""The chaos run, short: random pod adds and dels, interrupted adds, agent restarts, a store
outage and bursts of concurrent adds on a 3-node lab, then the invariants (every pod
reachable from every node, leases = veths = pods, nothing left after deleting them). The
long run is `tulle lab chaos --ops 1000` (docs/lab.md)."""

from __future__ import annotations

import pytest

from tests.lab.conftest import lab_up, needs_agent
from tulle.lab import chaos

pytestmark = [pytest.mark.netns, needs_agent]


@pytest.mark.parametrize("backend, seed", [("vxlan", 7)])
def test_short_chaos_run_breaks_no_invariant(backend, seed):
    with lab_up(nodes_count=3, backend=backend) as lab:
        report = chaos.run(lab, ops=60, seed=seed, check_every=30)
    assert report.ok, "\n".join(report.failures)
    assert sum(report.ops.values()) == 60 and len(report.ops) >= 5, report.ops
