"""The one route diff of every backend (host-gw, vxlan, udp, bgp's CrossSubnet).

`diff(desired, held)` says what turns the routes a backend holds into the ones it
wants: `held` is either what its last pass wrote (the store-change path, which
reads nothing back) or what the kernel holds with its route protocol number (the
reconcile path, which repairs drift). Both give the same writes for the same
state, which is what makes an incremental update and a full resync agree.

A route is identified as the kernel identifies an IPv4 route — (table, dst,
metric) — and is the same when it also has the same gateway, device, onlink flag
and type; the fields the kernel fills in (scope, prefsrc) are not compared. A
route whose identity is held with other content is replaced in place (one
`ip route replace`, no window without a route); one held but not wanted is
deleted; a second held route with an identity already seen (`ip route append`)
is deleted too.

`write` is the shell: deletions first, then additions and replacements, every
change tried, one KernelError for all that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from tulle.agent import log
from tulle.errors import KernelError, TulleError
from tulle.kernel import routes
from tulle.kernel.routes import Route


def route_key(r: Route) -> tuple:
    """The kernel's identity of an IPv4 route."""
    return (r.table, r.dst, r.metric)


def same(a: Route, b: Route) -> bool:
    """Does `a` route like `b` (kernel-filled fields aside)?"""
    return (a.gw, a.dev, a.onlink, a.blackhole) == (b.gw, b.dev, b.onlink, b.blackhole)


@dataclass(frozen=True)
class RouteDiff:
    add: list[Route] = field(default_factory=list)
    replace: list[Route] = field(default_factory=list)
    delete: list[Route] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.replace or self.delete)

    def deletions(self) -> RouteDiff:
        return RouteDiff(delete=self.delete)

    def writes(self) -> RouteDiff:
        return RouteDiff(add=self.add, replace=self.replace)


def diff(desired: Iterable[Route], held: Iterable[Route]) -> RouteDiff:
    """What to add, replace and delete so that `held` becomes `desired` (pure)."""
    want = {route_key(r): r for r in desired}
    kept: dict[tuple, Route] = {}    # per identity, the held route that stays (rewritten if it differs)
    delete: list[Route] = []
    for r in held:
        key = route_key(r)
        if key not in want:
            delete.append(r)
        elif key not in kept:
            kept[key] = r
        elif same(r, want[key]) and not same(kept[key], want[key]):   # keep the duplicate that is right
            delete.append(kept[key])
            kept[key] = r
        else:
            delete.append(r)
    return RouteDiff(add=[r for k, r in want.items() if k not in kept],
                     replace=[r for k, r in want.items() if k in kept and not same(kept[k], r)],
                     delete=delete)


class WriteFailed(KernelError):
    """Some route changes failed (all were tried); `unwritten` counts the adds and replaces among them."""

    def __init__(self, msg: str, unwritten: int) -> None:
        super().__init__(msg)
        self.unwritten = unwritten


def owned(proto: int) -> list[Route]:
    """The IPv4 routes of the main table that carry route protocol number `proto`."""
    return [r for r in routes.list_routes(4) if r.proto == proto]


def write(todo: RouteDiff, owner: str) -> None:
    """Make the kernel (this thread's netns) do `todo`; WriteFailed after trying every change."""
    failures: list[str] = []
    unwritten = 0
    for r in todo.delete:
        try:
            routes.delete(r)
            log.info("route removed", backend=owner, dst=r.dst, gw=r.gw, dev=r.dev)
        except TulleError as exc:
            failures.append(exc.msg)
    for verb, batch in (("added", todo.add), ("replaced", todo.replace)):
        for r in batch:
            try:
                routes.replace(r)
                log.info(f"route {verb}", backend=owner, dst=r.dst, gw=r.gw, dev=r.dev)
            except TulleError as exc:
                failures.append(exc.msg)
                unwritten += 1
    if failures:
        raise WriteFailed(f"{owner}: {len(failures)} route change(s) failed: {'; '.join(failures)}", unwritten)
