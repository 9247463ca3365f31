"""The cluster-wide controllers over a real in-memory store: endpoints and allocation
repair, driven through the Host exactly as the agent drives them."""

from __future__ import annotations

import ipaddress

from tulle.agent.controller import Host
from tulle.agent.controllers.allocations import AllocationRepair
from tulle.agent.controllers.endpoints import EndpointsController
from tulle.agent.controllers.network import MasqueradeController, MasqueradePlan, block_pods
from tulle.cluster import allocators
from tulle.cluster.api import Client
from tulle.cluster.lease import Lease
from tulle.store.sqlite import SqliteStore


class Leading:
    def tick(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def setup(*controllers_of):
    store = SqliteStore(":memory:")
    api = Client(store)
    api.ensure_defaults()
    controllers = [make(api) for make in controllers_of]
    host = Host(store, controllers, leadership=Leading())
    host.relist()
    host.lead()
    return store, api, host, controllers


def service(name="web") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def ready_pod(api: Client, name: str, ip: str, app: str = "web") -> None:
    api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}})
    api.mutate("pods", name, "default", lambda p: p.update(status={
        "phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}), status=True)


def step(host: Host, full: bool = False) -> None:
    host.poll(0.5)
    assert host.run(full=full)


def slice_ips(api: Client) -> list[str]:
    items = api.list("endpointslices", "default")[0]
    return sorted(e["addresses"][0] for s in items for e in s.get("endpoints") or [])


def test_endpoints_follow_pods_and_reach_a_fixed_point():
    store, api, host, _ = setup(EndpointsController)
    api.create(service())
    ready_pod(api, "a", "10.244.1.2")
    step(host)
    assert slice_ips(api) == ["10.244.1.2"]
    ready_pod(api, "b", "10.244.1.3")
    step(host)
    assert slice_ips(api) == ["10.244.1.2", "10.244.1.3"]
    step(host)                                      # its own writes come back: nothing more to do
    _, rev = store.list("/")
    step(host, full=True)
    assert store.list("/")[1] == rev                # a full pass over a converged state writes nothing
    api.delete("pods", "a", "default")
    step(host)
    assert slice_ips(api) == ["10.244.1.3"]


def test_full_resync_gives_the_incremental_result():
    """A controller that missed every event reaches the same slices in one full pass."""
    store, api, host, _ = setup(EndpointsController)
    api.create(service())
    for i in range(5):
        ready_pod(api, f"p{i}", f"10.244.1.{i + 2}")
        step(host)
    incremental = slice_ips(api)
    fresh = Host(store, [EndpointsController(api)], leadership=Leading())
    fresh.relist()
    fresh.lead()
    _, rev = store.list("/")
    assert fresh.run(full=True)
    assert slice_ips(api) == incremental and store.list("/")[1] == rev


def test_repair_releases_only_claims_stale_past_the_grace():
    clock = Clock()
    store, api, host, (repair,) = setup(lambda api: AllocationRepair(api, clock=clock, grace=30))
    live = api.create(service())
    leaked = allocators.Owner("default", "gone", "uid-gone")
    assert api.service_ips.claim("10.96.0.77", leaked)
    step(host)
    assert "10.96.0.77" in api.service_ips.claimed()         # seen once: only suspected
    clock.t = 31
    step(host, full=True)
    claimed = api.service_ips.claimed()
    assert "10.96.0.77" not in claimed and live["spec"]["clusterIP"] in claimed


def test_masquerade_plan_in_bgp_mode_comes_from_the_blocks_in_the_snapshot():
    import json

    store = SqliteStore(":memory:")
    prefix = "/coreos.com/network"
    store.put(f"{prefix}/blocks/10.244.0.0-26", json.dumps({"Affinity": "n1", "Allocations": {}}))
    store.put(f"{prefix}/blocks/10.244.0.64-26", json.dumps({"Affinity": "n2", "Allocations": {
        "10.244.0.70": {"Node": "n1"}}}))
    own = Lease(subnet=ipaddress.IPv4Network("10.244.100.0/24"), public_ip=ipaddress.IPv4Address("198.51.100.11"),
                backend_type="bgp")
    c = MasqueradeController(ipaddress.IPv4Network("10.244.0.0/16"), prefix, lambda: own, block_pods(prefix, "n1"),
                             extra_prefixes=(f"{prefix}/blocks/",))
    host = Host(store, [c])
    host.relist()
    plan = c.plan(host.snapshot())
    assert plan == MasqueradePlan(True, ipaddress.IPv4Network("10.244.0.0/16"),
                                  (ipaddress.IPv4Network("10.244.0.0/26"), ipaddress.IPv4Network("10.244.0.70/32")))


def test_masquerade_controller_writes_the_ruleset_once_and_repairs_it():
    from tulle.kernel import nft

    store = SqliteStore(":memory:")
    prefix = "/coreos.com/network"
    fake = nft.FakeNft()
    own = Lease(subnet=ipaddress.IPv4Network("10.244.3.0/24"), public_ip=ipaddress.IPv4Address("198.51.100.11"),
                backend_type="vxlan")
    from tulle.agent.controllers.network import lease_pods

    c = MasqueradeController(ipaddress.IPv4Network("10.244.0.0/16"), prefix, lambda: own, lease_pods, runner=fake)
    host = Host(store, [c])
    host.relist()
    assert host.run(full=True)
    dump = fake.dump("inet", "tulle-agent")
    assert "ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return" in dump
    assert "ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return" in dump
    assert "masquerade fully-random" in dump
    assert host.run(full=True) and fake.dump("inet", "tulle-agent") == dump     # in place: not rewritten
    fake.run(nft.Transaction("inet", "tulle-agent").flush(nft.Chain("postrouting", type="nat", hook="postrouting",
                                                                     priority="srcnat")))
    assert host.run(full=True) and fake.dump("inet", "tulle-agent") == dump     # drift repaired
