"""The API server's defaults, kind by kind."""

from __future__ import annotations

import base64

import pytest

from tests.unit.cluster.objects import (deployment, endpoint_slice, ingress, lease, namespace, network_policy, pod,
                                        secret, service)
from tulle.cluster.defaults import apply


def test_namespace_gets_its_name_label_always():
    assert apply(namespace("dev"))["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev"}
    ns = namespace("dev")
    ns["metadata"]["labels"] = {"kubernetes.io/metadata.name": "other", "team": "a"}
    assert apply(ns)["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev", "team": "a"}


def test_pod_defaults():
    spec = apply(pod(initContainers=[{"name": "i", "image": "x", "ports": [{"containerPort": 9}]}]))["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert spec["initContainers"][0]["ports"] == [{"containerPort": 9, "protocol": "TCP"}]
    assert "hostNetwork" not in spec


def test_pod_defaults_keep_what_is_given_and_fill_empty_strings():
    spec = apply(pod(restartPolicy="Never", dnsPolicy=""))["spec"]
    assert spec["restartPolicy"] == "Never" and spec["dnsPolicy"] == "ClusterFirst"


def test_host_network_pod_ports_are_host_ports():
    spec = apply(pod(hostNetwork=True))["spec"]
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "hostPort": 80}]


def test_cluster_ip_service_defaults():
    spec = apply(service())["spec"]
    assert spec == {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                    "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}


@pytest.mark.parametrize("target", ["http", 8080])
def test_service_target_port_is_kept(target):
    assert apply(service(ports=[{"port": 80, "targetPort": target}]))["spec"]["ports"][0]["targetPort"] == target


@pytest.mark.parametrize("spec, expected", [
    ({"type": "NodePort"}, {"externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster"}),
    ({"type": "LoadBalancer"}, {"externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True}),
    ({"externalIPs": ["198.51.100.7"]}, {"externalTrafficPolicy": "Cluster"}),
    ({"clusterIP": "10.96.0.10"}, {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}),
    ({"clusterIP": "None"}, {"clusterIPs": ["None"], "ipFamilies": ["IPv4"]}),
    ({"sessionAffinity": "ClientIP"}, {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
     {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
])
def test_service_type_dependent_defaults(spec, expected):
    got = apply(service(**spec))["spec"]
    assert {k: got.get(k) for k in expected} == expected


def test_service_defaults_leave_out_what_does_not_apply():
    cluster_ip = apply(service())["spec"]
    assert "externalTrafficPolicy" not in cluster_ip and "allocateLoadBalancerNodePorts" not in cluster_ip
    assert "clusterIP" not in cluster_ip                       # allocation is the object API's
    assert "sessionAffinityConfig" not in apply(service(sessionAffinityConfig={"clientIP": {}}))["spec"]
    external = apply(service(type="ExternalName", externalName="db.example.com"))["spec"]
    for absent in ("internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"):
        assert absent not in external


def test_secret_defaults_merge_string_data():
    got = apply(secret(data={"a": "eA==", "b": "eQ=="}, stringData={"b": "bee", "c": "sea"}))
    assert got["type"] == "Opaque" and "stringData" not in got
    assert {k: base64.b64decode(v).decode() for k, v in got["data"].items()} == {"a": "x", "b": "bee", "c": "sea"}
    assert apply(secret(type="kubernetes.io/tls"))["type"] == "kubernetes.io/tls"


def test_endpoint_slice_ports():
    assert apply(endpoint_slice(ports=[{"port": 80}]))["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]


@pytest.mark.parametrize("spec, types", [
    ({}, ["Ingress"]),
    ({"egress": [{}]}, ["Ingress", "Egress"]),
    ({"egress": []}, ["Ingress"]),                      # Go: len(egress) == 0
    ({"policyTypes": ["Egress"]}, ["Egress"]),
])
def test_network_policy_types(spec, types):
    assert apply(network_policy(**spec))["spec"]["policyTypes"] == types


def test_network_policy_port_protocol():
    got = apply(network_policy(ingress=[{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}]))
    assert got["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]


def test_deployment_defaults_and_its_template_as_a_pod():
    spec = apply(deployment())["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    recreate = apply(deployment(replicas=0, strategy={"type": "Recreate"}))["spec"]
    assert recreate["replicas"] == 0 and recreate["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("obj", [ingress(), lease()], ids=["Ingress", "Lease"])
def test_kinds_without_defaults_are_copied_as_they_are(obj):
    assert apply(obj) == obj


def test_the_input_is_never_changed():
    obj = service()
    apply(obj)
    assert obj == service()
