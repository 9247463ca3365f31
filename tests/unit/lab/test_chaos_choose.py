"""The chaos run's choice of operations (pure)."""

from __future__ import annotations

import random

from tulle.lab import chaos


def test_choose_respects_what_the_lab_holds():
    rng = random.Random(3)
    empty = chaos.Model(nodes=["n1"])
    assert "del" not in {chaos.choose(rng, empty) for _ in range(200)}
    full = chaos.Model(nodes=["n1"], running={f"p{i}" for i in range(chaos.MAX_PODS)})
    assert {chaos.choose(rng, full) for _ in range(200)} <= {"del", "restart", "outage"}
