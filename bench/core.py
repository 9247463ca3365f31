"""Shared mechanics of the bench: statistics, alternation, sandbox namespaces, commands.

Why alternation: a single VM drifts (CPU steal, page cache, thermal); running
peer A then B then A … and comparing medians cancels most of it.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from tulle.kernel import netns

CMD_TIMEOUT = 60.0


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every value is a real sample)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def p90(xs: list[float]) -> float:
    return percentile(xs, 90)


def summary(xs: list[float]) -> dict[str, float | int]:
    return {"n": len(xs), "median": median(xs), "p90": p90(xs), "min": min(xs) if xs else float("nan"),
            "max": max(xs) if xs else float("nan")}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def alternate(rounds: int, peers: dict[str, Callable[[int], None]]) -> None:
    """Run each peer once per round, rotating who goes first (A B, B A, …)."""
    names = list(peers)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            peers[name](r)


class Timer:
    """`with Timer() as t: …` then t.seconds."""

    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


# --- namespaces of one bench run ---------------------------------------------------------

_RUN = f"b{os.getpid() % 100000}"
_counter = itertools.count()


@dataclass
class Sandbox:
    """Named netns `tulle-<run>-<n>-<tag>` made by this run; `close` removes them all (reverse order)."""
    names: list[str] = field(default_factory=list)

    def make(self, tag: str) -> str:
        name = f"tulle-{_RUN}-{next(_counter)}-{tag}"[:40]
        path = netns.create(name)
        self.names.append(name)
        return path

    def close(self) -> None:
        for name in reversed(self.names):
            netns.remove(name)
        self.names.clear()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def name_of(path: str) -> str:
    return os.path.basename(path)


def in_ns(ns: str, *cmd: str, check: bool = True, timeout: float = CMD_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Run a command inside a netns (path) via nsenter; raises with stderr when it fails."""
    proc = subprocess.run(["nsenter", f"--net={ns}", *cmd], capture_output=True, text=True, check=False,
                          timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {ns} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def ip(ns: str, *args: str) -> None:
    """`ip` inside a netns: the hand-wired reference paths are built with plain ip commands."""
    in_ns(ns, "ip", *args)


def ip_batch(ns: str, lines: Iterable[str]) -> None:
    """Many ip commands in one process (`ip -batch -`)."""
    text = "\n".join(lines) + "\n"
    proc = subprocess.run(["nsenter", f"--net={ns}", "ip", "-batch", "-"], input=text, capture_output=True,
                          text=True, check=False, timeout=CMD_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"ip -batch in {ns} failed: {proc.stderr.strip()}\n{text}")


def fmt(x: float, unit: str = "", digits: int = 3) -> str:
    if x != x:  # nan
        return "–"
    return f"{x:.{digits}g}{unit}"


def stop_processes(procs: list) -> None:
    """Terminate processes we started (by their Popen handle, i.e. by pid), bounded; kill stragglers."""
    import subprocess as _sp

    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except _sp.TimeoutExpired:
            p.kill()
            p.wait(5)
