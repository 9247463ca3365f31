"""SQLite-only behaviour: several processes on one file, history trimming,
lazy lease expiry by whichever client comes next, files that cannot be opened."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from tulle.store import Compacted, StoreUnavailable, open_store
from tulle.store.sqlite import SqliteStore

KEYS = [f"/coreos.com/network/subnets/10.244.{i}.0-24" for i in range(20)]


def _creator(args: tuple[str, int, object]) -> list[tuple[str, int]]:
    """One 'agent process': 25 create attempts over the 20 shared keys."""
    path, n, start = args
    store = open_store(f"sqlite://{path}")
    start.wait(30)
    wins = []
    for i in range(25):
        key = KEYS[(i + 5 * n) % len(KEYS)]
        kv = store.create(key, f"node{n}")
        if kv is not None:
            wins.append((key, kv.create_revision))
    store.close()
    return wins


def test_processes_never_win_the_same_key(tmp_path):
    path = str(tmp_path / "store.db")
    open_store(f"sqlite://{path}").close()  # schema first, as an agent's first start would
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(4) as pool:
            result = pool.map_async(_creator, [(path, n, start) for n in range(4)])
            start.set()
            per_process = result.get(timeout=120)
    wins = [w for ws in per_process for w in ws]
    assert sorted(k for k, _ in wins) == sorted(KEYS)  # each key created exactly once
    store = open_store(f"sqlite://{path}")
    try:
        kvs, rev = store.list("/coreos.com/network/subnets/")
        assert len(kvs) == 20 and rev == 1 + 20
        events = store.watch("/", 1, 0)
        revs = [e.revision for e in events]
        assert len(events) == 20 and all(a < b for a, b in zip(revs, revs[1:]))
        assert sorted(r for _, r in wins) == revs
    finally:
        store.close()


def test_history_is_trimmed(tmp_path):
    store = SqliteStore(str(tmp_path / "s.db"), history=5)
    for i in range(10):
        store.put("/k", str(i))
    _, rev = store.list("/")
    assert rev == 11
    with pytest.raises(Compacted) as info:
        store.watch("/", 2, 0)
    assert info.value.compact_revision == rev - 4
    assert [e.kv.value for e in store.watch("/", rev - 4, 0)] == [b"5", b"6", b"7", b"8", b"9"]
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_expiry_is_done_by_the_next_client(tmp_path):
    """No daemon: a lease ends when any client touches the store after its expiry."""
    clock = Clock()
    path = str(tmp_path / "s.db")
    owner = SqliteStore(path, clock=clock)
    lease = owner.grant(60)
    kv = owner.create("/subnets/a", b"mine", lease=lease)
    owner.close()  # the node died
    other = SqliteStore(path, clock=clock)
    clock.now += 59
    assert other.get("/subnets/a") is not None
    clock.now += 2
    assert other.get("/subnets/a") is None
    events = other.watch("/subnets/", kv.mod_revision + 1, 0)
    assert [(e.type, e.kv.key) for e in events] == [("delete", "/subnets/a")]
    other.close()


def test_keep_alive_with_fake_clock():
    clock = Clock()
    store = SqliteStore(":memory:", clock=clock)
    lease = store.grant(10)
    store.create("/k", b"v", lease=lease)
    for _ in range(5):
        clock.now += 8
        assert store.keep_alive(lease) == 10
    assert store.get("/k") is not None
    clock.now += 10
    assert store.list("/")[0] == []


def test_missing_directory(tmp_path):
    url = f"sqlite://{tmp_path}/missing/store.db"
    with pytest.raises(StoreUnavailable, match="missing/store.db.*does not exist"):
        open_store(url)


@pytest.mark.parametrize("make", ["directory", "garbage", "proc"])
def test_unusable_file(tmp_path, make):
    if make == "directory":
        path = str(tmp_path)
    elif make == "garbage":
        path = str(tmp_path / "junk.db")
        with open(path, "wb") as f:
            f.write(b"not a database" * 500)
    else:
        path = "/proc/tulle-store.db"  # not writable, even for root
    with pytest.raises(StoreUnavailable) as info:
        open_store(f"sqlite://{path}")
    assert f"sqlite://{path}" in str(info.value)
    if make == "garbage":
        assert os.path.getsize(path) == len(b"not a database") * 500
