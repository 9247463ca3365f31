"""coordination.k8s.io/v1 Lease: who holds a lock and until when (leader election)."""

from __future__ import annotations

from tulle.cluster.fieldtypes import INT, MICRO_TIME, STR, Obj
from tulle.cluster.shapes.meta import top

LEASE = top({"spec": Obj({
    "holderIdentity": STR, "leaseDurationSeconds": INT, "acquireTime": MICRO_TIME, "renewTime": MICRO_TIME,
    "leaseTransitions": INT, "strategy": STR, "preferredHolder": STR,
})})
