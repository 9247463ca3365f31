"""The one route diff every backend writes through (pure)."""

from __future__ import annotations

import ipaddress

from tulle.agent.backends.routediff import RouteDiff, diff
from tulle.kernel.routes import Route

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


def r(dst: str, gw: str, dev: str = "eth0", **kw) -> Route:
    return Route(dst=NET(dst), gw=IP(gw), dev=dev, proto=250, **kw)


def pairs(routes: list[Route]) -> list[tuple[str, str]]:
    return [(str(x.dst), str(x.gw)) for x in routes]


def test_adds_replaces_and_deletes_exactly_the_difference():
    held = [r("10.244.1.0/24", "198.51.100.11", scope=253), r("10.244.2.0/24", "198.51.100.12"),
            r("10.244.3.0/24", "198.51.100.99")]
    desired = [r("10.244.1.0/24", "198.51.100.11"), r("10.244.3.0/24", "198.51.100.13"),
               r("10.244.4.0/24", "198.51.100.14")]
    todo = diff(desired, held)
    assert pairs(todo.add) == [("10.244.4.0/24", "198.51.100.14")]
    assert pairs(todo.replace) == [("10.244.3.0/24", "198.51.100.13")]     # in place: no gap
    assert pairs(todo.delete) == [("10.244.2.0/24", "198.51.100.12")]
    assert not diff(desired, desired) and diff(desired, desired) == RouteDiff()


def test_kernel_filled_fields_do_not_count_but_device_and_onlink_do():
    want = r("10.244.2.0/24", "10.244.2.0", dev="tulle.1", onlink=True)
    assert not diff([want], [r("10.244.2.0/24", "10.244.2.0", dev="tulle.1", onlink=True, scope=0,
                               src=IP("10.244.1.0"))])
    moved = diff([r("10.244.2.0/24", "198.51.100.12")], [want])    # vxlan's DirectRouting switched on
    assert pairs(moved.replace) == [("10.244.2.0/24", "198.51.100.12")] and not moved.delete


def test_identity_is_table_destination_and_metric():
    other_table = r("10.244.2.0/24", "198.51.100.12", table=100)
    todo = diff([r("10.244.2.0/24", "198.51.100.12")], [other_table])
    assert todo.add and todo.delete == [other_table]


def test_a_second_route_for_one_destination_goes_and_the_right_one_stays():
    good, stray = r("10.244.2.0/24", "198.51.100.12"), r("10.244.2.0/24", "198.51.100.99")
    for held in ([good, stray], [stray, good]):
        todo = diff([good], held)
        assert todo.delete == [stray] and not todo.add and not todo.replace


def test_deletions_and_writes_split_for_ordering():
    todo = diff([r("10.244.4.0/24", "198.51.100.14")], [r("10.244.2.0/24", "198.51.100.12")])
    assert todo.deletions() == RouteDiff(delete=todo.delete)
    assert todo.writes() == RouteDiff(add=todo.add)
