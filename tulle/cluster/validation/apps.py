"""Deployment validation (apps/v1): replicas, a non-empty selector that picks the
template's own labels and never changes, the rollout strategy, and the template
validated as a Pod (paths `spec.template.spec.containers[0]...`)."""

from __future__ import annotations

from typing import Any

from tulle.cluster import labels as selectors
from tulle.cluster import names
from tulle.cluster.errors import FieldError, forbidden, invalid, not_supported, required
from tulle.cluster.validation.common import NEGATIVE, immutable, non_negative
from tulle.cluster.validation.meta import SELECTOR_OPERATORS, label_selector
from tulle.cluster.validation.pods import pod_template

STRATEGIES = ["Recreate", "RollingUpdate"]


def _int_or_percent(path: str, value: int | str) -> list[FieldError]:
    if isinstance(value, str):
        problems = names.percent_errors(value)
        if problems:
            return [invalid(path, value, m) for m in problems]
        if int(value[:-1]) > 100:
            return [invalid(path, value, "must not be greater than 100%")]
        return []
    return [invalid(path, value, NEGATIVE)] if value < 0 else []


def _amount(value: int | str) -> int:
    """An int-or-percent as a number (the percent's number; malformed counts as 0)."""
    if isinstance(value, int):
        return value
    return int(value[:-1]) if not names.percent_errors(value) else 0


def _strategy(strategy: dict[str, Any]) -> list[FieldError]:
    kind, rolling = strategy.get("type", ""), strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind != "RollingUpdate":
        return [not_supported("spec.strategy", strategy, STRATEGIES)]
    if rolling is None:
        return [required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")]
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    out = _int_or_percent("spec.strategy.rollingUpdate.maxUnavailable", unavailable)
    out += _int_or_percent("spec.strategy.rollingUpdate.maxSurge", surge)
    if _amount(unavailable) == 0 and _amount(surge) == 0:
        out.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", unavailable,
                           "may not be 0 when `maxSurge` is 0"))
    return out


def _selects_template(spec: dict[str, Any]) -> list[FieldError]:
    selector, template = spec.get("selector"), spec.get("template")
    if not selector or template is None:
        return []
    if any(e.get("operator") not in SELECTOR_OPERATORS for e in selector.get("matchExpressions") or []):
        return [invalid("spec.selector", selector, "invalid label selector")]
    own = (template.get("metadata") or {}).get("labels") or {}
    if selectors.selector_matches(selector, own):
        return []
    return [invalid("spec.template.metadata.labels", own, "`selector` does not match template `labels`")]


def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out = non_negative("spec.replicas", spec.get("replicas", 0))
    selector = spec.get("selector")
    if selector is None:
        out.append(required("spec.selector"))
    else:
        out += label_selector("spec.selector", selector)
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            out.append(invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    out += _selects_template(spec)
    out += pod_template("spec.template", spec.get("template"))
    restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if restart not in (None, "Always"):
        out.append(not_supported("spec.template.spec.restartPolicy", restart, ["Always"]))
    if ((spec.get("template") or {}).get("spec") or {}).get("activeDeadlineSeconds") is not None:
        out.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                             "activeDeadlineSeconds in ReplicaSet is not Supported"))
    out += _strategy(spec.get("strategy") or {})
    out += non_negative("spec.minReadySeconds", spec.get("minReadySeconds", 0))
    out += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit", 0))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        out += non_negative("spec.progressDeadlineSeconds", deadline)
        if deadline <= spec.get("minReadySeconds", 0):
            out.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    if old is not None:
        out += immutable("spec.selector", selector, (old.get("spec") or {}).get("selector"))
    return out
