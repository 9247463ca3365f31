"""Lab pods as Pod objects: `pod add` with a namespace, labels and ports; servers answering with
namespace/name over TCP and UDP; `lab probe` and its exit codes; a failed or interrupted add
leaves nothing; the containers of a pod share its netns (localhost); hostNetwork pods run in
their node's netns. One lab for the module."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.lab.conftest import api, cli, lab_up, needs_agent
from tests.lab.test_pods import lease_files
from tulle import procs
from tulle.cluster import errors
from tulle.errors import ExistsError
from tulle.kernel import netns
from tulle.lab import containers, pods, podspec, state, topology
from tulle.lab.session import open_session

pytestmark = [pytest.mark.netns, needs_agent]

N2_IP = "198.51.100.12"


@pytest.fixture(scope="module")
def lab():
    with lab_up(nodes_count=2, backend="host-gw") as name:
        yield name


@pytest.fixture(scope="module")
def web(lab):
    """kube-system/web-1 on n2, added through the CLI with labels and two ports."""
    code, out, err = cli("lab", "pod", "add", "--lab", lab, "-n", "kube-system", "--labels", "app=web,tier=front",
                         "--port", "http:8080", "--port", "dns:5353/udp", "n2", "web-1")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def client_pod(lab):
    return pods.add(lab, "n1", "client")


def apply(lab: str, tmp_path, *docs: dict) -> tuple[int, str, str]:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return cli("lab", "apply", "--lab", lab, "-f", str(path))


def probe(lab: str, *args: str) -> tuple[int, str, str]:
    return cli("lab", "probe", "--lab", lab, *args)


def nothing_of(lab: str, namespace: str, name: str) -> list[str]:
    """Whatever is left of one pod: its object, netns, state entry, server processes, files."""
    left = []
    with api(lab) as c:
        if c.find("pods", name, namespace) is not None:
            left.append("object")
    if netns.exists(topology.pod_netns(lab, name, namespace)):
        left.append("netns")
    if podspec.key(namespace, name) in state.load(lab).pods:
        left.append("state")
    folder = containers.pod_dir(lab, namespace, name)
    left += [f"pid {p}" for p in procs.find(lambda args: any(a.startswith(folder + "/") for a in args))]
    if os.path.exists(folder):
        left.append(folder)
    return left


def test_pod_add_writes_a_pod_object(lab, web):
    ps = state.load(lab).pods["kube-system/web-1"]
    assert web.strip() == f"pod kube-system/web-1 on n2: {ps.ip}"
    with api(lab) as c:
        pod = c.get("pods", "web-1", "kube-system")
    md, spec, status = pod["metadata"], pod["spec"], pod["status"]
    assert md["labels"] == {"app": "web", "tier": "front"} and md["uid"] and md["creationTimestamp"]
    assert spec["nodeName"] == "n2" and [c["name"] for c in spec["containers"]] == ["web-1"]
    assert [(p["name"], p["containerPort"], p["protocol"]) for p in spec["containers"][0]["ports"]] == \
        [("http", 8080, "TCP"), ("dns", 5353, "UDP")]
    assert status["phase"] == "Running" and status["podIP"] == ps.ip and status["podIPs"] == [{"ip": ps.ip}]
    assert status["hostIP"] == N2_IP
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert list(ps.servers) == ["web-1"] and ps.netns == topology.pod_netns(lab, "web-1", "kube-system")

    code, out, _ = cli("lab", "pods", "--lab", lab, "--json")
    assert {"name": "web-1", "namespace": "kube-system", "node": "n2", "ip": ps.ip} in json.loads(out)
    code, out, _ = cli("lab", "get", "pods", "--lab", lab, "-n", "kube-system", "-o", "wide")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                              "READINESS", "GATES"]
    assert row.split()[:3] == ["web-1", "1/1", "Running"] and row.split()[5:7] == [ps.ip, "n2"]


def test_servers_answer_with_namespace_and_name_and_probe_says_who(lab, web, client_pod):
    ip = state.load(lab).pods["kube-system/web-1"].ip
    who = "kube-system/web-1 (container web-1)"
    for target in ("kube-system/web-1:8080", "kube-system/web-1:http", f"{ip}:8080", "kube-system/web-1:8080/tcp",
                   "kube-system/web-1:dns", "kube-system/web-1:5353/udp", f"{ip}:5353/UDP"):
        assert probe(lab, "client", target) == (0, who + "\n", ""), target
    code, out, _ = probe(lab, "default/client", "kube-system/web-1:dns", "--json")
    result = json.loads(out)
    assert code == 0 and result["answered"] and result["protocol"] == "UDP" and result["port"] == 5353
    assert result["pod"] == "kube-system/web-1" and result["via"] == "pod kube-system/web-1"
    assert probe(lab, "client", "kube-system/web-1") == (0, "kube-system/web-1 answered the ICMP echo\n", "")
    # and the other way round, from a pod in another namespace
    assert probe(lab, "-n", "kube-system", "web-1", "default/client")[0] == 0


def test_probe_exit_codes(lab, web, client_pod):
    ip = state.load(lab).pods["kube-system/web-1"].ip
    assert probe(lab, "client", "kube-system/web-1:9999") == (1, "", f"no answer from {ip}:9999/TCP: refused\n")
    assert probe(lab, "client", "kube-system/web-1:9999/udp")[2] == f"no answer from {ip}:9999/UDP: refused\n"
    silent = ip.rsplit(".", 1)[0] + ".250"            # in n2's pod subnet, nobody there: no ARP answer
    assert probe(lab, "client", f"{silent}:80", "--timeout", "0.5") == \
        (1, "", f"no answer from {silent}:80/TCP: timed out\n")
    assert probe(lab, "client", "10.99.0.1:80")[2] == "no answer from 10.99.0.1:80/TCP: network is unreachable\n"
    for bad, words in [(("nosuch", "client"), "has no pod 'nosuch' in namespace 'default'"),
                       (("client", "nosuch:80"), "has no pod 'nosuch'"),
                       (("client", "kube-system/web-1:metrics"), "has no port named 'metrics'"),
                       (("client", "10.0.0.1:http"), "a named port needs a pod or a service"),
                       (("client", "web-1:70000"), "not in 1..65535"),
                       (("client", "web-1:80/sctp"), "'sctp' is not tcp or udp")]:
        code, out, err = probe(lab, *bad)
        assert code == 2 and words in err, (bad, err)


def test_a_failed_or_interrupted_pod_add_leaves_nothing(lab, monkeypatch):
    leases = lease_files(lab, "n1")
    code, _, err = cli("lab", "pod", "add", "--lab", lab, "--port", "Bad_Name:80", "n1", "bad")
    assert code == 1 and err.startswith('Error from server (Invalid): The Pod "bad" is invalid: '
                                        'spec.containers[0].ports[0].name: Invalid value: "Bad_Name"'), err
    assert nothing_of(lab, "default", "bad") == []

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt                      # Ctrl-C after the CNI ADD, while servers start
    monkeypatch.setattr(containers, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pods.add(lab, "n1", "cut", ports=[podspec.parse_port("8080")])
    monkeypatch.undo()
    assert nothing_of(lab, "default", "cut") == [] and lease_files(lab, "n1") == leases

    real_spawn, calls = procs.spawn, []

    def second_fails(*args, **kwargs):              # the second container's server cannot start
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_spawn(*args, **kwargs)
    monkeypatch.setattr(procs, "spawn", second_fails)
    duo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "half"}, "spec": {"nodeName": "n1", "containers": [
        {"name": "a", "image": "x", "ports": [{"containerPort": 7001}]},
        {"name": "b", "image": "x", "ports": [{"containerPort": 7002}]}]}}
    with pytest.raises(KeyboardInterrupt):
        with open_session(lab) as s:
            pods.create(s, duo)
    monkeypatch.undo()
    assert len(calls) == 2 and nothing_of(lab, "default", "half") == [] and lease_files(lab, "n1") == leases


def test_containers_of_a_pod_share_its_netns(lab, client_pod, tmp_path):
    duo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "duo", "labels": {"app": "duo"}},
           "spec": {"nodeName": "n1", "containers": [
               {"name": "web", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]},
               {"name": "side", "image": "x", "ports": [{"containerPort": 9090},
                                                        {"containerPort": 9053, "protocol": "UDP"}]},
               {"name": "idle", "image": "x"}]}}
    assert apply(lab, tmp_path, duo) == (0, "pod/duo created\n", "")
    ps = state.load(lab).pods["default/duo"]
    assert sorted(ps.servers) == ["side", "web"]              # one process per container with ports
    for target, who in (("127.0.0.1:8080", "web"), ("127.0.0.1:9090", "side"), ("127.0.0.1:9053/udp", "side")):
        assert probe(lab, "duo", target) == (0, f"default/duo (container {who})\n", ""), target
    assert probe(lab, "client", "duo:9090") == (0, "default/duo (container side)\n", "")
    assert probe(lab, "client", "duo:http") == (0, "default/duo (container web)\n", "")
    code, out, _ = cli("lab", "get", "pod", "duo", "--lab", lab)
    assert out.splitlines()[1].split()[:3] == ["duo", "3/3", "Running"]
    assert cli("lab", "delete", "--lab", lab, "pod", "duo") == (0, 'pod "duo" deleted\n', "")
    assert nothing_of(lab, "default", "duo") == []


def test_host_network_pods_run_in_the_node_netns(lab, tmp_path, client_pod):
    def hostnet(name: str, port: int) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": "n2", "hostNetwork": True, "containers": [
                    {"name": "agent", "image": "x", "ports": [{"containerPort": port},
                                                              {"containerPort": 9153, "protocol": "UDP"}]}]}}

    assert apply(lab, tmp_path, hostnet("hostnet", 9100)) == (0, "pod/hostnet created\n", "")
    ps = state.load(lab).pods["default/hostnet"]
    assert ps.host_network and ps.ip == N2_IP and not netns.exists(topology.pod_netns(lab, "hostnet"))
    with api(lab) as c:
        status = c.get("pods", "hostnet")["status"]
    assert status["podIP"] == status["hostIP"] == N2_IP
    node_ns = os.stat(netns.path_of(topology.node_netns(lab, "n2"))).st_ino
    assert os.stat(f"/proc/{ps.servers['agent']}/ns/net").st_ino == node_ns      # no netns of its own
    # from another node's netns (a hostNetwork pod on n1, no ports: no process), and from a pod on
    # n1: pods reach node addresses through their default gateway, the node's bridge
    peer = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "peer"},
            "spec": {"nodeName": "n1", "hostNetwork": True, "containers": [{"name": "sh", "image": "x"}]}}
    assert apply(lab, tmp_path, peer) == (0, "pod/peer created\n", "")
    assert state.load(lab).pods["default/peer"].servers == {}
    for source in ("peer", "client"):
        for target in (f"{N2_IP}:9100", "hostnet:9100", "hostnet:9153/udp"):
            assert probe(lab, source, target) == (0, "default/hostnet (container agent)\n", ""), (source, target)

    code, out, err = apply(lab, tmp_path, hostnet("clash", 9100))             # the node's port is taken
    assert code == 1 and out == "" and \
        "port 9100/TCP is already in use in node n2's network namespace (pod default/clash uses hostNetwork)" in err
    assert nothing_of(lab, "default", "clash") == []
    with pytest.raises(ExistsError):
        with open_session(lab) as s:
            pods.create(s, hostnet("clash", 9100))
    pid = ps.servers["agent"]
    pods.delete(lab, "hostnet")
    assert not procs.alive(pid) and nothing_of(lab, "default", "hostnet") == []
    assert netns.exists(topology.node_netns(lab, "n2"))
    with pytest.raises(errors.NotFound):
        pods.delete(lab, "hostnet")
    pods.delete(lab, "peer")
    assert netns.exists(topology.node_netns(lab, "n1"))
