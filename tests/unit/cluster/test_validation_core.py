"""core/v1 rules: Pod, Service, Secret, Namespace — one broken field per case, the
exact message kube-apiserver prints for it."""

from __future__ import annotations

import pytest

from tests.unit.cluster.objects import (DNS_LABEL, DNS_SUBDOMAIN, LABEL_VALUE, PORT_RANGE, PROTOCOLS,
                                        changed, messages, namespace, pod, secret, service, stored)
from tulle.cluster import errors
from tulle.cluster.prepare import prepare


def _c(**fields):
    """Change the first container."""
    return lambda o: o["spec"]["containers"][0].update(fields)


def _p(**fields):
    """Change the first container's first port."""
    return lambda o: o["spec"]["containers"][0]["ports"][0].update(fields)


def _spec(**fields):
    return lambda o: o["spec"].update(fields)


def _sp(**fields):
    """Change the Service's first port."""
    return lambda o: o["spec"]["ports"][0].update(fields)


C0 = "spec.containers[0]"
P0 = f"{C0}.ports[0]"


@pytest.mark.parametrize("change, expected", [
    (_spec(containers=[]), ["spec.containers: Required value"]),
    (_c(name="Web"), [f'{C0}.name: Invalid value: "Web": {DNS_LABEL}']),
    (_c(name=""), [f"{C0}.name: Required value"]),
    (lambda o: o["spec"]["containers"].append({"name": "c", "image": "x"}),
     ['spec.containers[1].name: Duplicate value: "c"']),
    (_c(image=""), [f"{C0}.image: Required value"]),
    (_c(image=" nginx"), [f'{C0}.image: Invalid value: " nginx": must not have leading or trailing whitespace']),
    (_c(imagePullPolicy="Sometimes"),
     [f'{C0}.imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"']),
    (_c(env=[{"name": "A=B"}]), [f'{C0}.env[0].name: Invalid value: "A=B": a valid environment variable name must '
                                 "consist only of printable ASCII characters other than '='"]),
    (_p(containerPort=0), [f"{P0}.containerPort: Required value"]),
    (_p(containerPort=70000), [f"{P0}.containerPort: Invalid value: 70000: {PORT_RANGE}"]),
    (_p(hostPort=70000), [f"{P0}.hostPort: Invalid value: 70000: {PORT_RANGE}"]),
    (_p(protocol="ICMP"), [f'{P0}.protocol: Unsupported value: "ICMP": {PROTOCOLS}']),
    (_p(name="web--http"), [f'{P0}.name: Invalid value: "web--http": must not contain consecutive hyphens']),
    (_p(name="8080"), [f'{P0}.name: Invalid value: "8080": must contain at least one letter (a-z)']),
    (_p(name="-http"), [f'{P0}.name: Invalid value: "-http": must not begin or end with a hyphen']),
    (_p(name="a-very-long-port"),
     [f'{P0}.name: Invalid value: "a-very-long-port": must be no more than 15 characters']),
    (_p(name="HTTP"), [f'{P0}.name: Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), '
                       "and hyphens (-)", f'{P0}.name: Invalid value: "HTTP": must contain at least one letter (a-z)']),
    (_c(ports=[{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}]),
     [f'{C0}.ports[1].name: Duplicate value: "http"']),
    (lambda o: o["spec"].update(containers=[
        {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
        {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}]),
     ['spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080"']),
    (lambda o: (o["spec"].update(hostNetwork=True), o["spec"]["containers"][0]["ports"][0].update(hostPort=81)),
     [f"{P0}.hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true"]),
    (_c(restartPolicy="Always"), [f"{C0}.restartPolicy: Forbidden: may not be set for non-init containers"]),
    (_spec(initContainers=[{"name": "c", "image": "x"}]), ['spec.initContainers[0].name: Duplicate value: "c"']),
    (_spec(initContainers=[{"name": "i", "image": "x", "restartPolicy": "Never"}]),
     ['spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always"']),
    (_spec(restartPolicy="Sometimes"),
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    (_spec(dnsPolicy="Google"), ['spec.dnsPolicy: Unsupported value: "Google": supported values: '
                                 '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"']),
    (_spec(nodeName="Node_1"), [f'spec.nodeName: Invalid value: "Node_1": {DNS_SUBDOMAIN}']),
    (_spec(serviceAccountName="Web"), [f'spec.serviceAccountName: Invalid value: "Web": {DNS_SUBDOMAIN}']),
    (_spec(hostname="a.b"), ['spec.hostname: Invalid value: "a.b": must not contain dots']),
    (_spec(nodeSelector={"disk": "-ssd"}), [f'spec.nodeSelector: Invalid value: "-ssd": {LABEL_VALUE}']),
    (_spec(activeDeadlineSeconds=0),
     ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"]),
    (_spec(tolerations=[{"operator": "Equal", "value": "x"}]),
     ['spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which '
      'means "match all values and all keys"']),
    (_spec(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]),
     ["spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
      "`tolerationSeconds` is set"]),
    (_spec(hostAliases=[{"ip": "10.0.0.300", "hostnames": ["db"]}]),
     ['spec.hostAliases[0].ip: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or '
      '2001:db8::ffff)']),
])
def test_pod_rules(change, expected):
    assert messages(changed(pod(), change)) == expected


def test_pod_update_may_change_images_labels_and_add_tolerations():
    old = stored(pod(tolerations=[{"key": "k", "operator": "Exists"}]))
    new = changed(old, lambda o: (o["metadata"].update(labels={"v": "2"}), _c(image="nginx:2")(o),
                                  o["spec"]["tolerations"].append({"key": "j", "operator": "Exists"})))
    assert messages(new, old) == []


@pytest.mark.parametrize("change, expected", [
    (lambda o: o["spec"]["containers"].append({"name": "d", "image": "x"}),
     "spec.containers: Forbidden: pod updates may not add or remove containers"),
    (_spec(tolerations=[]),
     "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"),
])
def test_pod_update_refuses_structural_changes(change, expected):
    old = stored(pod(tolerations=[{"key": "k", "operator": "Exists"}]))
    assert expected in messages(changed(old, change), old)


def test_pod_update_forbids_other_spec_changes_in_the_api_servers_words():
    old = stored(pod())
    [msg] = messages(changed(old, _spec(restartPolicy="Never", nodeName="n2")), old)
    assert msg.startswith("spec: Forbidden: pod updates may not change fields other than "
                          "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                          "`spec.tolerations` (only additions to existing tolerations),"
                          "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
                          "negative)")
    assert msg.endswith("\nchanged: spec.nodeName, spec.restartPolicy")


# -- Service ---------------------------------------------------------------------------

S0 = "spec.ports[0]"


@pytest.mark.parametrize("change, expected", [
    (_sp(port=70000, targetPort=8080), [f"{S0}.port: Invalid value: 70000: {PORT_RANGE}"]),
    (_spec(ports=[]), ["spec.ports: Required value"]),
    (_spec(type="Foo"), ['spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", '
                         '"LoadBalancer", "NodePort"']),
    (_sp(protocol="ICMP"), [f'{S0}.protocol: Unsupported value: "ICMP": {PROTOCOLS}']),
    (_sp(targetPort=70000), [f"{S0}.targetPort: Invalid value: 70000: {PORT_RANGE}"]),
    (_sp(targetPort="web--http"),
     [f'{S0}.targetPort: Invalid value: "web--http": must not contain consecutive hyphens']),
    (_sp(name="Web"), [f'{S0}.name: Invalid value: "Web": {DNS_LABEL}']),
    (_spec(ports=[{"port": 80}, {"port": 443}]),
     ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
    (_spec(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]), ['spec.ports[1].name: Duplicate value: "a"']),
    (_spec(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
     ['spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}']),
    (_sp(nodePort=30080), [f"{S0}.nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    (_spec(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30080},
                                   {"name": "b", "port": 81, "nodePort": 30080}]),
     ["spec.ports[1].nodePort: Duplicate value: 30080"]),
    (_spec(clusterIP="10.0.0.300"),
     ['spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, '
      '(e.g. 10.9.8.7 or 2001:db8::ffff)']),
    (_spec(clusterIP="010.0.0.1"), ['spec.clusterIPs[0]: Invalid value: "010.0.0.1": must not have leading 0s']),
    (_spec(clusterIP="10.0.0.1", clusterIPs=["10.0.0.2"]),
     ['spec.clusterIPs: Invalid value: ["10.0.0.2"]: first value must match `clusterIP`']),
    (_spec(type="NodePort", clusterIP="None"),
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]),
    (_spec(type="ExternalName"), ["spec.externalName: Required value"]),
    (_spec(type="ExternalName", externalName="DB.example.com"),
     [f'spec.externalName: Invalid value: "DB.example.com": {DNS_SUBDOMAIN}']),
    (_spec(type="ExternalName", externalName="db.example.com", clusterIP="10.0.0.1"),
     ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]),
    (_spec(sessionAffinity="Sticky"), ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: '
                                       '"ClientIP", "None"']),
    (_spec(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}}),
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less "
      "than 86400"]),
    (_spec(externalTrafficPolicy="Local"),
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']),
    (_spec(type="NodePort", externalTrafficPolicy="Nearby"),
     ['spec.externalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"']),
    (_spec(internalTrafficPolicy="Nearby"),
     ['spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"']),
    (_spec(externalIPs=["not-an-ip"]),
     ['spec.externalIPs[0]: Invalid value: "not-an-ip": must be a valid IP address, '
      '(e.g. 10.9.8.7 or 2001:db8::ffff)']),
    (_spec(externalIPs=["127.0.0.1"]),
     ['spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)']),
    (_spec(loadBalancerSourceRanges=["10.0.0.0/8"]),
     ["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    (_spec(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.1/8"]),
     ['spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.1/8": must not have bits set beyond the '
      'prefix length']),
    (_spec(allocateLoadBalancerNodePorts=False),
     ["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    (_spec(selector={"app": "-web"}), [f'spec.selector: Invalid value: "-web": {LABEL_VALUE}']),
])
def test_service_rules(change, expected):
    assert messages(changed(service(), change)) == expected


