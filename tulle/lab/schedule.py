"""Where a lab pod runs when its manifest names no node: the scheduler's role, as pure functions.

A plain Pod goes to the node with the fewest pods; a Deployment's new replicas are
spread (each to the node holding the fewest replicas of that Deployment, ties to
the node with the fewest pods overall, then node order), so replicas land on
different nodes while there are nodes to spare.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from tulle.errors import TulleError


def least_loaded(nodes: Sequence[str], pods_per_node: Mapping[str, int]) -> str:
    if not nodes:
        raise TulleError("the lab has no node to run the pod on")
    return min(nodes, key=lambda n: (pods_per_node.get(n, 0), _order(n)))


def spread(nodes: Sequence[str], pods_per_node: Mapping[str, int], mine_per_node: Mapping[str, int],
           count: int) -> list[str]:
    """Nodes for `count` new replicas, given the pods (all, and this set's) each node holds."""
    if count > 0 and not nodes:
        raise TulleError("the lab has no node to run the pods on")
    total, mine = dict(pods_per_node), dict(mine_per_node)
    out = []
    for _ in range(count):
        node = min(nodes, key=lambda n: (mine.get(n, 0), total.get(n, 0), _order(n)))
        out.append(node)
        mine[node] = mine.get(node, 0) + 1
        total[node] = total.get(node, 0) + 1
    return out


def _order(node: str) -> tuple[int, str]:
    """n2 before n10."""
    digits = node.lstrip("n")
    return (int(digits), node) if digits.isdigit() else (1 << 30, node)
