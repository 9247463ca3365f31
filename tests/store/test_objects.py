"""The object API on every store: resourceVersion, conflicts, list + watch, allocation.

Runs over the `store` fixture (sqlite file, sqlite in memory, real etcd), each test
under its own prefix.
"""

from __future__ import annotations

import threading

import pytest

from tulle.cluster import errors
from tulle.cluster.api import Client


@pytest.fixture
def api(store, prefix) -> Client:
    c = Client(store, prefix + "registry", service_network="10.96.0.0/24", node_ports=range(30000, 30100))
    c.ensure_defaults()
    return c


def svc(name: str, ns: str = "default", **spec) -> dict:
    body = {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


def pod(name: str, ns: str = "default", labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 8080}]}]}}


def test_create_sets_server_fields(api, store):
    made = api.create(pod("a"))
    md = made["metadata"]
    assert md["uid"] and md["creationTimestamp"].endswith("Z") and md["generation"] == 1
    _, rev = store.list("/nothing/")
    assert int(md["resourceVersion"]) == rev
    assert api.get("pods", "a", "default") == made


def test_default_namespaces_exist(api):
    names = [n["metadata"]["name"] for n in api.list("namespaces")[0]]
    assert {"default", "kube-system"} <= set(names)
    ns = api.get("ns", "default")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "default"


def test_create_twice_is_already_exists(api):
    api.create(pod("a"))
    with pytest.raises(errors.AlreadyExists, match='pods "a" already exists'):
        api.create(pod("a"))


def test_missing_namespace_is_not_found(api):
    with pytest.raises(errors.NotFound, match='namespaces "nope" not found'):
        api.create(pod("a", "nope"))


def test_invalid_object_names_the_field(api):
    bad = svc("web")
    bad["spec"]["ports"][0]["port"] = 70000
    with pytest.raises(errors.Invalid, match=r"spec\.ports\[0\]\.port: Invalid value: 70000"):
        api.create(bad)
    assert api.find("svc", "web", "default") is None
    assert api.service_ips.claimed() == {}


def test_stale_update_is_a_conflict(api):
    first = api.create(pod("a", labels={"v": "1"}))
    first["metadata"]["labels"] = {"v": "2"}
    second = api.update(first)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    first["metadata"]["labels"] = {"v": "3"}          # still at the old resourceVersion
    with pytest.raises(errors.Conflict, match="the object has been modified"):
        api.update(first)
    assert api.get("pods", "a")["metadata"]["labels"] == {"v": "2"}


def test_generation_counts_spec_changes_only(api):
    s = api.create(svc("web"))
    s["metadata"]["labels"] = {"x": "y"}
    s = api.update(s)
    assert s["metadata"]["generation"] == 1
    s["spec"]["ports"][0]["targetPort"] = 9090
    s = api.update(s)
    assert s["metadata"]["generation"] == 2


def test_status_is_written_only_through_update_status(api):
    p = api.create(pod("a"))
    p["status"] = {"phase": "Running", "podIP": "10.244.1.2"}
    p = api.update_status(p)
    assert p["status"]["phase"] == "Running"
    p["status"] = {"phase": "Failed"}
    p["metadata"]["labels"] = {"a": "b"}
    p = api.update(p)
    assert p["status"]["phase"] == "Running" and p["metadata"]["labels"] == {"a": "b"}


def test_list_then_watch_sees_every_change(api):
    api.create(pod("a"))
    items, rev = api.list("pods", "default")
    assert [i["metadata"]["name"] for i in items] == ["a"]
    api.create(pod("b"))
    b = api.get("pods", "b")
    b["metadata"]["labels"] = {"x": "1"}
    api.update(b)
    api.delete("pods", "a")
    events, start = [], rev + 1
    for _ in range(20):
        batch = api.watch(start, 2.0, only=["pods"])
        events += batch
        if batch:
            start = batch[-1].revision + 1
        if len(events) >= 3:
            break
    assert [(e.type, e.name) for e in events] == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    assert events[1].object["metadata"]["labels"] == {"x": "1"}


def test_label_selector_list(api):
    api.create(pod("a", labels={"app": "web"}))
    api.create(pod("b", labels={"app": "db"}))
    names = [p["metadata"]["name"] for p in api.list("pods", "default", selector="app=web")[0]]
    assert names == ["a"]


def test_cluster_ip_allocated_and_released(api):
    s = api.create(svc("web"))
    ip = s["spec"]["clusterIP"]
    assert ip.startswith("10.96.0.") and s["spec"]["clusterIPs"] == [ip]
    assert list(api.service_ips.claimed()) == [ip]
    api.delete("svc", "web", "default")
    assert api.service_ips.claimed() == {}


