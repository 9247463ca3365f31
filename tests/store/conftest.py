"""Store fixtures: `store` is parametrized over every implementation.

- sqlite: a fresh file per test (WAL, as agents use it).
- memory: `sqlite://:memory:`, the in-process fake with real semantics.
- etcd: one real etcd server per session inside a private netns (root needed;
  skipped when the `etcd` binary is missing); each test gets its own store
  object and works under a key prefix of its own, so tests do not see each
  other's keys.
"""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

from tests.conftest import RUN_ID
from tests.store.etcd_server import EtcdServer
from tulle.store import open_store
from tulle.store.etcd import EtcdStore

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd_server():
    if os.geteuid() != 0:
        pytest.skip("etcd tests need root (private netns)")
    if not shutil.which("etcd"):
        pytest.skip("etcd not installed (Debian package etcd-server)")
    EtcdServer.remove_stale()
    server = EtcdServer(f"tulle-etcd-{os.getpid()}")  # the real pid: remove_stale checks it
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses (the etcd server is shared)."""
    return f"/tulle-test/{RUN_ID}-{next(_prefixes)}/"


@pytest.fixture(params=[
    "sqlite",
    "memory",
    pytest.param("etcd", marks=pytest.mark.netns),
])
def store(request, tmp_path):
    if request.param == "etcd":
        s = request.getfixturevalue("etcd_server").store()
    elif request.param == "memory":
        s = open_store("sqlite://:memory:")
    else:
        s = open_store(f"sqlite://{tmp_path}/store.db")
    yield s
    s.close()


@pytest.fixture
def store_factory(request, tmp_path, store):
    """More clients of the same store as `store` (for concurrency tests)."""
    made = []

    def make():
        if isinstance(store, EtcdStore):
            s = request.getfixturevalue("etcd_server").store()
        elif store.path == ":memory:":
            pytest.skip("an in-memory store has one client only")
        else:
            s = open_store(f"sqlite://{store.path}")
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
