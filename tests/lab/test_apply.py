"""`tulle lab apply/get/delete` as kubectl: round trips of every kind with -o wide|json|yaml|name,
Deployments scaling up and down and replacing pods of an old template, bad manifests refused
with field paths and nothing created. One lab for the module."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest
import yaml

from tests.lab.conftest import api, cli, lab_up, needs_agent
from tulle.kernel import netns
from tulle.lab import deployments, state, topology

pytestmark = [pytest.mark.netns, needs_agent]

NAME_CHARS = f"[{deployments.ALPHANUMS}]"


@pytest.fixture(scope="module")
def lab():
    with lab_up(nodes_count=3, backend="host-gw") as name:
        yield name


def write(tmp_path, *docs: dict, name: str = "manifest.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def lab_cli(lab: str, *args: str) -> tuple[int, str, str]:
    return cli("lab", *args[:1], "--lab", lab, *args[1:])


SHOP = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cart", "namespace": "shop", "labels": {"app": "cart"}},
     "spec": {"containers": [{"name": "cart", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart", "namespace": "shop"},
     "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "deny-all", "namespace": "shop"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": "shop"},
     "type": "Opaque", "data": {"token": "c2VjcmV0"}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "cart", "namespace": "shop"},
     "spec": {"rules": [{"host": "cart.example", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
         "service": {"name": "cart", "port": {"number": 80}}}}]}}]}},
]


def test_apply_get_delete_round_trip(lab, tmp_path):
    path = write(tmp_path, *SHOP)
    made = ["namespace/shop", "pod/cart", "service/cart", "networkpolicy.networking.k8s.io/deny-all", "secret/tls",
            "ingress.networking.k8s.io/cart"]
    assert lab_cli(lab, "apply", "-f", path) == (0, "".join(f"{m} created\n" for m in made), "")
    assert lab_cli(lab, "apply", "-f", path) == (0, "".join(f"{m} unchanged\n" for m in made), "")
    SHOP[2]["metadata"]["labels"] = {"tier": "front"}
    code, out, _ = lab_cli(lab, "apply", "-f", write(tmp_path, *SHOP))
    assert out.splitlines()[2] == "service/cart configured" and out.count("unchanged") == 5

    ps = state.load(lab).pods["shop/cart"]                    # no nodeName: on the least loaded node
    cells = lab_cli(lab, "get", "pods", "-n", "shop", "-o", "wide")[1].splitlines()[1].split()
    assert cells[:4] + cells[5:] == ["cart", "1/1", "Running", "0", ps.ip, ps.node, "<none>", "<none>"]
    code, out, _ = lab_cli(lab, "get", "svc", "-n", "shop", "-o", "wide")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    cells = row.split()
    assert cells[:2] == ["cart", "ClusterIP"] and cells[3:5] == ["<none>", "80/TCP"] and cells[6] == "app=cart"
    code, out, _ = lab_cli(lab, "get", "svc", "cart", "-n", "shop", "-o", "json")
    svc = json.loads(out)
    assert svc["kind"] == "Service" and svc["spec"]["clusterIP"] == cells[2] and out.startswith('{\n    "apiVersion"')
    code, out, _ = lab_cli(lab, "get", "pods", "-n", "shop", "-o", "yaml")
    listed = yaml.safe_load(out)
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1" and \
        [p["metadata"]["name"] for p in listed["items"]] == ["cart"]
    assert listed["items"][0]["status"]["podIP"] == ps.ip
    assert lab_cli(lab, "get", "netpol", "-n", "shop")[1].splitlines()[1].split()[:2] == ["deny-all", "<none>"]
    ingress = lab_cli(lab, "get", "ing", "-n", "shop")[1].splitlines()
    assert ingress[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert ingress[1].split()[:4] == ["cart", "<none>", "cart.example", "80"]        # no ADDRESS yet
    assert lab_cli(lab, "get", "secrets", "-n", "shop")[1].splitlines()[1].split()[:3] == ["tls", "Opaque", "1"]
    assert lab_cli(lab, "get", "ns", "shop")[1].splitlines()[1].split()[:2] == ["shop", "Active"]
    assert lab_cli(lab, "get", "pods", "-A", "-o", "name") == (0, "pod/cart\n", "")
    code, out, _ = lab_cli(lab, "get", "pods", "-A")
    assert out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"] and any(
        line.split()[:2] == ["shop", "cart"] for line in out.splitlines())
    assert lab_cli(lab, "get", "pods", "-n", "shop", "-l", "app=cart")[1].splitlines()[1].startswith("cart ")
    assert lab_cli(lab, "get", "pods", "-n", "shop", "-l", "app in (x,y)") == \
        (0, "", "No resources found in shop namespace.\n")
    assert lab_cli(lab, "get", "pods", "nosuch", "-n", "shop") == \
        (1, "", 'Error from server (NotFound): pods "nosuch" not found\n')
    assert lab_cli(lab, "get", "gadgets")[2] == 'error: the server doesn\'t have a resource type "gadgets"\n'

    assert lab_cli(lab, "delete", "secret", "tls", "-n", "shop") == (0, 'secret "tls" deleted\n', "")
    code, out, err = lab_cli(lab, "delete", "-f", path)         # the last first; the secret is gone already
    assert code == 1 and out.splitlines() == ['ingress.networking.k8s.io "cart" deleted',
                                              'networkpolicy.networking.k8s.io "deny-all" deleted',
                                              'service "cart" deleted', 'pod "cart" deleted',
                                              'namespace "shop" deleted']
    assert err == f'Error from server (NotFound): error when deleting "{path}": secrets "tls" not found\n'
    assert not netns.exists(ps.netns) and "shop/cart" not in state.load(lab).pods
    assert lab_cli(lab, "get", "ns", "shop")[2] == 'Error from server (NotFound): namespaces "shop" not found\n'


def test_apply_from_stdin_and_a_namespace_takes_its_pods(lab, monkeypatch):
    docs = [SHOP[0], SHOP[1]]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(yaml.safe_dump_all(docs).encode())))
    assert lab_cli(lab, "apply", "-f", "-") == (0, "namespace/shop created\npod/cart created\n", "")
    ps = state.load(lab).pods["shop/cart"]
    assert lab_cli(lab, "delete", "ns", "shop") == (0, 'namespace "shop" deleted\n', "")
    assert not netns.exists(ps.netns) and "shop/cart" not in state.load(lab).pods
    with api(lab) as c:
        assert c.list("pods", "shop")[0] == []


def deployment(replicas: int, port: int = 8080) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [
                         {"name": "api", "image": "x", "ports": [{"name": "http", "containerPort": port}]}]}}}}


def replicas(lab: str) -> dict[str, dict]:
    with api(lab) as c:
        return {p["metadata"]["name"]: p for p in c.list("pods", "default", selector="app=api")[0]}


def test_deployment_replicas_scale_and_roll(lab, tmp_path):
    assert lab_cli(lab, "apply", "-f", write(tmp_path, deployment(3))) == (0, "deployment.apps/api created\n", "")
    first = replicas(lab)
    hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in first.values()}
    assert len(first) == 3 and len(hashes) == 1
    pod_hash = hashes.pop()
    for name, pod in first.items():
        assert re.fullmatch(rf"api-{pod_hash}-{NAME_CHARS}{{5}}", name), name
        assert re.fullmatch(rf"{NAME_CHARS}{{1,10}}", pod_hash)
        assert pod["metadata"]["labels"] == {"app": "api", "pod-template-hash": pod_hash}
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        assert pod["status"]["phase"] == "Running"
    assert sorted(p["spec"]["nodeName"] for p in first.values()) == ["n1", "n2", "n3"]     # spread
    row = lab_cli(lab, "get", "deploy")[1].splitlines()[1].split()
    assert row[:4] == ["api", "3/3", "3", "3"]

    assert lab_cli(lab, "apply", "-f", write(tmp_path, deployment(5))) == (0, "deployment.apps/api configured\n", "")
    up = replicas(lab)
    assert len(up) == 5 and set(first) <= set(up)
    per_node = [sum(1 for p in up.values() if p["spec"]["nodeName"] == n) for n in ("n1", "n2", "n3")]
    assert max(per_node) - min(per_node) <= 1
    wide = lab_cli(lab, "get", "deploy", "api", "-o", "wide")[1].splitlines()[1].split()
    assert wide[:4] + wide[5:] == ["api", "5/5", "5", "5", "api", "x", "app=api"]

    assert lab_cli(lab, "apply", "-f", write(tmp_path, deployment(2))) == (0, "deployment.apps/api configured\n", "")
    down = replicas(lab)
    assert len(down) == 2 and set(down) <= set(up)
    st = state.load(lab)
    for gone in set(up) - set(down):
        assert f"default/{gone}" not in st.pods and not netns.exists(topology.pod_netns(lab, gone))
    assert lab_cli(lab, "apply", "-f", write(tmp_path, deployment(2))) == (0, "deployment.apps/api unchanged\n", "")
    assert set(replicas(lab)) == set(down)

    assert lab_cli(lab, "apply", "-f", write(tmp_path, deployment(2, port=9090)))[1] == \
        "deployment.apps/api configured\n"
    rolled = replicas(lab)
    new_hash = {p["metadata"]["labels"]["pod-template-hash"] for p in rolled.values()}
    assert len(rolled) == 2 and not set(rolled) & set(down) and new_hash != {pod_hash} and len(new_hash) == 1
    assert all(p["spec"]["containers"][0]["ports"][0]["containerPort"] == 9090 for p in rolled.values())
    for old in down:
        assert not netns.exists(topology.pod_netns(lab, old))
    with api(lab) as c:
        status = c.get("deployments", "api")["status"]
    assert status["replicas"] == status["readyReplicas"] == status["updatedReplicas"] == 2

    assert lab_cli(lab, "delete", "deploy", "api") == (0, 'deployment.apps "api" deleted\n', "")
    assert replicas(lab) == {} and not any(k.startswith("default/api-") for k in state.load(lab).pods)
    for name in rolled:
        assert not netns.exists(topology.pod_netns(lab, name))


def test_bad_manifests_are_refused_with_field_paths_and_create_nothing(lab, tmp_path):
    bad_svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "bad"},
               "spec": {"ports": [{"port": 70000, "targetPort": 8080}]}}
    path = write(tmp_path, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bad"}}, bad_svc,
                 dict(deployment(-1), metadata={"name": "api", "namespace": "bad"}))
    code, out, err = lab_cli(lab, "apply", "-f", path)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == (f'Error from server (Invalid): error when creating "{path}": The Service "web" is invalid: '
                        f'spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive')
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in lines[1], lines
    with api(lab) as c:
        assert c.find("namespaces", "bad") is None                      # the good one was not applied either

    code, out, err = lab_cli(lab, "apply", "-f", write(tmp_path, {"apiVersion": "v1", "kind": "Gadget",
                                                                  "metadata": {"name": "g"}}))
    assert code == 1 and 'no matches for kind "Gadget" in version "v1"' in err
    (tmp_path / "broken.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: [\n")
    code, out, err = lab_cli(lab, "apply", "-f", str(tmp_path / "broken.yaml"))
    assert code == 1 and err.startswith("error: error parsing") and out == ""
    assert lab_cli(lab, "apply", "-f", str(tmp_path / "none.yaml"))[2] == \
        f'error: the path "{tmp_path / "none.yaml"}" does not exist\n'

    warned = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "warned"},
              "spec": {"ports": [{"port": 80}], "foo": 1}}                # unknown fields warn, not fail
    assert lab_cli(lab, "apply", "-f", write(tmp_path, warned)) == \
        (0, "service/warned created\n", 'Warning: unknown field "spec.foo"\n')
    assert lab_cli(lab, "delete", "svc", "warned") == (0, 'service "warned" deleted\n', "")