def test_requested_cluster_ip_honoured_or_refused(api):
    s = api.create(svc("a", clusterIP="10.96.0.10"))
    assert s["spec"]["clusterIP"] == "10.96.0.10"
    with pytest.raises(errors.Invalid, match="provided IP is already allocated"):
        api.create(svc("b", clusterIP="10.96.0.10"))
    with pytest.raises(errors.Invalid, match="not in the valid range. The range of valid IPs is 10.96.0.0/24"):
        api.create(svc("c", clusterIP="10.97.0.1"))
    assert list(api.service_ips.claimed()) == ["10.96.0.10"]


def test_headless_service_gets_no_ip(api):
    s = api.create(svc("h", clusterIP="None"))
    assert s["spec"]["clusterIP"] == "None"
    assert api.service_ips.claimed() == {}


def test_node_ports_allocated_requested_and_released(api):
    s = api.create(svc("np", type="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81,
                                                                                 "nodePort": 30050}]))
    ports = [p["nodePort"] for p in s["spec"]["ports"]]
    assert ports[1] == 30050 and 30000 <= ports[0] < 30100 and ports[0] != 30050
    with pytest.raises(errors.Invalid, match=r"spec\.ports\[0\]\.nodePort: Invalid value: 30050: provided port "
                                             r"is already allocated"):
        api.create(svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30050}]))
    with pytest.raises(errors.Invalid, match="The range of valid ports is 30000-30099"):
        api.create(svc("np3", type="NodePort", ports=[{"port": 80, "nodePort": 31000}]))
    s["spec"]["type"] = "ClusterIP"                     # dropping NodePort releases the ports
    for p in s["spec"]["ports"]:
        p.pop("nodePort")
    api.update(s)
    assert api.node_ports.claimed() == {}
    api.delete("svc", "np", "default")
    assert api.service_ips.claimed() == {} and api.node_ports.claimed() == {}


def test_apply_creates_configures_and_keeps_allocations(api):
    made, what = api.apply(svc("web", type="NodePort"))
    assert what == "created"
    again, what = api.apply(svc("web", type="NodePort"))
    assert what == "unchanged"
    assert again["spec"]["clusterIP"] == made["spec"]["clusterIP"]
    assert again["spec"]["ports"][0]["nodePort"] == made["spec"]["ports"][0]["nodePort"]
    changed = svc("web", type="NodePort")
    changed["spec"]["ports"][0]["targetPort"] = 9090
    new, what = api.apply(changed)
    assert what == "configured" and new["spec"]["clusterIP"] == made["spec"]["clusterIP"]


def test_namespace_delete_takes_its_objects(api):
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    api.create(pod("a", "x"))
    api.create(svc("web", "x"))
    api.delete("namespaces", "x")
    assert api.list("pods", "x")[0] == [] and api.list("services", "x")[0] == []
    assert api.service_ips.claimed() == {}


def test_concurrent_service_creates_get_distinct_ips(api, store_factory, prefix):
    """50 creators, each on its own store client, released at once by a barrier: 50 distinct
    ClusterIPs and NodePorts; deleting every Service leaves no claim behind."""
    clients = [Client(store_factory(), prefix + "registry", service_network="10.96.0.0/24",
                      node_ports=range(30000, 30100)) for _ in range(50)]
    made: list[dict] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients))

    def work(c: Client, name: str) -> None:
        start.wait(30)
        try:
            s = c.create(svc(name, type="NodePort"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)
            return
        with lock:
            made.append(s)

    threads = [threading.Thread(target=work, args=(c, f"s{i}")) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    ips = [s["spec"]["clusterIP"] for s in made]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in made]
    assert len(made) == 50 and len(set(ips)) == 50 and len(set(ports)) == 50
    for s in made:
        api.delete("svc", s["metadata"]["name"], "default")
    assert api.service_ips.claimed() == {} and api.node_ports.claimed() == {}


def test_a_no_op_write_is_no_new_version(api):
    first, _ = api.apply(svc("web"))
    again, what = api.apply(svc("web"))
    assert what == "unchanged" and again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert api.update(again)["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_status_is_pruned_and_validated(api):
    p = api.create(pod("a"))
    p["status"] = {"phase": "Running", "podIP": "10.244.1.2", "bogus": 1}
    p = api.update_status(p)
    assert "bogus" not in p["status"] and api.warnings
    p["status"] = {"phase": 42}
    with pytest.raises(errors.Invalid, match=r"status\.phase"):
        api.update_status(p)


def test_terminate_marks_then_delete_removes(api):
    api.create(pod("a"))
    marked = api.terminate("pods", "a", "default", 30)
    md = marked["metadata"]
    assert md["deletionTimestamp"].endswith("Z") and md["deletionGracePeriodSeconds"] == 30
    assert api.terminate("pods", "a", "default", 5) == marked          # already terminating: unchanged
    marked["status"] = {"phase": "Running"}
    assert api.update_status(marked)["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]
    marked = api.get("pods", "a")
    marked["metadata"]["labels"] = {"x": "y"}
    assert api.update(marked)["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]
    api.delete("pods", "a", "default")
    assert api.find("pods", "a", "default") is None
