"""The cluster's objects: how fast EndpointSlices follow Pods, and how fast the
cluster-wide controllers move to another agent when their leader dies.

- Pod change → EndpointSlice updated: a Pod object that becomes Ready (and later is
  deleted) under a Service's selector, until the endpoints controller's slice write
  is seen by a watcher. Peer: the store's own floor, a plain key write until a
  watcher sees it, measured alternately in the same lab and store.
- Leader failover: SIGKILL of the agent holding the leader lease, until another
  agent's name is in the Lease object; peer: the lease duration the agents run with
  (the ratio says how much the takeover adds to the unavoidable wait).
Both in a 3-node host-gw lab on the SQLite store; the objects need no pod netns.
"""

from __future__ import annotations

import json
import time

from bench import core
from tulle.cluster import leader
from tulle.cluster.api import Client, connect
from tulle.lab import agents, cluster, state

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "default"},
           "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "none",
                                                       "ports": [{"containerPort": 8080}]}]}}


def _wait_slice(api: Client, from_rev: int, pred, t0: float, timeout: float = 30.0) -> float:
    """Seconds since `t0` until a watched EndpointSlice write satisfies `pred` (its endpoints'
    pod names)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in api.watch(from_rev, 1.0, only=["endpointslices"]):
            from_rev = ev.revision + 1
            if ev.object is not None and ev.object["metadata"]["labels"].get("kubernetes.io/service-name") == "bench":
                names = {e["targetRef"]["name"] for e in ev.object.get("endpoints") or []}
                if pred(names):
                    return time.perf_counter() - t0
    raise RuntimeError(f"no EndpointSlice update within {timeout:.0f} s")


def slice_latency(api: Client, r: int) -> dict:
    name, ip = f"p{r}", f"10.244.200.{r % 250 + 2}"
    api.create(_pod(name))
    _, rev = api.store.list("/nothing/")
    t0 = time.perf_counter()
    api.mutate("pods", name, "default", lambda p: p.update(status={
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}]}), status=True)
    ready = _wait_slice(api, rev + 1, lambda names: name in names, t0)
    _, rev = api.store.list("/nothing/")
    t0 = time.perf_counter()
    api.delete("pods", name, "default")
    return {"ready_s": ready, "deleted_s": _wait_slice(api, rev + 1, lambda names: name not in names, t0)}


def store_floor(api: Client, r: int) -> dict:
    """A plain key written, until a watcher sees it (what any controller path pays)."""
    _, rev = api.store.list("/nothing/")
    t0 = time.perf_counter()
    api.store.put(f"/bench-floor/{r}", json.dumps({"r": r}))
    while not api.store.watch("/bench-floor/", rev + 1, 1.0):
        pass
    return {"seen_s": time.perf_counter() - t0}


def failover(lab: str, api: Client) -> dict:
    key = leader.lease_key("/registry")
    probe = leader.LeaderElector(api.store, key, "bench-observer")
    old = probe.holder()
    if old is None:
        raise RuntimeError("no agent holds the leader lease")
    st = state.load(lab)
    t0 = time.perf_counter()
    agents.kill(lab, old, st.nodes[old])
    deadline = time.monotonic() + 4 * agents.LEADER_LEASE + 10
    new = None
    while time.monotonic() < deadline:
        new = probe.holder()
        if new not in (None, old):
            break
        time.sleep(0.02)
    took = time.perf_counter() - t0
    if new in (None, old):
        raise RuntimeError(f"no agent took the leader lease over from {old} within {deadline - t0:.0f} s")
    cluster.agent_restart(lab, old)
    return {"from": old, "to": new, "takeover_s": took}


def run(rounds: int = 50, failovers: int = 3, lab: str = "bo") -> dict:
    out: dict = {"rounds": rounds, "leader_lease_s": agents.LEADER_LEASE}
    try:
        cluster.up(lab, nodes_count=3, backend="host-gw")
        kv = cluster.open_lab_store(state.load(lab).plan())
        try:
            api = connect(kv)
            api.create(SERVICE)
            samples: dict[str, list[dict]] = {"slice": [], "floor": []}
            core.alternate(rounds, {"slice": lambda r: samples["slice"].append(slice_latency(api, r)),
                                    "floor": lambda r: samples["floor"].append(store_floor(api, r))})
            ready = [s["ready_s"] for s in samples["slice"]]
            deleted = [s["deleted_s"] for s in samples["slice"]]
            floor = [s["seen_s"] for s in samples["floor"]]
            out["slice"] = {"ready_s": core.summary(ready), "deleted_s": core.summary(deleted),
                            "ready_p99_s": core.percentile(ready, 99),
                            "deleted_p99_s": core.percentile(deleted, 99)}
            out["store_floor_s"] = core.summary(floor)
            out["slice_ratio_floor"] = core.ratio(core.median(ready), core.median(floor))
            takeovers = [failover(lab, api) for _ in range(failovers)]
            out["failover"] = {"runs": takeovers, "takeover_s": core.summary([t["takeover_s"] for t in takeovers])}
            out["failover_ratio_lease"] = core.ratio(out["failover"]["takeover_s"]["median"], agents.LEADER_LEASE)
        finally:
            kv.close()
        return out
    finally:
        cluster.down(lab)

