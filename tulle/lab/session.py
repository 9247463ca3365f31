"""A lab command's view of its cluster: the lab state and the object API over the lab's store.

Commands that change pods hold the lab's lock for their whole run (the state and
the pods' netns and processes change together); read-only commands (`get`,
`probe`) take no lock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from tulle.lab import state, topology
from tulle.lab.state import LabState
from tulle.store import Store, open_store

if TYPE_CHECKING:
    from tulle.cluster.api import Client


def open_lab_store(plan: topology.Plan) -> Store:
    """The lab's store as seen from this process (etcd through the fabric netns)."""
    return open_store(plan.store_url(from_cli=True))


@dataclass
class Session:
    st: LabState
    plan: topology.Plan
    client: "Client"

    @property
    def lab(self) -> str:
        return self.st.lab

    def save(self) -> None:
        state.save(self.st)


@contextlib.contextmanager
def open_session(lab: str, lock: bool = True) -> Iterator[Session]:
    """The lab's state (under its lock unless `lock` is False) and a Client on its store."""
    from tulle.cluster.api import connect

    state.require_root()
    topology.check_lab_name(lab)
    with state.locked(lab) if lock and state.exists(lab) else contextlib.nullcontext():
        st = state.load(lab)
        plan = st.plan()
        kv = open_lab_store(plan)
        try:
            yield Session(st, plan, connect(kv))   # the cluster's service CIDR and NodePort range
        finally:
            kv.close()
