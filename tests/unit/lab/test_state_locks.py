"""The lab's locks and state writes, across processes: read-modify-writes lose nothing, a pod's
lock is one command's at a time (busy is TryAgain), the runtime lock is shared by pod commands
and exclusive for the lab-wide ones; all re-entrant in one thread, all gone with their process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from tulle.errors import TryAgain, TulleError
from tulle.lab import state, topology
from tulle.lab.state import LabState, PodState

LAB = "locks"
ctx = multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def lab_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(topology, "STATE_ROOT", str(tmp_path))
    os.mkdir(state.path(LAB))
    state.save(LabState(LAB, {}, nodes={"n1": 0}))


def _add_pod(i: int) -> None:
    state.update(LAB, lambda st: st.pods.__setitem__(f"default/p{i}", PodState("n1", f"10.0.0.{i}", f"c{i}")))


def test_concurrent_updates_lose_nothing():
    procs = [ctx.Process(target=_add_pod, args=(i,)) for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(state.load(LAB).pods) == sorted(f"default/p{i}" for i in range(20))


def test_a_failed_change_writes_nothing():
    def boom(st: LabState) -> None:
        st.nodes.clear()
        raise TulleError("no")
    with pytest.raises(TulleError):
        state.update(LAB, boom)
    assert state.load(LAB).nodes == {"n1": 0}


def _hold(lock: str, ready, release) -> None:
    with (state.pod_locked(LAB, "default", "a") if lock == "pod" else
          state.runtime_locked(LAB, exclusive=lock == "exclusive")):
        ready.set()
        release.wait(30)


def holding(lock: str):
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(lock, ready, release))
    p.start()
    assert ready.wait(30)
    return p, release


def test_a_pods_lock_is_one_commands_and_goes_with_its_process():
    p, release = holding("pod")
    assert state.pod_busy(LAB, "default", "a") and not state.pod_busy(LAB, "default", "b")
    with pytest.raises(TryAgain, match="pod default/a is being added or deleted by another command"):
        with state.pod_locked(LAB, "default", "a", wait=False):
            pass
    os.kill(p.pid, signal.SIGKILL)                 # a killed command's lock is free at once
    p.join(30)
    with state.pod_locked(LAB, "default", "a", wait=False):
        with state.pod_locked(LAB, "default", "a", wait=False):      # re-entrant in this thread
            assert state.pod_busy(LAB, "default", "a")
    assert not state.pod_busy(LAB, "default", "a")


def test_the_runtime_lock_is_shared_by_pod_commands_and_exclusive_for_lab_wide_ones():
    p, release = holding("shared")
    with state.runtime_locked(LAB):                # another pod command: at once
        pass
    waited = ctx.Event()

    def exclusive() -> None:
        with state.runtime_locked(LAB, exclusive=True):
            waited.set()
    q = ctx.Process(target=exclusive)
    q.start()
    time.sleep(0.2)
    assert not waited.is_set()                     # waits for the pod command to end
    release.set()
    p.join(30)
    q.join(30)
    assert waited.is_set()
    with state.runtime_locked(LAB, exclusive=True):
        with state.runtime_locked(LAB):            # a lab-wide command's own pod work
            pass
    with state.runtime_locked(LAB):
        with pytest.raises(TulleError, match="cannot upgrade"):
            with state.runtime_locked(LAB, exclusive=True):
                pass


def test_locks_of_a_missing_lab_say_so():
    with pytest.raises(TulleError, match="lab 'nolab' does not exist"):
        with state.runtime_locked("nolab"):
            pass
