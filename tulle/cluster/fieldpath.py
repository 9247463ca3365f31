"""Field paths as apimachinery's `field.Path` prints them: `spec.ports[0].port`,
`metadata.labels[app]`. One spelling for the schema walk and for validation, so a
warning and an error about the same field name it the same way."""

from __future__ import annotations

from typing import Any


def child(path: str, *names: str) -> str:
    """`spec` + `ports` → `spec.ports` (the root path is the empty string)."""
    for name in names:
        path = f"{path}.{name}" if path else name
    return path


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: Any) -> str:
    """A map entry: `data[tls.crt]`, `metadata.labels[app]`."""
    return f"{path}[{k}]"