@pytest.mark.parametrize("spec", [
    {"clusterIP": "None"},                                          # headless: ports optional
    {"type": "ExternalName", "externalName": "db.example.com."},    # a trailing dot is allowed
    {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30123},
])
def test_services_without_ports_or_with_extras_pass(spec):
    obj = service(**spec)
    if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
        obj["spec"].pop("ports")
    assert messages(obj) == []


def test_a_set_cluster_ip_may_not_change():
    old = stored(service(clusterIP="10.96.0.10"))
    assert messages(service(clusterIP="10.96.0.11"), old) == [
        'spec.clusterIPs[0]: Invalid value: ["10.96.0.11"]: may not change once set']
    assert messages(service(), old) == []                      # left out: the object API keeps the old one
    assert messages(stored(service(clusterIP="10.96.0.10")), old) == []


# -- Secret, Namespace -----------------------------------------------------------------

@pytest.mark.parametrize("obj, expected", [
    (secret(data={"bad key": "eA=="}),
     ['data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '
      "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
      "'[-._a-zA-Z0-9]+')"]),
    (secret(data={"..": "eA=="}), ["data[..]: Invalid value: \"..\": must not be '..'"]),
    (secret(data={"x": "eA="}),
     ['data[x]: Invalid value: "<secret contents redacted>": illegal base64 data at input byte 3']),
    (secret(type="kubernetes.io/tls", data={"tls.crt": "eA=="}), ["data[tls.key]: Required value"]),
    (secret(type="kubernetes.io/basic-auth"), ["data[username]: Required value", "data[password]: Required value"]),
    (secret(type="kubernetes.io/dockerconfigjson", stringData={".dockerconfigjson": "{"}),
     ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": Expecting property name enclosed in '
      "double quotes: line 1 column 2 (char 1)"]),
    (namespace("Dev"), [f'metadata.name: Invalid value: "Dev": {DNS_LABEL}']),
])
def test_secret_and_namespace_rules(obj, expected):
    assert messages(obj) == expected


