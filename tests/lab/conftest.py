"""Lab fixtures: labs with names of this test run, always brought down afterwards."""

from __future__ import annotations

import importlib.util
import itertools

import pytest

from tests.conftest import RUN_ID
from tulle.lab import cluster
from tulle.lab.state import LabState

_labs = itertools.count()


def agent_available() -> bool:
    """`tulle agent run` exists (the lab's agents are real processes of it)."""
    return importlib.util.find_spec("tulle.agent.daemon") is not None


needs_agent = pytest.mark.skipif(not agent_available(),
                                 reason="tulle.agent.daemon (`tulle agent run`) is not available")


def new_lab_name() -> str:
    """t<run><k>: 12 characters at most, and never the `tulle-t<run>-<n>` shape of make_netns."""
    return f"t{RUN_ID}l{next(_labs)}"


@pytest.fixture
def lab_name(request):
    """A fresh lab name; whatever a test made under it is removed afterwards."""
    name = new_lab_name()
    yield name
    cluster.down(name)


@pytest.fixture
def make_lab():
    """make_lab(**options) -> LabState: `lab up` under a fresh name, `lab down` afterwards."""
    made: list[str] = []

    def make(**options) -> LabState:
        name = new_lab_name()
        made.append(name)
        return cluster.up(name, **options)

    yield make
    for name in made:
        cluster.down(name)
