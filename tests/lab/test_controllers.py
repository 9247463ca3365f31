"""The agents as a host of controllers in a real lab: EndpointSlices follow Pod objects,
and the cluster-wide controllers move to another agent when their leader is SIGKILLed."""

from __future__ import annotations

import time

import pytest

from tests.lab.conftest import needs_agent
from tulle.cluster import leader
from tulle.cluster.api import Client, connect
from tulle.lab import agents, cluster, state

pytestmark = [pytest.mark.netns, needs_agent]

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def pod_object(name: str, ip: str, node: str = "n1", port: int = 8080) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "none", "ports": [
                {"name": "http", "containerPort": port}]}]}}


def make_ready(api: Client, name: str, ip: str) -> None:
    api.mutate("pods", name, "default", lambda p: p.update(status={
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}]}), status=True)


def endpoints(api: Client) -> dict[str, tuple[str, int, bool]]:
    """pod name → (address, port, ready) over every slice of Service web."""
    out = {}
    for s in api.list("endpointslices", "default", selector="kubernetes.io/service-name=web")[0]:
        port = (s.get("ports") or [{}])[0].get("port", 0)
        for e in s.get("endpoints") or []:
            out[e["targetRef"]["name"]] = (e["addresses"][0], port, e["conditions"]["ready"])
    return out


def wait_until(what: str, cond, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def lab():
    from tests.lab.conftest import new_lab_name

    name = new_lab_name()
    try:
        cluster.up(name, nodes_count=3, backend="host-gw")
        kv = cluster.open_lab_store(state.load(name).plan())
        yield name, connect(kv)
        kv.close()
    finally:
        cluster.down(name)


def test_endpoint_slices_follow_pods(lab):
    name, api = lab
    api.create(SERVICE)
    api.create(pod_object("a", "10.244.1.10"))
    api.create(pod_object("b", "10.244.2.10", node="n2", port=9090))
    make_ready(api, "a", "10.244.1.10")
    assert wait_until("a in the slice", lambda: endpoints(api).get("a")) == ("10.244.1.10", 8080, True)
    make_ready(api, "b", "10.244.2.10")         # its named port resolves to 9090: a slice of its own
    assert wait_until("b in a slice", lambda: endpoints(api).get("b")) == ("10.244.2.10", 9090, True)
    api.mutate("pods", "a", "default", lambda p: p["metadata"].update(labels={"app": "other"}))
    wait_until("a relabelled out", lambda: "a" not in endpoints(api))
    api.delete("pods", "b", "default")
    wait_until("b deleted", lambda: not endpoints(api))
    api.delete("services", "web", "default")
    wait_until("slices gone with the service",
               lambda: not api.list("endpointslices", "default", selector="kubernetes.io/service-name=web")[0])


def test_leader_failover_after_sigkill(lab):
    name, api = lab
    probe = leader.LeaderElector(api.store, leader.lease_key("/registry"), "test-observer")
    old = wait_until("a leader", probe.holder)
    st = state.load(name)
    agents.kill(name, old, st.nodes[old])
    new = wait_until("another leader", lambda: (h := probe.holder()) not in (None, old) and h,
                     timeout=agents.LEADER_LEASE * 3 + 10)
    assert new in st.nodes and new != old
    lease = api.get("leases", "tulle-controllers", "kube-system")   # the Lease object says who leads
    assert lease["spec"]["holderIdentity"] == new
    api.create(SERVICE)                          # the new leader's endpoints controller works
    api.create(pod_object("c", "10.244.3.10", node=new))
    make_ready(api, "c", "10.244.3.10")
    wait_until("c in the slice under the new leader", lambda: endpoints(api).get("c"))
    cluster.agent_restart(name, old)
    assert probe.holder() == new                 # the restarted agent does not take over


def test_a_terminating_pod_is_a_terminating_endpoint(lab):
    """`pod del --grace-period`: during the grace the endpoint is ready=false, serving=true,
    terminating=true (the Services datapath uses such endpoints only when no ready one is left)."""
    import threading

    from tulle.lab import pods

    name, api = lab
    if api.find("services", "web", "default") is None:
        api.create(SERVICE)
    pods.add(name, "n2", "t", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
    wait_until("t ready in the slice", lambda: endpoints(api).get("t", (0, 0, False))[2])
    deleting = threading.Thread(target=pods.delete, args=(name, "t"), kwargs={"grace_period": 3})
    deleting.start()
    try:
        def conditions():
            for s in api.list("endpointslices", "default", selector="kubernetes.io/service-name=web")[0]:
                for e in s.get("endpoints") or []:
                    if e["targetRef"]["name"] == "t":
                        return e["conditions"]
            return None
        assert wait_until("t terminating", lambda: (c := conditions()) and c["terminating"] and c) == \
            {"ready": False, "serving": True, "terminating": True}
    finally:
        deleting.join(30)
    wait_until("t gone from the slice", lambda: "t" not in endpoints(api))
    assert api.find("pods", "t", "default") is None
