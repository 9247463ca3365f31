"""Lab fixtures: labs with names of this test run, always brought down afterwards."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
from typing import Iterator

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


@contextlib.contextmanager
def lab_up(**options) -> Iterator[str]:
    """A lab under a fresh name for a whole module (`lab up` takes seconds), always brought down."""
    name = new_lab_name()
    try:
        cluster.up(name, **options)
        yield name
    finally:
        cluster.down(name)


@contextlib.contextmanager
def api(lab: str):
    """The object API over the lab's store (a Client)."""
    from tulle.lab.session import open_session

    with open_session(lab, lock=False) as s:
        yield s.client


def cli(*args: str) -> tuple[int, str, str]:
    """`tulle ARGS` run in this process: (exit code, stdout, stderr), without a new interpreter's start."""
    from tulle.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:          # argparse refusals
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
