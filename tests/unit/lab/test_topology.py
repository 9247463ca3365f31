"""The lab's plan (names, addresses, refusals), its conflist, agent command and state codec: no root."""

from __future__ import annotations

import ipaddress

import pytest

from tulle.errors import ConfigError
from tulle.lab import agents, nodes, topology
from tulle.lab.state import LabState, PodState


def test_default_plan_layout():
    plan = topology.plan()
    assert plan.lab == "lab" and plan.backend == "vxlan" and plan.store == "sqlite"
    assert [n.name for n in plan.nodes] == ["n1", "n2", "n3"]
    assert [str(n.ip) for n in plan.nodes] == ["198.51.100.11/24", "198.51.100.12/24", "198.51.100.13/24"]
    assert [n.netns for n in plan.nodes] == ["tulle-lab-n1", "tulle-lab-n2", "tulle-lab-n3"]
    assert plan.fabric_netns == "tulle-lab-fabric" and plan.router_netns is None
    assert str(plan.fabric_ip) == "198.51.100.254/24"
    assert plan.network == ipaddress.IPv4Network("10.244.0.0/16") and plan.subnet_len == 24
    assert all(plan.routes_of(n) == [] for n in plan.nodes)   # one segment: no routes, never a default
    assert plan.state_dir == "/run/tulle/labs/lab"
    assert topology.pod_netns("lab", "a") == "tulle-lab-pod-default_a"


def test_two_segments_alternate_and_route_via_the_router():
    plan = topology.plan("x", nodes=4, segments=2)
    assert plan.router_netns == "tulle-x-router"
    assert [(n.name, n.segment, str(n.ip.ip)) for n in plan.nodes] == [
        ("n1", 0, "198.51.100.11"), ("n2", 1, "203.0.113.12"),
        ("n3", 0, "198.51.100.13"), ("n4", 1, "203.0.113.14")]
    assert [str(s.router_ip) for s in plan.segments] == ["198.51.100.1/24", "203.0.113.1/24"]
    assert plan.routes_of(plan.nodes[0]) == [(ipaddress.IPv4Network("203.0.113.0/24"),
                                               ipaddress.IPv4Address("198.51.100.1"))]
    assert plan.routes_of(plan.nodes[1]) == [(ipaddress.IPv4Network("198.51.100.0/24"),
                                               ipaddress.IPv4Address("203.0.113.1"))]


def test_store_urls():
    assert topology.plan("a").store_url() == "sqlite:///run/tulle/labs/a/store.db"
    etcd = topology.plan("a", store="etcd")
    assert etcd.store_url() == "etcd://198.51.100.254:2379"
    assert etcd.store_url(from_cli=True) == "etcd://198.51.100.254:2379?netns=tulle-a-fabric"


@pytest.mark.parametrize("kwargs, words", [
    ({"backend": "host-gw", "segments": 2}, "host-gw needs every node on one L2 segment"),
    ({"backend": "bogus"}, "unknown backend 'bogus'"),
    ({"store": "redis"}, "unknown store 'redis'"),
    ({"segments": 3}, "--segments must be 1 or 2"),
    ({"segments": 0}, "--segments must be 1 or 2"),
    ({"nodes": 0}, "--nodes must be between 1"),
    ({"nodes": 1000}, "--nodes must be between 1"),
    ({"network": "198.51.100.0/25"}, "overlaps the lab underlay 198.51.100.0/24"),
    ({"network": "203.0.0.0/8"}, "overlaps the lab underlay 203.0.113.0/24"),
    ({"network": "127.0.0.0/16"}, "overlaps a reserved range"),
    ({"network": "10.244.0.0/33"}, "bad pod network"),
    ({"network": "10.244.0.1/16"}, "bad pod network"),
    ({"subnet_len": 16}, "SubnetLen /16 is larger than the network allows"),
    ({"subnet_len": 31}, "SubnetLen /31 is too long"),
    ({"network": "10.244.0.0/24", "subnet_len": 25, "nodes": 3}, "has 1 node subnet(s), fewer than the 3"),
    ({"lab": "Bad-Name"}, "bad lab name"),
    ({"lab": "averyveryverylongname"}, "bad lab name"),
])
def test_bad_options_are_refused_with_a_clear_message(kwargs, words):
    with pytest.raises(ConfigError) as exc:
        topology.plan(**kwargs)
    assert words in exc.value.msg


def test_vxlan_and_udp_may_cross_segments():
    for backend in ("vxlan", "udp"):
        assert len(topology.plan(backend=backend, segments=2).segments) == 2


def test_lab_netns_shapes_are_exact():
    ok = ["tulle-a-fabric", "tulle-a-router", "tulle-a-n1", "tulle-a-n12", "tulle-a-pod-default_web-1"]
    assert all(topology.is_lab_netns("a", n) for n in ok)
    not_ours = ["tulle-ab-n1", "tulle-a-3", "tulle-a-3-host", "tulle-a-n0", "tulle-a-pod-", "tulle-a-fabricx",
                "tulle-etcd-123"]
    assert not any(topology.is_lab_netns("a", n) for n in not_ours)


def test_names_checked():
    with pytest.raises(ConfigError):
        topology.check_pod_name("Bad_Pod")
    assert topology.node_index("n7") == 7
    with pytest.raises(ConfigError):
        topology.node_index("node7")


def test_conflist_wires_the_fabric_plugin_to_the_nodes_agent():
    conf = nodes.conflist("a", "n2")
    assert [p["type"] for p in conf["plugins"]] == ["tulle", "portmap"]
    fabric = conf["plugins"][0]
    assert fabric == {"type": "tulle", "subnetFile": "/run/tulle/labs/a/n2/subnet.env",
                      "agentSocket": "/run/tulle/labs/a/n2/agent.sock", "dataDir": "/run/tulle/labs/a/n2/cni",
                      "delegate": {"hairpinMode": True, "isDefaultGateway": True}}


def test_agent_command_follows_the_contract():
    plan = topology.plan("a", store="etcd")
    cmd = agents.command(plan, plan.nodes[1])
    assert cmd[1:5] == ["-m", "tulle.cli.main", "agent", "run"]
    args = dict(zip(cmd[5::2], cmd[6::2]))
    assert args == {"--node": "n2", "--store": "etcd://198.51.100.254:2379", "--public-ip": "198.51.100.12",
                    "--socket": "/run/tulle/labs/a/n2/agent.sock",
                    "--subnet-file": "/run/tulle/labs/a/n2/subnet.env",
                    "--state-dir": "/run/tulle/labs/a/n2", "--metrics-addr": "198.51.100.12:9109",
                    "--leader-lease-duration": str(agents.LEADER_LEASE)}


def test_state_round_trip_and_plan_keeps_only_remaining_nodes():
    st = LabState("a", {"nodes": 3, "segments": 1, "backend": "udp", "store": "sqlite",
                        "network": "10.244.0.0/16", "subnet_len": 24},
                  nodes={"n1": 10, "n3": 30}, pods={"p": PodState("n1", "10.244.5.2", "a-p")}, phase="up")
    back = LabState.from_json(st.to_json())
    assert back == st
    assert [n.name for n in back.plan().nodes] == ["n1", "n3"]
    assert back.plan().nodes[1].ip == ipaddress.IPv4Interface("198.51.100.13/24")