def test_secret_updates():
    old = stored(secret(data={"a": "eA=="}))
    assert messages(secret(type="kubernetes.io/tls", data={"tls.crt": "eA==", "tls.key": "eA=="}), old) == [
        'type: Invalid value: "kubernetes.io/tls": field is immutable']
    frozen = stored(secret(data={"a": "eA=="}, immutable=True))
    assert messages(secret(data={"a": "eQ=="}, immutable=True), frozen) == [
        "data: Forbidden: field is immutable when `immutable` is set"]
    assert messages(secret(data={"a": "eA=="}), frozen) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"]


def test_changing_a_service_type_drops_what_the_server_filled_in():
    old = stored(service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}], clusterIP="10.96.0.10"))
    old["status"] = {"loadBalancer": {}}
    ready, _ = prepare(changed(old, _spec(type="ClusterIP")), old)
    assert "externalTrafficPolicy" not in ready["spec"] and "nodePort" not in ready["spec"]["ports"][0]
    assert ready["spec"]["clusterIPs"] == ["10.96.0.10"] and ready["status"] == {}
    gone, _ = prepare(changed(old, _spec(type="ExternalName", externalName="db.example.com")), old)
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(gone["spec"])


def test_a_type_dependent_field_the_client_changed_is_still_refused():
    old = stored(service(type="NodePort"))
    with pytest.raises(errors.Invalid, match='spec.externalTrafficPolicy: Invalid value: "Local": may only be set '
                                             "for externally-accessible services"):
        prepare(changed(old, _spec(type="ClusterIP", externalTrafficPolicy="Local")), old)


def test_namespace_finalizers_in_its_spec():
    ns = changed(namespace(), lambda o: o.update(spec={"finalizers": ["kubernetes", "cleanup"]}))
    assert messages(ns) == ['spec.finalizers: Invalid value: "cleanup": name is neither a standard finalizer name '
                            "nor is it fully qualified"]
