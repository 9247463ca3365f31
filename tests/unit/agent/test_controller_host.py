"""The controller host: snapshot, dirty tracking, full vs incremental runs, leadership."""

from __future__ import annotations

from dataclasses import dataclass, field

from tulle.agent.controller import Host, Snapshot, common_prefix
from tulle.store.sqlite import SqliteStore


@dataclass
class Recorder:
    """A controller that plans the keys it sees and records every apply."""

    name: str
    prefixes: tuple[str, ...]
    leader_only: bool = False
    fail: bool = False
    applied: list[tuple[list[str], bool]] = field(default_factory=list)

    def plan(self, snap: Snapshot) -> list[str]:
        return [kv.key for p in self.prefixes for kv in snap.under(p)]

    def apply(self, plan: list[str], full: bool) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.applied.append((plan, full))


class Lead:
    def __init__(self, leading: bool) -> None:
        self.leading = leading

    def tick(self) -> bool:
        return self.leading


def test_common_prefix():
    assert common_prefix(["/a/b/", "/a/c/"]) == "/a/"
    assert common_prefix(["/coreos.com/network/subnets/", "/registry/pods/"]) == "/"
    assert common_prefix(["/x/"]) == "/x/"


def test_changes_run_only_the_controllers_they_concern():
    store = SqliteStore(":memory:")
    a, b = Recorder("a", ("/a/",)), Recorder("b", ("/b/",))
    host = Host(store, [a, b])
    store.put("/a/1", "x")
    host.relist()
    host.run()
    assert a.applied == [(["/a/1"], False)] and b.applied == [([], False)]
    store.put("/b/1", "y")
    store.put("/c/1", "ignored")
    host.poll(1.0)
    host.run()
    assert len(a.applied) == 1 and b.applied[-1] == (["/b/1"], False)
    assert "/c/1" not in host.snapshot().kvs


def test_full_runs_everything_and_deletes_leave_the_cache():
    store = SqliteStore(":memory:")
    a = Recorder("a", ("/a/",))
    host = Host(store, [a])
    store.put("/a/1", "x")
    host.relist()
    store.delete("/a/1")
    host.poll(1.0)
    host.run(full=True)
    assert a.applied == [([], True)]


def test_a_failing_controller_does_not_stop_the_others():
    store = SqliteStore(":memory:")
    bad, good = Recorder("bad", ("/a/",), fail=True), Recorder("good", ("/a/",))
    errors: list[str] = []
    host = Host(store, [bad, good], on_error=lambda name, exc: errors.append(name))
    host.relist()
    assert host.run() is False
    assert good.applied and errors == ["bad"]
    assert host.outcomes["bad"].ok is False and "boom" in host.outcomes["bad"].error


def test_leader_only_controllers_run_only_while_leading():
    store = SqliteStore(":memory:")
    lead = Lead(False)
    cluster = Recorder("cluster", ("/r/",), leader_only=True)
    host = Host(store, [cluster], leadership=lead)
    host.relist()
    host.lead()
    host.run(full=True)
    assert cluster.applied == []
    lead.leading = True
    host.lead()                    # becoming leader makes them due at once
    assert host.pending
    host.run()
    assert cluster.applied == [([], False)]


def test_compacted_history_relists():
    store = SqliteStore(":memory:", history=2)
    a = Recorder("a", ("/a/",))
    host = Host(store, [a])
    host.relist()
    host.run()
    for i in range(5):
        store.put(f"/a/{i}", "x")
    host.poll(1.0)                 # Compacted → relist: the snapshot has every key
    host.run()
    assert a.applied[-1] == ([f"/a/{i}" for i in range(5)], False)
