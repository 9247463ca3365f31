"""The real agent, one process per node netns, host-gw backend, SQLite store."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time

import pytest

from tests.cnirun import wait_for
from tests.netns.agent.conftest import agent_routes, http_get
from tulle.cluster import netconfig
from tulle.cluster.lease import DEFAULT_PREFIX, Lease, encode, subnet_key, subnets_prefix
from tulle.kernel import links, netns, nft
from tulle.store import open_store

pytestmark = pytest.mark.netns


def read_env(path: str) -> dict[str, str]:
    with open(path) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line)


def subnet_of(node) -> str:
    env = read_env(node.subnet_file)
    return str(ipaddress.IPv4Interface(env["FLANNEL_SUBNET"]).network)


def test_three_nodes_routes_reconcile_and_removal(cluster):
    store = open_store(cluster.store_url)
    try:
        netconfig.write_config(store, DEFAULT_PREFIX, netconfig.build("10.244.0.0/16", backend="host-gw"))
        nodes = [cluster.add_node(k) for k in (1, 2, 3)]
        for n in nodes:
            cluster.start(n)
        logs = cluster.logs
        wait_for("subnet.env on every node", lambda: all(os.path.exists(n.subnet_file) for n in nodes), logs=logs)
        subnets = {n.name: subnet_of(n) for n in nodes}
        assert len(set(subnets.values())) == 3
        env = read_env(nodes[0].subnet_file)
        assert env["FLANNEL_NETWORK"] == "10.244.0.0/16" and env["FLANNEL_MTU"] == "1500"
        assert env["FLANNEL_IPMASQ"] == "true"

        def expected(n):
            return {subnets[o.name]: o.ip for o in nodes if o is not n}

        for n in nodes:
            wait_for(f"routes on {n.name}", lambda n=n: agent_routes(n.ns) == expected(n), logs=logs)

        # masquerade: the agent's table, pod-to-pod excluded
        table = netns.run_in(nodes[0].ns, nft.list_table, "inet", "tulle-agent")
        comments = [r.comment for r in nft.rules(table, "postrouting")]
        assert comments[0] == "tulle-agent pod-to-pod 10.244.0.0/16"
        assert any("pods-to-outside" in c for c in comments)

        # the reconcile tick restores a deleted masquerade table
        subprocess.run(["nsenter", f"--net={nodes[0].ns}", "nft", "delete", "table", "inet", "tulle-agent"],
                       check=True)
        wait_for("masquerade table restored",
                 lambda: netns.run_in(nodes[0].ns, nft.list_table, "inet", "tulle-agent") is not None, logs=logs)

        # metrics and health
        n1 = nodes[0]
        code, body = wait_for("healthz ok", lambda: (r := http_get(n1.ns, f"http://{n1.ip}:9109/healthz"))[0] == 200
                              and r, logs=logs)
        assert body.strip() == "ok"
        code, text = http_get(n1.ns, f"http://{n1.ip}:9109/metrics")
        assert code == 200
        assert "tulle_leases 2" in text and "tulle_routes_programmed 2" in text
        assert "tulle_reconcile_total" in text and "# TYPE tulle_cni_request_seconds histogram" in text

        # a lease whose PublicIP is not L2 adjacent is refused, logged and counted
        far = Lease(ipaddress.IPv4Network("10.244.200.0/24"), ipaddress.IPv4Address("203.0.113.77"),
                    "host-gw", node="far")
        store.put(subnet_key(DEFAULT_PREFIX, far.subnet), encode(far))
        wait_for("refusal counted", lambda: 'tulle_leases_refused_total{backend="host-gw"} 1'
                 in http_get(n1.ns, f"http://{n1.ip}:9109/metrics")[1], logs=logs)
        assert "10.244.200.0/24" not in agent_routes(n1.ns)
        assert "not on a subnet directly connected" in n1.logs()
        store.delete(subnet_key(DEFAULT_PREFIX, far.subnet))

        # a route deleted by hand comes back within the reconcile interval (1 s)
        victim = subnets["n2"]
        subprocess.run(["nsenter", f"--net={n1.ns}", "ip", "route", "del", victim], check=True)
        wait_for("deleted route restored", lambda: agent_routes(n1.ns).get(victim) == nodes[1].ip,
                 timeout=10, logs=logs)

        # n3 leaves: agent stopped (SIGTERM, clean exit, data plane kept), lease deleted
        n3 = nodes[2]
        assert cluster.stop(n3) == 0
        assert agent_routes(n3.ns)  # routes stay after a stop
        assert store.delete(subnet_key(DEFAULT_PREFIX, ipaddress.IPv4Network(subnets["n3"])))
        for n in nodes[:2]:
            wait_for(f"n3's route gone from {n.name}", lambda n=n: subnets["n3"] not in agent_routes(n.ns),
                     logs=logs)

        # a restarted agent gets its subnet back (lease carrying its PublicIP); --no-ip-masq drops the table
        n2 = nodes[1]
        assert cluster.stop(n2) == 0
        cluster.start(n2, "--no-ip-masq")
        wait_for("n2 healthy again", lambda: http_get(n2.ns, f"http://{n2.ip}:9109/healthz")[0] == 200,
                 logs=logs)
        assert subnet_of(n2) == subnets["n2"]
        assert read_env(n2.subnet_file)["FLANNEL_IPMASQ"] == "false"
        assert netns.run_in(n2.ns, nft.list_table, "inet", "tulle-agent") is None
        kvs, _ = store.list(subnets_prefix(DEFAULT_PREFIX))
        assert sorted(kv.key.rsplit("/", 1)[1] for kv in kvs) == sorted(
            subnets[x].replace("/", "-") for x in ("n1", "n2"))
        assert all(kv.lease for kv in kvs)  # bound to TTL leases
    finally:
        store.close()
    for n in list(cluster.nodes.values()):
        assert cluster.stop(n) in (0, None)


def _nothing_created(node, store_url: str | None) -> None:
    names = {l.name for l in netns.run_in(node.ns, links.all_links)}
    assert names == {"lo", "eth0"}
    assert netns.run_in(node.ns, nft.list_table, "inet", "tulle-agent") is None
    assert agent_routes(node.ns) == {}
    assert not os.path.exists(node.subnet_file)
    if store_url:
        store = open_store(store_url)
        try:
            assert store.list(subnets_prefix(DEFAULT_PREFIX))[0] == []
        finally:
            store.close()


@pytest.mark.parametrize("case, words", [
    ("unknown-backend", "unknown backend 'bogus'; known backends: bgp, host-gw, udp, vxlan"),
    ("subnet-len", "SubnetLen /16 is larger than the network allows"),
    ("no-config", "no network config at /coreos.com/network/config"),
    ("backend-mismatch", "--backend vxlan does not match"),
    ("sqlite-missing-dir", "does not exist"),
    ("etcd-unreachable", "198.51.100.250:2379"),
])
def test_bad_input_exits_quickly_and_creates_nothing(cluster, case, words):
    node = cluster.add_node(1)
    store_url = cluster.store_url
    extra: list[str] = []
    if case in ("unknown-backend", "subnet-len", "backend-mismatch"):
        cfg = {"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}
        if case == "unknown-backend":
            cfg["Backend"] = {"Type": "bogus"}
        elif case == "subnet-len":
            cfg["SubnetLen"] = 16
        else:
            extra = ["--backend", "vxlan"]
        store = open_store(store_url)
        store.put(f"{DEFAULT_PREFIX}/config", json.dumps(cfg))
        store.close()
    elif case == "no-config":
        open_store(store_url).close()
    elif case == "sqlite-missing-dir":
        store_url = f"sqlite://{cluster.tmp}/missing/store.db"
    elif case == "etcd-unreachable":
        store_url = "etcd://198.51.100.250:2379"
    start = time.monotonic()
    proc = subprocess.run(cluster.command(node, *extra, store=store_url), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0
    assert time.monotonic() - start < 15
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tulle: ") and words in last, proc.stderr
    _nothing_created(node, store_url if case not in ("sqlite-missing-dir", "etcd-unreachable") else None)
