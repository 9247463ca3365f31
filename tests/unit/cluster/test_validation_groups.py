"""Rules of the other API groups — EndpointSlice, NetworkPolicy, Ingress, Deployment,
Lease — one broken field per case, the exact message kube-apiserver prints."""

from __future__ import annotations

import pytest

from tests.unit.cluster.objects import (DNS1035, DNS_LABEL, DNS_SUBDOMAIN, KEY_NAME, PORT_RANGE, PROTOCOLS, backend,
                                        changed, deployment, endpoint_slice, ingress, lease, messages,
                                        network_policy, stored)


def _set(**fields):
    return lambda o: o.update(fields)


def _spec(**fields):
    return lambda o: o["spec"].update(fields)


# -- EndpointSlice ----------------------------------------------------------------------

def _ep(**fields):
    return lambda o: o["endpoints"][0].update(fields)


@pytest.mark.parametrize("change, expected", [
    (lambda o: o.pop("addressType"), ["addressType: Required value"]),
    (_set(addressType="IP"), ['addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"']),
    (_ep(addresses=[]), ["endpoints[0].addresses: Required value: must contain at least 1 address"]),
    (_ep(addresses=["10.1.2"]), ['endpoints[0].addresses[0]: Invalid value: "10.1.2": must be a valid IPv4 address',
                                 'endpoints[0].addresses[0]: Invalid value: "10.1.2": must be a valid IP address']),
    (_ep(addresses=["127.0.0.1"]),
     ['endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
      '(127.0.0.0/8, ::1/128)']),
    (_ep(addresses=["169.254.1.1"]), ['endpoints[0].addresses[0]: Invalid value: "169.254.1.1": may not be in the '
                                      'link-local range (169.254.0.0/16, fe80::/10)']),
    (_ep(addresses=[f"10.0.0.{i}" for i in range(1, 102)]),
     ["endpoints[0].addresses: Too many: 101: must have at most 100 items"]),
    (_set(endpoints=[{"addresses": ["10.0.0.1"]}] * 1001), ["endpoints: Too many: 1001: must have at most 1000 items"]),
    (_ep(nodeName="Node_1"), [f'endpoints[0].nodeName: Invalid value: "Node_1": {DNS_SUBDOMAIN}']),
    (_ep(hostname="a.b"), ['endpoints[0].hostname: Invalid value: "a.b": must not contain dots']),
    (_set(addressType="FQDN", endpoints=[{"addresses": ["db"]}]),
     ['endpoints[0].addresses[0]: Invalid value: "db": should be a domain with at least two segments '
      'separated by dots']),
    (_set(ports=[{"name": "Http", "port": 80}]), [f'ports[0].name: Invalid value: "Http": {DNS_LABEL}']),
    (_set(ports=[{"name": "a", "port": 0}]), [f"ports[0].port: Invalid value: 0: {PORT_RANGE}"]),
    (_set(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]), ['ports[1].name: Duplicate value: "a"']),
    (_set(ports=[{"name": "a", "port": 80, "protocol": "ICMP"}]),
     [f'ports[0].protocol: Unsupported value: "ICMP": {PROTOCOLS}']),
    (_set(ports=[{"name": f"p{i}", "port": 80} for i in range(101)]),
     ["ports: Too many: 101: must have at most 100 items"]),
])
def test_endpoint_slice_rules(change, expected):
    assert messages(changed(endpoint_slice(), change)) == expected


def test_endpoint_slice_address_type_is_immutable_and_fqdn_passes():
    assert messages(endpoint_slice(addressType="FQDN", endpoints=[{"addresses": ["db.example.com"]}])) == []
    old = stored(endpoint_slice())
    assert messages(endpoint_slice(addressType="IPv6", endpoints=[{"addresses": ["fd00::1"]}]), old) == [
        'addressType: Invalid value: "IPv6": field is immutable']


# -- NetworkPolicy ----------------------------------------------------------------------

def _from(*peers):
    return _spec(ingress=[{"from": list(peers)}])


def _ports(*ports, direction="egress"):
    return _spec(**{direction: [{"ports": list(ports)}]})


SEL = "spec.podSelector.matchExpressions[0]"
PEER = "spec.ingress[0].from[0]"


