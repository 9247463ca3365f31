"""SQLite-only behaviour: several processes on one file, history trimming,
lazy lease expiry by whichever client comes next, files that cannot be opened,
and a watch that blocks on inotify instead of polling (with a backing-off poll
when inotify is not available)."""

from __future__ import annotations

import errno
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest

from tulle.store import Compacted, StoreUnavailable, open_store
from tulle.store import sqlite as sqlite_mod
from tulle.store.sqlite import SqliteStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def test_clients_opening_a_new_store_together_all_succeed(tmp_path):
    """Turning a new file to WAL mode is refused at once (no busy wait) to all but the
    first opener: the others retry (before, 1 run in 5 of 4 such openers failed)."""
    for round_ in range(10):
        url = f"sqlite://{tmp_path}/fresh{round_}.db"
        start = threading.Barrier(6)
        errors: list[Exception] = []

        def opener() -> None:
            start.wait()
            try:
                open_store(url).close()
            except StoreUnavailable as exc:
                errors.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []


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


# -- watch without polling -------------------------------------------------------

def _counting(store: SqliteStore) -> dict[str, int]:
    """Count the event-log reads a watch makes (each is one wake-up)."""
    calls = {"n": 0}
    real = store._events_since

    def counted(prefix, rev):
        calls["n"] += 1
        return real(prefix, rev)

    store._events_since = counted  # type: ignore[method-assign]
    return calls


def test_idle_watch_reads_once(tmp_path):
    """Nothing changes: the watcher blocks on inotify and reads the log only at the start."""
    store = SqliteStore(str(tmp_path / "s.db"))
    _, rev = store.list("/")
    calls = _counting(store)
    assert store.watch("/", rev + 1, 1.0) == []
    assert calls["n"] == 1
    store.close()


def test_other_files_in_the_directory_do_not_wake(tmp_path):
    from tulle.store import inotify

    (tmp_path / "s.db").write_bytes(b"")
    with inotify.DirWatch(str(tmp_path), {"s.db"}) as watch:
        inotify.touch(str(tmp_path / "state.json"))   # not there: nothing happens
        (tmp_path / "other").write_text("x")
        inotify.touch(str(tmp_path / "other"))
        assert watch.wait(0.2) is False
        inotify.touch(str(tmp_path / "s.db"))
        assert watch.wait(10) is True


_WRITER = """
import sys, time
from tulle.store import open_store
time.sleep(0.3)
s = open_store(sys.argv[1])
s.put("/w/late", b"from another process")
s.close()
"""


def test_commit_in_another_process_wakes_the_watcher(tmp_path):
    """Agents are separate processes sharing the file: the writer's commit wakes the watch."""
    path = str(tmp_path / "s.db")
    store = SqliteStore(path)
    _, rev = store.list("/w/")
    calls = _counting(store)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, f"sqlite://{path}"], cwd=ROOT)
    try:
        events = store.watch("/w/", rev + 1, 60)
    finally:
        assert proc.wait(60) == 0
    assert [(e.type, e.kv.key, e.kv.value) for e in events] == [("put", "/w/late", b"from another process")]
    assert calls["n"] <= 4    # start, the writer's schema commit and its put (a 50 ms poll: > 6)
    store.close()


def test_watch_wakes_when_a_lease_is_due(tmp_path):
    """Expiry is lazy: with no other client, the watcher itself wakes at the due time and expires it."""
    store = SqliteStore(str(tmp_path / "s.db"))
    kv = store.create("/l/k", b"v", lease=store.grant(1))
    events = store.watch("/l/", kv.mod_revision + 1, 60)
    assert [(e.type, e.kv.key) for e in events] == [("delete", "/l/k")]
    store.close()


def test_without_inotify_the_poll_backs_off(tmp_path, monkeypatch):
    from tulle.store import inotify

    def unavailable(*a, **kw):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(inotify, "DirWatch", unavailable)
    store = SqliteStore(str(tmp_path / "s.db"))
    _, rev = store.list("/")
    calls = _counting(store)
    assert store.watch("/", rev + 1, 1.0) == []
    assert calls["n"] <= 7                       # 50, 100, 200, 400 ms ...: not 20 reads
    assert store._poll == sqlite_mod.POLL_MAX
    store.put("/k", b"v")                        # still sees changes, and polls fast again after them
    assert [e.kv.key for e in store.watch("/", rev + 1, 10)] == ["/k"]
    assert store._poll == sqlite_mod.POLL_INTERVAL
    store.close()
