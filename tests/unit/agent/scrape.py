"""Read the agent's metrics as a Prometheus server would: the exposition text, parsed by
prometheus_client's own parser, so tests see names, types and labels as a scraper does."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tulle.agent import metrics


def families(registry: CollectorRegistry = metrics.REGISTRY) -> dict[str, Metric]:
    """Family name (a counter's without `_total`, as the parser names it) → family."""
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def value(name: str, registry: CollectorRegistry = metrics.REGISTRY, **labels: str) -> float:
    """The sample `name{labels}` (exactly those labels); 0 when the series is not exported yet,
    which is what a counter that never counted reads as."""
    for family in families(registry).values():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0
