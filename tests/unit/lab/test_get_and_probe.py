"""`lab get` output forms and `lab probe` target resolution over a real object API on an
in-memory store (no root, no netns); `lab apply`'s up-front check of every object."""

from __future__ import annotations

import datetime
import json

import pytest
import yaml

from tulle.cluster import errors
from tulle.cluster.api import Client
from tulle.errors import ConfigError, NotFoundError
from tulle.lab import apply, get, probe, topology
from tulle.lab.session import Session
from tulle.lab.state import LabState, PodState
from tulle.store import open_store


@pytest.fixture
def client():
    store = open_store("sqlite://:memory:")
    c = Client(store)
    c.ensure_defaults()
    c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
              "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                             {"name": "dns", "port": 53, "protocol": "UDP"}]}})
    for name, ns in (("web-1", "demo"), ("web-2", "demo"), ("a", "default")):
        c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                                  "labels": {"app": "web" if ns == "demo" else "a"}},
                  "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x", "ports": [
                      {"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353,
                                                                "protocol": "UDP"}]}]}})
    yield c
    store.close()


def test_get_tables_lists_and_names(client):
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
    table = get.get(client, "po", namespace="demo", now=later).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r.split()[0] for r in table[1:]] == ["web-1", "web-2"]
    assert table[1].split()[1] == "0/1" and table[1].endswith(("5m", "4m59s"))      # no status written yet
    assert get.get(client, "pods", all_namespaces=True).stdout.splitlines()[1].split()[:2] == ["default", "a"]
    assert get.get(client, "pods", selector="app=a", all_namespaces=True).stdout.count("\n") == 1
    assert get.get(client, "deploy") == get.Answer(stderr="No resources found in default namespace.")
    assert get.get(client, "deploy", all_namespaces=True) == get.Answer(stderr="No resources found")
    with pytest.raises(ConfigError, match="a resource cannot be retrieved by name across all namespaces"):
        get.get(client, "pods", "a", all_namespaces=True)
    assert get.get(client, "ns", output="name").stdout.splitlines() == \
        ["namespace/default", "namespace/demo", "namespace/kube-node-lease", "namespace/kube-public",
         "namespace/kube-system"]
    one = json.loads(get.get(client, "svc", "web", namespace="demo", output="json").stdout)
    assert one["kind"] == "Service" and one["metadata"]["name"] == "web"
    many = yaml.safe_load(get.get(client, "services", namespace="demo", output="yaml").stdout)
    assert many["kind"] == "List" and many["metadata"] == {"resourceVersion": ""} and len(many["items"]) == 1
    empty = json.loads(get.get(client, "deploy", output="json").stdout)
    assert empty == {"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}}
    assert get.get(client, "deploy", output="name") == get.Answer()
    with pytest.raises(errors.NotFound, match='pods "nope" not found'):
        get.get(client, "pods", "nope")
    with pytest.raises(errors.BadRequest, match="resource type \"gadgets\""):
        get.get(client, "gadgets")
    with pytest.raises(ConfigError, match="allowed formats are: wide,json,yaml,name"):
        get.get(client, "pods", output="table")


def test_name_forms_are_kubectls():
    from tulle.cluster import kinds

    assert get.name_form(kinds.lookup("deploy"), "web") == "deployment.apps/web"
    assert get.name_form(kinds.lookup("svc"), "web") == "service/web"
    assert get.ref_form(kinds.lookup("endpointslices"), "w") == 'endpointslice.discovery.k8s.io "w"'
    assert get.ref_form(kinds.lookup("po"), "x") == 'pod "x"'


def test_yaml_quotes_like_kubectl():
    assert get.dump({"t": "2024-01-01T00:00:00Z", "rv": "7", "s": "plain"}, "yaml") == \
        'rv: "7"\ns: plain\nt: "2024-01-01T00:00:00Z"'


@pytest.mark.parametrize("text, target", [
    ("10.0.0.1", probe.Target("10.0.0.1")),
    ("10.0.0.1:80", probe.Target("10.0.0.1", "80")),
    ("web:http", probe.Target("web", "http")),
    ("demo/web:53/udp", probe.Target("demo/web", "53", "UDP")),
])
def test_probe_targets(text, target):
    assert probe.parse_target(text) == target


@pytest.mark.parametrize("text", ["a:b:c", "web:0", "web:65536", "web:80/icmp", ""])
def test_bad_probe_targets(text):
    with pytest.raises(ConfigError):
        probe.parse_target(text)


@pytest.fixture
def session(client):
    st = LabState("lab", {"nodes": 2}, nodes={"n1": 0, "n2": 0}, phase="up",
                  pods={"demo/web-1": PodState("n1", "10.244.1.2", "c1", "tulle-lab-pod-demo_web-1"),
                        "default/a": PodState("n2", "10.244.2.2", "c2", "tulle-lab-pod-default_a"),
                        "default/host": PodState("n2", "198.51.100.12", "c3", "")})
    return Session(st, topology.plan("lab", nodes=2), client)


def test_probe_resolves_pods_services_and_ports(session):
    def route(src: str, to: str, ns: str | None = None) -> tuple:
        r = probe.resolve(session, src, probe.parse_target(to), ns)
        return r.address, r.port, r.protocol, r.via

    assert route("a", "demo/web-1:http") == ("10.244.1.2", 8080, "TCP", "pod demo/web-1")
    assert route("a", "demo/web-1:dns") == ("10.244.1.2", 5353, "UDP", "pod demo/web-1")
    assert route("a", "demo/web-1") == ("10.244.1.2", None, "ICMP", "pod demo/web-1")
    web = session.client.get("services", "web", "demo")["spec"]["clusterIP"]
    assert route("web-1", "web:http", "demo") == (web, 80, "TCP", "service demo/web")    # FROM's namespace
    assert route("demo/web-1", "web:53") == (web, 53, "UDP", "service demo/web")
    assert route("demo/web-1", "web:8080") == (web, 8080, "TCP", "service demo/web")     # unlisted: tried anyway
    assert route("a", "10.9.9.9:9/udp") == ("10.9.9.9", 9, "UDP", "address")
    assert probe.resolve(session, "host", probe.Target("10.0.0.1")).netns_path == "/run/netns/tulle-lab-n2"
    for src, to, words in [("nosuch", "a", "no pod 'nosuch'"), ("a", "demo/nosuch:80", "no pod 'nosuch'"),
                           ("a", "demo/web:metrics", "no port named 'metrics'"),
                           ("a", "demo/web-1:metrics", "no port named 'metrics'")]:
        with pytest.raises((ConfigError, NotFoundError), match=words):
            probe.resolve(session, src, probe.parse_target(to))


def test_apply_checks_every_object_before_writing():
    good = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 0}]}}
    odd = {"apiVersion": "v9", "kind": "Pod", "metadata": {"name": "p"}}
    out = apply.check([good, bad, odd], "f.yaml")
    assert out.failed and out.out == [] and len(out.err) == 2
    assert out.err[0].startswith('Error from server (Invalid): error when creating "f.yaml": The Service "s" is '
                                 'invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535')
    assert 'no matches for kind "Pod" in version "v9"' in out.err[1]
    assert not apply.check([good], "f.yaml").failed


def test_apply_checks_update_rules_against_the_stored_object(client):
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "d"}},
                       "template": {"metadata": {"labels": {"app": "d"}},
                                    "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    client.create(deploy)
    moved = {**deploy, "spec": {**deploy["spec"], "selector": {"matchLabels": {"app": "d", "v": "2"}},
                                "template": {**deploy["spec"]["template"],
                                             "metadata": {"labels": {"app": "d", "v": "2"}}}}}
    out = apply.check([moved], "f.yaml", lambda k, body: client.find(k, "d", "default"))
    assert out.failed and 'error when patching "f.yaml"' in out.err[0] and "field is immutable" in out.err[0]
    assert not apply.check([moved], "f.yaml").failed            # as a creation it would be fine
