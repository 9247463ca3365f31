"""Helpers for the two kinds of cleanup a plugin does.

Undo (a failed ADD) must never hide the error that caused it, so undo steps
run `quietly`. Teardown (DEL, GC) must keep going past a failing step, so the
remaining resources are still released, and report the first failure at the end.
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("tulle.cni")


def quietly(fn: Callable[..., object], *args, **kwargs) -> Callable[[], None]:
    """An ExitStack callback that logs instead of raising."""

    def step() -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # an undo must not replace the original error
            log.warning("undo %s failed: %s", getattr(fn, "__name__", fn), exc)

    return step


class Steps:
    """Run every teardown step; raise the first failure once all have run."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def run(self, fn: Callable[..., object], *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # keep going; reported by finish()
            log.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)
            self.errors.append(exc)

    def finish(self) -> None:
        if self.errors:
            raise self.errors[0]
