"""The multi-node fixture of the netns tests (agent, bgp, backends): see tests/netns/topo.py."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, TypeVar

import pytest

from tests.netns.topo import Topology

T = TypeVar("T", bound=Topology)


@pytest.fixture
def topology(make_netns, tmp_path) -> Iterator[Callable[..., Topology]]:
    """Factory: topology(cls=Topology, **options) builds one (a single one per test: it
    keeps its store and node dirs in tmp_path). Each is closed after the test, also when
    another's close fails, and before make_netns removes the namespaces."""
    with contextlib.ExitStack() as stack:
        def make(cls: type[T] = Topology, **options) -> T:
            made = cls(make_netns, tmp_path, **options)
            stack.callback(made.close)
            return made

        yield make
