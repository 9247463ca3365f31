"""Lease validation (coordination.k8s.io/v1): durations and transition counts; the
times' format is the schema's (MicroTime)."""

from __future__ import annotations

from typing import Any

from tulle.cluster.errors import FieldError, forbidden, invalid, not_supported

STRATEGIES = ["OldestEmulationVersion"]


def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        out.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        out.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if strategy and strategy not in STRATEGIES:
        out.append(not_supported("spec.strategy", strategy, STRATEGIES))
    if spec.get("preferredHolder") and not strategy:
        out.append(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return out
