"""A lab command's view of its cluster: the lab state and the object API over the lab's store.

Commands that change the lab as a whole (apply, delete, node del, gc) open an
exclusive session: the runtime lock alone and the state lock for their whole
run, so no pod is half-way while they look at the lab. `pod add`/`pod del`
open a pod session instead (tulle.lab.pods): the runtime lock shared and the
pod's own lock, and the state lock only around each write of state.json, so
pods on a lab are made concurrently, as a node's CNI path allows.
Read-only commands (`get`, `probe`) take no lock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from tulle.lab import state, topology
from tulle.lab.state import LabState
from tulle.store import Store, open_store

if TYPE_CHECKING:
    from tulle.cluster.api import Client

T = TypeVar("T")


def open_lab_store(plan: topology.Plan, timeout: float | None = None) -> Store:
    """The lab's store as seen from this process (etcd through the fabric netns); `timeout`
    bounds each request (status answers fast from what it knows when the store hangs)."""
    return open_store(plan.store_url(from_cli=True), timeout=timeout)


@dataclass
class Session:
    st: LabState
    plan: topology.Plan
    client: "Client"
    reclaimed: list[str] = field(default_factory=list)   # half-made pods this session undid

    @property
    def lab(self) -> str:
        return self.st.lab

    def save(self) -> None:
        state.save(self.st)

    def update(self, change: Callable[[LabState], T]) -> T:
        """A read-modify-write of state.json (under the state lock, from a fresh read);
        `st` becomes what was written. In place: callers keep references to it."""
        fresh, out = state.update(self.lab, change)
        for f in fields(LabState):
            setattr(self.st, f.name, getattr(fresh, f.name))
        return out


@contextlib.contextmanager
def open_session(lab: str, lock: bool = True) -> Iterator[Session]:
    """The lab's state and a Client on its store; with `lock`, exclusive (the runtime lock
    and the state lock held until the session ends)."""
    from tulle.cluster.api import connect

    state.require_root()
    topology.check_lab_name(lab)
    with contextlib.ExitStack() as held:
        if lock and state.exists(lab):
            held.enter_context(state.runtime_locked(lab, exclusive=True))
            held.enter_context(state.locked(lab))
        st = state.load(lab)
        plan = st.plan()
        kv = open_lab_store(plan)
        held.callback(kv.close)
        yield Session(st, plan, connect(kv))   # the cluster's service CIDR and NodePort range


@contextlib.contextmanager
def pod_session(lab: str, namespace: str, name: str) -> Iterator[Session]:
    """A session to make or unmake one pod alongside other such sessions: the runtime lock
    shared, the pod's own lock held (waiting for another command on the same pod); the
    state lock only for each write (`Session.update`). The caller checked the names."""
    state.require_root()
    topology.check_lab_name(lab)
    with state.runtime_locked(lab), state.pod_locked(lab, namespace, name), open_session(lab, lock=False) as s:
        yield s
