"""The pure part of lab pods: --port/--labels flags, the Pod `pod add` makes, what a Pod asks
the lab to serve, hostPort mappings, statuses; and the scheduler's placement."""

from __future__ import annotations

import pytest

from tulle.errors import ConfigError, TulleError
from tulle.lab import podspec, schedule, topology
from tulle.lab.podspec import Container, Port


@pytest.mark.parametrize("flag, port", [
    ("8080", {"containerPort": 8080, "protocol": "TCP"}),
    ("5353/udp", {"containerPort": 5353, "protocol": "UDP"}),
    ("http:8080/tcp", {"name": "http", "containerPort": 8080, "protocol": "TCP"}),
    ("dns:53/UDP", {"name": "dns", "containerPort": 53, "protocol": "UDP"}),
    (" 1 ", {"containerPort": 1, "protocol": "TCP"}),
    ("x:65535", {"name": "x", "containerPort": 65535, "protocol": "TCP"}),
])
def test_port_flag(flag, port):
    assert podspec.parse_port(flag) == port


@pytest.mark.parametrize("flag, words", [
    ("0", "1..65535"), ("65536", "1..65535"), ("http", "1..65535"), ("a:b:80", "[name:]port"),
    ("80/sctp", "'sctp' is not tcp or udp"), ("", "[name:]port"), ("http:/tcp", "[name:]port"),
])
def test_bad_port_flag_names_the_rule(flag, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace(".", r"\.")):
        podspec.parse_port(flag)


def test_labels_flag():
    assert podspec.parse_labels("app=web, tier=front,") == {"app": "web", "tier": "front"}
    assert podspec.parse_labels("empty=") == {"empty": ""}
    assert podspec.parse_labels(None) == {}
    for bad in ("app", "=x", "a=b,c"):
        with pytest.raises(ConfigError, match="key=value"):
            podspec.parse_labels(bad)


def test_pod_add_makes_a_one_container_pod_named_like_kubectl_run():
    pod = podspec.pod_manifest("demo", "web-1", "n2", {"app": "web"}, [podspec.parse_port("http:8080")])
    assert pod == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "demo", "labels": {"app": "web"}},
        "spec": {"nodeName": "n2", "containers": [{
            "name": "web-1", "image": podspec.LAB_IMAGE,
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
    }
    bare = podspec.pod_manifest("default", "a", "n1")
    assert "labels" not in bare["metadata"] and "ports" not in bare["spec"]["containers"][0]


def test_containers_and_their_ports():
    pod = {"spec": {"containers": [
        {"name": "web", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]},
        {"name": "sidecar"},
    ]}}
    assert podspec.containers_of(pod) == (
        Container("web", (Port(8080, "TCP", "http"), Port(53, "UDP"))), Container("sidecar", ()))
    assert str(Port(53, "UDP")) == "53/UDP"
    sctp = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 9, "protocol": "SCTP"}]}]}}
    with pytest.raises(ConfigError, match=r"spec.containers\[0\].ports\[0\].protocol: SCTP"):
        podspec.containers_of(sctp)


def test_host_ports_become_portmap_mappings_except_with_host_network():
    pod = {"spec": {"containers": [{"name": "c", "ports": [
        {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353,
                                                  "hostIP": "198.51.100.11"},
        {"containerPort": 9}]}]}}
    assert podspec.port_mappings(pod) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "198.51.100.11"}]
    pod["spec"]["hostNetwork"] = True
    assert podspec.host_network(pod) and podspec.port_mappings(pod) == []


def test_statuses():
    pod = {"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}}
    pending = podspec.pending_status("T0")
    assert pending["phase"] == "Pending" and [c["type"] for c in pending["conditions"]] == ["PodScheduled"]
    st = podspec.running_status(pod, "10.244.1.2", "198.51.100.11", "T1", {"a": "tulle://42"})
    assert st["phase"] == "Running" and st["podIP"] == "10.244.1.2" and st["podIPs"] == [{"ip": "10.244.1.2"}]
    assert st["hostIP"] == "198.51.100.11"
    ready = {c["type"]: c["status"] for c in st["conditions"]}
    assert ready["Ready"] == ready["ContainersReady"] == "True"
    assert [(c["name"], c["ready"], c["restartCount"]) for c in st["containerStatuses"]] == \
        [("a", True, 0), ("b", True, 0)]
    assert st["containerStatuses"][0]["containerID"] == "tulle://42"
    assert "containerID" not in st["containerStatuses"][1]


def test_keys_and_refs():
    assert podspec.key("demo", "web") == "demo/web"
    assert podspec.split_ref("demo/web") == ("demo", "web")
    assert podspec.split_ref("web") == ("default", "web")
    assert podspec.split_ref("web", "demo") == ("demo", "web")


def test_pod_netns_names_are_unambiguous_and_recognised():
    assert topology.pod_netns("lab", "a") == "tulle-lab-pod-default_a"
    assert topology.pod_netns("lab", "web-7c5d-x8f9z", "demo") == "tulle-lab-pod-demo_web-7c5d-x8f9z"
    assert topology.is_lab_netns("lab", "tulle-lab-pod-demo_web.v2")
    for other in ("tulle-lab-pod-a", "tulle-lab-pod-_a", "tulle-lab-pod-Demo_a", "tulle-lab-pod-demo_"):
        assert not topology.is_lab_netns("lab", other), other
    topology.check_pod_name("a" * 63)
    topology.check_namespace("kube-system")
    for bad in ("a" * 64, "-a", "a-", "A", "a_b"):
        with pytest.raises(ConfigError, match="bad pod name"):
            topology.check_pod_name(bad)
    for bad in ("a.b", "a" * 64, "-a"):
        with pytest.raises(ConfigError, match="bad namespace"):
            topology.check_namespace(bad)


def test_a_pod_goes_to_the_node_with_the_fewest_pods():
    assert schedule.least_loaded(["n1", "n2", "n3"], {"n1": 2, "n2": 1, "n3": 1}) == "n2"
    assert schedule.least_loaded(["n10", "n2"], {}) == "n2"            # node order, not string order
    with pytest.raises(TulleError, match="no node"):
        schedule.least_loaded([], {})


def test_replicas_spread_over_nodes():
    nodes = ["n1", "n2", "n3"]
    assert schedule.spread(nodes, {}, {}, 3) == ["n1", "n2", "n3"]
    assert schedule.spread(nodes, {}, {}, 5) == ["n1", "n2", "n3", "n1", "n2"]
    # this set already on n1; n2 holds other pods: n3 first, then n2
    assert schedule.spread(nodes, {"n1": 1, "n2": 4}, {"n1": 1}, 2) == ["n3", "n2"]
    assert schedule.spread(nodes, {}, {}, 0) == []
