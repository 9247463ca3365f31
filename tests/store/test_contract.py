"""One contract, every implementation: sqlite file, sqlite in memory, real etcd.

Each test works under its own `prefix` (the etcd server is shared by the session).
Lease tests use 2 s TTLs (etcd's minimum with default timings) and generous,
bounded waits; nothing asserts on speed.
"""

from __future__ import annotations

import threading
import time

import pytest

from tulle.store import Compacted, Event, LeaseExpired, Store


def collect(store: Store, prefix: str, start: int, count: int, timeout: float = 10.0) -> list[Event]:
    """Watch until `count` events arrived (or the bounded timeout passed)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and (left := deadline - time.monotonic()) > 0:
        batch = store.watch(prefix, start, min(left, 2.0))
        if batch:
            events += batch
            start = batch[-1].revision + 1
    return events


def test_implements_protocol(store):
    assert isinstance(store, Store)


def test_get_missing(store, prefix):
    assert store.get(prefix + "nothing") is None


def test_create_then_get(store, prefix):
    key = prefix + "subnets/10.244.1.0-24"
    kv = store.create(key, b'{"PublicIP":"198.51.100.1"}')
    assert kv is not None
    assert (kv.key, kv.value, kv.version, kv.lease) == (key, b'{"PublicIP":"198.51.100.1"}', 1, 0)
    assert kv.create_revision == kv.mod_revision > 0
    assert store.get(key) == kv


def test_create_conflict_returns_none(store, prefix):
    first = store.create(prefix + "k", "one")
    assert first is not None
    assert store.create(prefix + "k", "two") is None
    assert store.get(prefix + "k") == first


def test_str_values_are_utf8(store, prefix):
    kv = store.put(prefix + "k", "héllo")
    assert kv.value == "héllo".encode() and kv.text == "héllo"


def test_put_overwrites_and_versions(store, prefix):
    a = store.put(prefix + "k", b"1")
    b = store.put(prefix + "k", b"2")
    assert b.create_revision == a.create_revision
    assert b.mod_revision > a.mod_revision
    assert b.version == 2


def test_list_prefix_sorted_with_revision(store, prefix):
    for name in ("b", "a", "c/d"):
        store.put(prefix + "sub/" + name, name)
    store.put(prefix + "subx", "outside")  # shares the string prefix "sub", not "sub/"
    kvs, rev = store.list(prefix + "sub/")
    assert [kv.key for kv in kvs] == [prefix + "sub/" + n for n in ("a", "b", "c/d")]
    assert rev >= max(kv.mod_revision for kv in kvs)
    assert store.list(prefix + "none/") [0] == []


def test_compare_and_swap(store, prefix):
    kv = store.create(prefix + "k", b"v1")
    swapped = store.compare_and_swap(prefix + "k", b"v2", kv.mod_revision)
    assert swapped is not None and swapped.value == b"v2" and swapped.version == 2
    assert swapped.create_revision == kv.create_revision
    # The old revision no longer matches: conflict.
    assert store.compare_and_swap(prefix + "k", b"v3", kv.mod_revision) is None
    assert store.get(prefix + "k").value == b"v2"


def test_compare_and_swap_absent(store, prefix):
    assert store.compare_and_swap(prefix + "k", b"v", 12345) is None
    assert store.get(prefix + "k") is None
    assert store.compare_and_swap(prefix + "k", b"v", 0) is not None  # 0 = "still absent"


def test_delete(store, prefix):
    store.put(prefix + "k", b"v")
    assert store.delete(prefix + "k") is True
    assert store.get(prefix + "k") is None
    assert store.delete(prefix + "k") is False


def test_delete_with_revision(store, prefix):
    kv = store.put(prefix + "k", b"v")
    store.put(prefix + "k", b"w")
    assert store.delete(prefix + "k", mod_revision=kv.mod_revision) is False
    assert store.get(prefix + "k").value == b"w"
    current = store.get(prefix + "k").mod_revision
    assert store.delete(prefix + "k", mod_revision=current) is True
    assert store.get(prefix + "k") is None


def test_watch_sees_changes_after_list_in_order(store, prefix):
    store.put(prefix + "a", b"0")
    kvs, rev = store.list(prefix)
    assert len(kvs) == 1
    # Changes between the list and the watch are not lost.
    store.put(prefix + "a", b"1")
    store.create(prefix + "b", b"2")
    store.delete(prefix + "a")
    store.put("/elsewhere" + prefix, b"not watched")
    events = collect(store, prefix, rev + 1, 3)
    assert [(e.type, e.kv.key) for e in events] == [
        ("put", prefix + "a"), ("put", prefix + "b"), ("delete", prefix + "a")]
    assert [e.kv.value for e in events[:2]] == [b"1", b"2"]
    revs = [e.revision for e in events]
    assert revs == sorted(revs) and len(set(revs)) == 3 and revs[0] > rev
    assert events[1].kv.version == 1 and events[0].kv.version == 2


def test_watch_blocks_until_a_change(store, prefix):
    _, rev = store.list(prefix)
    timer = threading.Timer(0.5, lambda: store.put(prefix + "late", b"x"))
    timer.start()
    try:
        events = store.watch(prefix, rev + 1, 10.0)
    finally:
        timer.join()
    assert [(e.type, e.kv.key) for e in events] == [("put", prefix + "late")]


def test_watch_times_out_empty(store, prefix):
    _, rev = store.list(prefix)
    assert store.watch(prefix, rev + 1, 0.3) == []


def test_compaction_then_relist(store, prefix):
    for i in range(3):
        store.put(prefix + "k", str(i))
    _, rev = store.list(prefix)
    store.compact(rev)
    with pytest.raises(Compacted) as info:
        store.watch(prefix, rev - 1, 2.0)
    assert info.value.compact_revision == rev
    # The way back: re-list and watch from the fresh revision.
    kvs, rev2 = store.list(prefix)
    assert [kv.value for kv in kvs] == [b"2"] and rev2 >= rev
    store.put(prefix + "k", b"after")
    events = collect(store, prefix, rev2 + 1, 1)
    assert [e.kv.value for e in events] == [b"after"]


def test_lease_expiry_deletes_key_with_event(store, prefix):
    lease = store.grant(2)
    assert lease != 0
    kv = store.create(prefix + "leased", b"v", lease=lease)
    assert kv.lease == lease
    store.put(prefix + "plain", b"stays")
    events = collect(store, prefix, kv.mod_revision + 1, 2, timeout=12.0)
    assert [(e.type, e.kv.key) for e in events] == [("put", prefix + "plain"), ("delete", prefix + "leased")]
    assert store.get(prefix + "leased") is None
    assert store.get(prefix + "plain") is not None
    with pytest.raises(LeaseExpired):
        store.keep_alive(lease)


def test_keep_alive_extends_lease(store, prefix):
    lease = store.grant(2)
    store.create(prefix + "k", b"v", lease=lease)
    for _ in range(3):  # 2.4 s in all: past the TTL, kept alive
        time.sleep(0.8)
        assert store.keep_alive(lease) >= 2
    assert store.get(prefix + "k") is not None
    store.revoke(lease)


def test_revoke_deletes_keys(store, prefix):
    lease = store.grant(30)
    store.create(prefix + "a", b"1", lease=lease)
    kv = store.create(prefix + "b", b"2", lease=lease)
    store.revoke(lease)
    assert store.list(prefix)[0] == []
    events = collect(store, prefix, kv.mod_revision + 1, 2)
    assert sorted((e.type, e.kv.key) for e in events) == [("delete", prefix + "a"), ("delete", prefix + "b")]
    with pytest.raises(LeaseExpired):
        store.keep_alive(lease)
    store.revoke(lease)  # again: not an error


def test_unknown_lease_is_refused(store, prefix):
    lease = store.grant(30)
    store.revoke(lease)
    with pytest.raises(LeaseExpired):
        store.create(prefix + "k", b"v", lease=lease)
    assert store.get(prefix + "k") is None


def test_concurrent_creators_win_once(store, store_factory, prefix):
    """Flannel's guarantee: two nodes never win the same subnet."""
    clients = [store_factory() for _ in range(4)]
    keys = [f"{prefix}subnets/10.244.{i}.0-24" for i in range(10)]
    wins: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def node(n: int) -> None:
        for key in keys:
            kv = clients[n].create(key, f"node{n}")
            if kv is not None:
                with lock:
                    wins.append((n, key, kv.create_revision))

    threads = [threading.Thread(target=node, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(k for _, k, _ in wins) == keys
    assert len({rev for _, _, rev in wins}) == len(keys)
    for n, key, _ in wins:
        assert store.get(key).value == f"node{n}".encode()
