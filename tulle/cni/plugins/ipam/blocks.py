"""tulle-blocks: IPAM from the store's blocks (Calico's calico-ipam role).

Config (`ipam` object):
  store      store URL (sqlite:///path or etcd://host:port), required
  node       the node this pod runs on (block affinity), required
  prefix     key prefix (default /coreos.com/network)
  pools      list of CIDRs; default: the network config's Backend.Pools, else its "Network"
  blockSize  prefix length of a block (default 26; or the config's Backend.BlockSize)

Addresses are returned as /32s (routed mode routes each one). DEL releases by
(containerID, ifname), GC releases this node's addresses whose attachment is
gone, and a block left empty is given back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tulle.cluster import netconfig
from tulle.cluster.backendconf import BgpConfig
from tulle.cluster.blocks import DEFAULT_BLOCK_SIZE, BlockAllocator
from tulle.cluster.lease import DEFAULT_PREFIX, config_key
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import IPConfig, Result, Route
from tulle.errors import CheckFailed, ConfigError


@dataclass
class BlocksConf:
    store: str
    node: str
    prefix: str
    pools: list[ipaddress.IPv4Network]
    block_size: int
    routes: list[Route]


def load_conf(call: Call, store) -> BlocksConf:
    f = call.fields.obj("ipam")
    prefix = f.str("prefix", DEFAULT_PREFIX)
    pools = []
    for i, raw in enumerate(f.list("pools")):
        try:
            if not isinstance(raw, str):  # IPv4Network(5) would be 0.0.0.5/32
                raise TypeError(raw)
            pools.append(ipaddress.IPv4Network(raw))
        except (ValueError, TypeError):
            raise ConfigError(f"ipam.pools[{i}]: invalid IPv4 CIDR {raw!r}") from None
    block_size = f.int("blockSize", 0, lo=0, hi=32)
    if not pools or not block_size:
        kv = store.get(config_key(prefix))
        if kv is None and not pools:
            raise ConfigError(f"ipam.pools not given and the store has no {config_key(prefix)}")
        if kv is not None:
            cfg = netconfig.parse(kv.value)      # validated like the agents read it
            bgp = cfg.backend_config if isinstance(cfg.backend_config, BgpConfig) else BgpConfig()
            pools = pools or list(bgp.pools or [cfg.network])
            block_size = block_size or bgp.block_size
        block_size = block_size or DEFAULT_BLOCK_SIZE
    return BlocksConf(store=f.str("store", required=True), node=f.str("node", required=True), prefix=prefix,
                      pools=pools, block_size=block_size,
                      routes=[Route.from_dict(r, "ipam.routes") for r in f.list("routes")])


def _open(call: Call):
    from tulle.store import open_store

    url = call.fields.obj("ipam").str("store", required=True)
    call.fields.obj("ipam").str("node", required=True)
    return open_store(url)


def _allocator(call: Call, store) -> tuple[BlockAllocator, BlocksConf]:
    conf = load_conf(call, store)
    return BlockAllocator(store, conf.prefix, conf.node, conf.pools, conf.block_size), conf


def cmd_add(call: Call) -> Result:
    store = _open(call)
    try:
        alloc, conf = _allocator(call, store)
        ip, _ = alloc.allocate(call.env.container_id, call.env.ifname)
    finally:
        store.close()
    return Result(cni_version=call.version, routes=conf.routes,
                  ips=[IPConfig(address=ipaddress.IPv4Interface(f"{ip}/32"))])


def cmd_del(call: Call) -> None:
    store = _open(call)
    try:
        alloc, _ = _allocator(call, store)
        alloc.release(call.env.container_id, call.env.ifname)
    finally:
        store.close()


def cmd_check(call: Call) -> None:
    store = _open(call)
    try:
        alloc, _ = _allocator(call, store)
        if not alloc.lookup(call.env.container_id, call.env.ifname):
            raise CheckFailed(f"tulle-blocks: no address is allocated to {call.env.container_id}/{call.env.ifname}")
    finally:
        store.close()


def cmd_gc(call: Call) -> None:
    keep = call.valid_attachments()
    store = _open(call)
    try:
        alloc, _ = _allocator(call, store)
        alloc.gc(keep)
    finally:
        store.close()


PLUGIN = Plugin(name="tulle-blocks", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)