@pytest.mark.parametrize("change, expected", [
    (lambda o: o["spec"].pop("podSelector"),
     ["spec.podSelector: Required value: an empty selector ({}) selects every pod in the namespace"]),
    (_spec(podSelector={"matchExpressions": [{"key": "app", "operator": "In"}]}),
     [f"{SEL}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]),
    (_spec(podSelector={"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]}),
     [f"{SEL}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"]),
    (_spec(podSelector={"matchExpressions": [{"key": "app", "operator": "Has"}]}),
     [f'{SEL}.operator: Invalid value: "Has": not a valid selector operator']),
    (_spec(podSelector={"matchExpressions": [{"key": "bad key", "operator": "Exists"}]}),
     [f'{SEL}.key: Invalid value: "bad key": {KEY_NAME}']),
    (_spec(podSelector={"matchLabels": {"bad key": "x"}}),
     [f'spec.podSelector.matchLabels: Invalid value: "bad key": {KEY_NAME}']),
    (_spec(policyTypes=["Both"]),
     ['spec.policyTypes[0]: Unsupported value: "Both": supported values: "Ingress", "Egress"']),
    (_spec(policyTypes=["Ingress", "Ingress"]), ['spec.policyTypes[1]: Duplicate value: "Ingress"']),
    (_spec(policyTypes=["Ingress", "Egress", "Ingress"]),
     ['spec.policyTypes: Invalid value: ["Ingress","Egress","Ingress"]: may not specify more than two policyTypes']),
    (_from({}), [f"{PEER}: Required value: must specify a peer"]),
    (_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
     [f"{PEER}: Forbidden: may not specify both ipBlock and another peer"]),
    (_from({"ipBlock": {}}), [f"{PEER}.ipBlock.cidr: Required value"]),
    (_from({"ipBlock": {"cidr": "10.0.0.0/33"}}),
     [f'{PEER}.ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
      '(e.g. 10.9.8.0/24 or 2001:db8::/64)']),
    (_from({"ipBlock": {"cidr": "10.0.0.1/8"}}),
     [f'{PEER}.ipBlock.cidr: Invalid value: "10.0.0.1/8": must not have bits set beyond the prefix length']),
    (_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/24"]}}),
     [f'{PEER}.ipBlock.except[0]: Invalid value: "192.168.0.0/24": must be a strict subset of `cidr`']),
    (_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}),
     [f'{PEER}.ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`']),
    (_ports({"protocol": "ICMP", "port": 53}),
     [f'spec.egress[0].ports[0].protocol: Unsupported value: "ICMP": {PROTOCOLS}']),
    (_ports({"port": 0}, direction="ingress"), [f"spec.ingress[0].ports[0].port: Invalid value: 0: {PORT_RANGE}"]),
    (_ports({"port": "web--http"}), ['spec.egress[0].ports[0].port: Invalid value: "web--http": must not contain '
                                     'consecutive hyphens']),
    (_ports({"port": 443, "endPort": 80}),
     ["spec.egress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`"]),
    (_ports({"port": "https", "endPort": 500}),
     ["spec.egress[0].ports[0].endPort: Invalid value: 500: may not be specified when `port` is non-numeric"]),
    (_ports({"endPort": 500}),
     ["spec.egress[0].ports[0].endPort: Invalid value: 500: may not be specified when `port` is not specified"]),
])
def test_network_policy_rules(change, expected):
    assert messages(changed(network_policy(), change)) == expected


# -- Ingress -------------------------------------------------------------------------

RULE = "spec.rules[0]"
PATH = f"{RULE}.http.paths[0]"


def _path(**fields):
    return lambda o: o["spec"]["rules"][0]["http"]["paths"][0].update(fields)


@pytest.mark.parametrize("change, expected", [
    (lambda o: o["spec"].pop("rules"),
     ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]),
    (lambda o: o["spec"]["rules"][0].update(host="1.2.3.4"),
     [f'{RULE}.host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address']),
    (lambda o: o["spec"]["rules"][0].update(host="foo.*.com"),
     [f'{RULE}.host: Invalid value: "foo.*.com": a wildcard DNS-1123 subdomain must start with \'*.\', followed by a '
      "valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
      "alphanumeric character (e.g. '*.example.com', regex used for validation is "
      "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
    (lambda o: o["spec"]["rules"][0]["http"].update(paths=[]), [f"{RULE}.http.paths: Required value"]),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0].pop("pathType"),
     [f"{PATH}.pathType: Required value: pathType must be specified"]),
    (_path(pathType="Glob"),
     [f'{PATH}.pathType: Unsupported value: "Glob": supported values: "Exact", "ImplementationSpecific", "Prefix"']),
    (_path(path="api"), [f'{PATH}.path: Invalid value: "api": must be an absolute path']),
    (_path(path="/a//b"), [f"{PATH}.path: Invalid value: \"/a//b\": must not contain '//'"]),
    (_path(backend={}), [f'{PATH}.backend: Invalid value: "": resource or service backend is required']),
    (_path(backend={**backend(), "resource": {"kind": "Bucket", "name": "b"}}),
     [f'{PATH}.backend: Invalid value: "": cannot set both resource and service backends']),
    (_path(backend={"service": {"name": "web", "port": {"name": "http", "number": 80}}}),
     [f'{PATH}.backend: Invalid value: "": cannot set both port name & port number']),
    (_path(backend={"service": {"name": "web"}}), [f"{PATH}.backend: Required value: port name or number is required"]),
    (_path(backend=backend(number=70000)), [f"{PATH}.backend.service.port.number: Invalid value: 70000: {PORT_RANGE}"]),
    (_path(backend=backend(name="Web")), [f'{PATH}.backend.service.name: Invalid value: "Web": {DNS1035}']),
    (_path(backend={"resource": {"kind": "Bucket"}}), [f"{PATH}.backend.resource.name: Required value"]),
    (_spec(tls=[{"hosts": ["Example.com"], "secretName": "tls"}]),
     [f'spec.tls[0].hosts[0]: Invalid value: "Example.com": {DNS_SUBDOMAIN}']),
    (_spec(tls=[{"secretName": "TLS"}]), [f'spec.tls[0].secretName: Invalid value: "TLS": {DNS_SUBDOMAIN}']),
    (_spec(ingressClassName="Nginx"), [f'spec.ingressClassName: Invalid value: "Nginx": {DNS_SUBDOMAIN}']),
    (lambda o: (o["metadata"].update(annotations={"kubernetes.io/ingress.class": "a"}),
                o["spec"].update(ingressClassName="b")),
     ['annotations.kubernetes.io/ingress.class: Invalid value: "a": must match `ingressClassName` when both '
      'are specified']),
])
def test_ingress_rules(change, expected):
    assert messages(changed(ingress(), change)) == expected


def test_ingress_default_backend_alone_passes():
    obj = ingress(defaultBackend=backend())
    obj["spec"].pop("rules")
    assert messages(obj) == []


# -- Deployment ------------------------------------------------------------------------

def _strategy(**rolling):
    return _spec(strategy={"type": "RollingUpdate", "rollingUpdate": rolling})


RU = "spec.strategy.rollingUpdate"


@pytest.mark.parametrize("change, expected", [
    (_spec(replicas=-1), ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
    (lambda o: o["spec"].pop("selector"), ["spec.selector: Required value"]),
    (_spec(selector={}), ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]),
    (_spec(selector={"matchLabels": {"app": "api"}}),
     ['spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`']),
    (lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("image"),
     ["spec.template.spec.containers[0].image: Required value"]),
    (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(ports=[{"containerPort": 70000}]),
     [f"spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: {PORT_RANGE}"]),
    (lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Never"),
     ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']),
    (lambda o: o["spec"]["template"]["metadata"]["labels"].update({"bad key": "x"}),
     [f'spec.template.labels: Invalid value: "bad key": {KEY_NAME}']),
    (_spec(strategy={"type": "BlueGreen"}),
     ['spec.strategy: Unsupported value: {"type":"BlueGreen"}: supported values: "Recreate", "RollingUpdate"']),
    (_spec(strategy={"type": "Recreate", "rollingUpdate": {}}),
     ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]),
    (_strategy(maxUnavailable="50"),
     [f'{RU}.maxUnavailable: Invalid value: "50": a valid percent string must be a numeric string followed by an '
      "ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"]),
    (_strategy(maxUnavailable="150%"), [f'{RU}.maxUnavailable: Invalid value: "150%": must not be greater than 100%']),
    (_strategy(maxUnavailable=0, maxSurge="0%"),
     [f"{RU}.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]),
    (_strategy(maxSurge=-1), [f"{RU}.maxSurge: Invalid value: -1: must be greater than or equal to 0"]),
    (_spec(minReadySeconds=600),
     ["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"]),
])
def test_deployment_rules(change, expected):
    assert messages(changed(deployment(), change)) == expected


def test_deployment_selector_is_immutable():
    old = stored(deployment())
    new = changed(deployment(), lambda o: (o["spec"].update(selector={"matchLabels": {"app": "api"}}),
                                          o["spec"]["template"]["metadata"].update(labels={"app": "api"})))
    assert messages(new, old) == ['spec.selector: Invalid value: {"matchLabels":{"app":"api"}}: field is immutable']
    assert messages(changed(deployment(), _spec(replicas=5)), old) == []


# -- Lease --------------------------------------------------------------------------------

@pytest.mark.parametrize("change, expected", [
    (_spec(leaseDurationSeconds=0), ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]),
    (_spec(leaseTransitions=-1), ["spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"]),
    (_spec(renewTime="2024-05-01T10:00:00Z"),
     ['spec.renewTime: Invalid value: "2024-05-01T10:00:00Z": must be an RFC 3339 time with microseconds '
      "(e.g. 2006-01-02T15:04:05.000000Z)"]),
    (_spec(preferredHolder="n2"), ["spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined"]),
])
def test_lease_rules(change, expected):
    assert messages(changed(lease(), change)) == expected


def test_a_held_lease_passes():
    assert messages(lease(acquireTime="2024-05-01T10:00:00.000000Z", renewTime="2024-05-01T10:00:05.123456+02:00",
                          leaseTransitions=3)) == []
