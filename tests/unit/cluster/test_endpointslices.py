"""The endpointslice controller's plan (pure): which slices to create, update, delete."""

from __future__ import annotations

from tulle.cluster import endpointslices as es


def svc(name="web", ns="default", selector=None, ports=None, type_="ClusterIP") -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
            "spec": {"type": type_, "selector": {"app": "web"} if selector is None else selector,
                     "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "http",
                                                               "protocol": "TCP"}]}}


def pod(name, ip="10.244.1.2", ns="default", labels=None, ready=True, port=8080, node="n1", **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "labels": {"app": "web"} if labels is None else labels, **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def stored(plan: es.Plan, existing: list[dict] | None = None) -> list[dict]:
    """The slices after applying a plan (names given as the API would)."""
    out = {s["metadata"]["name"]: s for s in existing or []}
    for ns, name in plan.delete:
        out.pop(name, None)
    for s in plan.update:
        out[s["metadata"]["name"]] = s
    for i, s in enumerate(plan.create):
        name = s["metadata"]["generateName"] + f"x{len(out)}{i}"
        out[name] = {**s, "metadata": {**s["metadata"], "name": name}}
    return list(out.values())


def test_one_slice_per_service_with_resolved_named_port():
    p = es.plan([svc()], [pod("a", "10.244.1.2"), pod("b", "10.244.2.2", node="n2"),
                          pod("other", "10.244.1.9", labels={"app": "db"})], [])
    assert not p.update and not p.delete and len(p.create) == 1
    s = p.create[0]
    assert s["metadata"]["labels"][es.SERVICE_NAME_LABEL] == "web"
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [(e["addresses"], e["nodeName"], e["targetRef"]["name"]) for e in s["endpoints"]] == [
        (["10.244.1.2"], "n1", "a"), (["10.244.2.2"], "n2", "b")]
    assert s["endpoints"][0]["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_steady_state_plans_nothing():
    pods = [pod("a"), pod("b", "10.244.2.2")]
    slices = stored(es.plan([svc()], pods, []))
    assert not es.plan([svc()], pods, slices)


def test_conditions_not_ready_and_terminating():
    p = es.plan([svc()], [pod("a", ready=False), pod("b", "10.244.1.3", deletionTimestamp="2026-01-01T00:00:00Z")],
                [])
    conds = {e["targetRef"]["name"]: e["conditions"] for e in p.create[0]["endpoints"]}
    assert conds["a"] == {"ready": False, "serving": False, "terminating": False}
    assert conds["b"] == {"ready": False, "serving": True, "terminating": True}


def test_pods_without_ip_or_finished_are_left_out():
    done = pod("done", "10.244.1.7")
    done["status"]["phase"] = "Succeeded"
    p = es.plan([svc()], [pod("noip", ip=None), done], [])
    assert len(p.create) == 1 and p.create[0]["endpoints"] == [] and p.create[0]["ports"] == []


def test_pods_follow_add_delete_relabel():
    slices = stored(es.plan([svc()], [pod("a")], []))
    slices = stored(es.plan([svc()], [pod("a"), pod("b", "10.244.1.3")], slices), slices)
    assert [e["targetRef"]["name"] for e in slices[0]["endpoints"]] == ["a", "b"]
    p = es.plan([svc()], [pod("a", labels={"app": "other"}), pod("b", "10.244.1.3")], slices)
    assert len(p.update) == 1 and not p.create and not p.delete
    assert [e["targetRef"]["name"] for e in p.update[0]["endpoints"]] == ["b"]
    slices = stored(p, slices)
    p = es.plan([svc()], [], slices)          # every pod gone: one empty slice stays
    assert len(p.update) == 1 and p.update[0]["endpoints"] == [] and not p.delete


def test_named_port_resolving_differently_splits_slices():
    p = es.plan([svc()], [pod("a", port=8080), pod("b", "10.244.1.3", port=9090)], [])
    assert sorted((s["ports"][0]["port"], len(s["endpoints"])) for s in p.create) == [(8080, 1), (9090, 1)]


def test_at_most_100_endpoints_per_slice_and_stable_placement():
    pods = [pod(f"p{i:03d}", f"10.244.{i // 200}.{i % 200 + 2}") for i in range(250)]
    slices = stored(es.plan([svc()], pods, []))
    assert sorted(len(s["endpoints"]) for s in slices) == [50, 100, 100]
    before = {s["metadata"]["name"]: {e["targetRef"]["name"] for e in s["endpoints"]} for s in slices}
    p = es.plan([svc()], pods + [pod("zzz", "10.244.9.9")], slices)
    assert not p.create and not p.delete and len(p.update) == 1      # one slice with room takes it
    after = {e["targetRef"]["name"] for e in p.update[0]["endpoints"]}
    assert after == before[p.update[0]["metadata"]["name"]] | {"zzz"}


def test_deleted_service_or_selector_removed_deletes_its_slices():
    slices = stored(es.plan([svc()], [pod("a")], []))
    p = es.plan([], [pod("a")], slices)
    assert p.delete == [("default", slices[0]["metadata"]["name"])]
    p = es.plan([svc(selector={})], [pod("a")], slices)
    assert p.delete == [("default", slices[0]["metadata"]["name"])]


def test_user_slices_are_not_touched():
    mine = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "manual", "namespace": "default", "labels": {es.SERVICE_NAME_LABEL: "ext"}},
            "addressType": "IPv4", "endpoints": [], "ports": []}
    assert not es.plan([], [], [mine])


def test_namespaces_are_separate():
    p = es.plan([svc(ns="x")], [pod("a", ns="default"), pod("b", "10.244.1.3", ns="x")], [])
    assert [e["targetRef"]["name"] for e in p.create[0]["endpoints"]] == ["b"]
    assert p.create[0]["metadata"]["namespace"] == "x"


def test_numeric_target_port_and_unresolvable_name():
    s = svc(ports=[{"name": "a", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"name": "b", "port": 53, "targetPort": "dns", "protocol": "UDP"}])
    p = es.plan([s], [pod("a")], [])
    assert p.create[0]["ports"] == [{"name": "a", "port": 8080, "protocol": "TCP"}]
