"""The pod side of a call: checking that the netns exists and working inside it."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from tulle.cni.errors import UNKNOWN_CONTAINER, CNIError
from tulle.kernel import netns

T = TypeVar("T")


def require_netns(path: str) -> str:
    """The pod's netns path, or error 3 (container unknown) when it is not a netns."""
    if not netns.is_netns(path):
        why = "is not a network namespace" if os.path.exists(path) else "does not exist"
        raise CNIError(UNKNOWN_CONTAINER, f"network namespace {path!r} {why}")
    return path


def present(path: str) -> bool:
    """For DEL: is there still a netns to clean up in?"""
    return bool(path) and netns.is_netns(path)


def run(path: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run fn inside the pod's netns."""
    return netns.run_in(path, fn, *args, **kwargs)
