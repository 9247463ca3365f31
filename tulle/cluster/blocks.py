"""Block IPAM in the store (Calico's model): pools cut into blocks with node affinity.

  <prefix>/blocks/<a.b.c.d>-<len>  {"Affinity": "<node>" | null,
                                    "Allocations": {"<ip>": {"Handle": "<cid>/<ifname>",
                                                             "Node": "<node>"}}}

A node allocates from its own blocks; when they are full it claims a free block of a
pool (create-if-absent, so two nodes never claim the same block); when the pools have
no free block left it borrows an address from another node's block (the borrower then
announces that /32). Every change is a compare-and-swap on one block key, retried on
conflict, so concurrent allocations from many nodes never share an address. A block
left empty is released (deleted), which withdraws its route.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, field
from typing import Iterator

from tulle.errors import ConfigError, ExhaustedError, TryAgain
from tulle.store.base import KV, Store

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address

DEFAULT_BLOCK_SIZE = 26
MAX_RETRIES = 50


@dataclass
class Block:
    cidr: IPv4Net
    affinity: str | None
    allocations: dict[IPv4Addr, dict[str, str]] = field(default_factory=dict)
    mod_revision: int = 0

    def encode(self) -> bytes:
        return json.dumps({
            "Affinity": self.affinity,
            "Allocations": {str(ip): a for ip, a in sorted(self.allocations.items())},
        }, sort_keys=True).encode()

    def free_addresses(self, pool: IPv4Net) -> Iterator[IPv4Addr]:
        """Unallocated addresses, skipping the pool's network and broadcast addresses."""
        for ip in self.cidr:
            if ip in self.allocations or ip in (pool.network_address, pool.broadcast_address):
                continue
            yield ip


def block_key(prefix: str, cidr: IPv4Net) -> str:
    return f"{prefix.rstrip('/')}/blocks/{cidr.network_address}-{cidr.prefixlen}"


def blocks_prefix(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/blocks/"


def decode(kv: KV) -> Block:
    tail = kv.key.rsplit("/", 1)[-1]
    addr, _, plen = tail.partition("-")
    body = json.loads(kv.value)
    return Block(
        cidr=IPv4Net(f"{addr}/{plen}"),
        affinity=body.get("Affinity"),
        allocations={IPv4Addr(ip): dict(a) for ip, a in (body.get("Allocations") or {}).items()},
        mod_revision=kv.mod_revision,
    )


def local_prefixes(blocks: list[Block], node: str) -> list[IPv4Net]:
    """Where `node`'s pods live: its affine blocks, and a /32 for each address it
    borrowed from another node's block (pure)."""
    out = {b.cidr for b in blocks if b.affinity == node}
    for b in blocks:
        if b.affinity != node:
            out.update(IPv4Net(f"{ip}/32") for ip, a in b.allocations.items() if a.get("Node") == node)
    return sorted(out)


def decode_all(kvs: list[KV]) -> tuple[list[Block], dict[str, str]]:
    """The blocks of a listing, and the keys that would not decode (key → why): readers
    that only look (routes, status, masquerade) skip those; the allocator, which writes,
    stays strict."""
    good, bad = [], {}
    for kv in kvs:
        try:
            good.append(decode(kv))
        except (ValueError, KeyError, TypeError) as exc:
            bad[kv.key] = str(exc)
    return good, bad


def decode_kvs(kvs: list[KV]) -> list[Block]:
    """The blocks of a listing that decode (see decode_all)."""
    return decode_all(kvs)[0]


def read_blocks(store: Store, prefix: str) -> tuple[list[Block], dict[str, str]]:
    """Every block under `prefix` read from the store (see decode_all)."""
    kvs, _ = store.list(blocks_prefix(prefix))
    return decode_all(kvs)


def validate_block_size(pool: IPv4Net, block_size: int) -> None:
    if not pool.prefixlen <= block_size <= 32:
        raise ConfigError(f"block size /{block_size} does not fit pool {pool} (want /{pool.prefixlen}../32)")


def handle_of(container_id: str, ifname: str) -> str:
    return f"{container_id}/{ifname}"


class BlockAllocator:
    """Allocate and release pod addresses for one node."""

    def __init__(self, store: Store, prefix: str, node: str, pools: list[IPv4Net],
                 block_size: int = DEFAULT_BLOCK_SIZE, rng: random.Random | None = None) -> None:
        for pool in pools:
            validate_block_size(pool, block_size)
        self.store = store
        self.prefix = prefix
        self.node = node
        self.pools = pools
        self.block_size = block_size
        self.rng = rng or random.Random()

    # --- reading ----------------------------------------------------------

    def blocks(self) -> list[Block]:
        kvs, _ = self.store.list(blocks_prefix(self.prefix))
        return [decode(kv) for kv in kvs]

    def own_blocks(self) -> list[IPv4Net]:
        return sorted(b.cidr for b in self.blocks() if b.affinity == self.node)

    def _pool_of(self, ip: IPv4Addr) -> IPv4Net | None:
        return next((p for p in self.pools if ip in p), None)

    # --- allocation -------------------------------------------------------

    def allocate(self, container_id: str, ifname: str) -> tuple[IPv4Addr, IPv4Net]:
        """An address for (container, ifname) and the block it came from."""
        handle = handle_of(container_id, ifname)
        for _ in range(MAX_RETRIES):
            blocks = self.blocks()
            for existing in blocks:  # idempotent ADD retry: same handle keeps its address
                for ip, alloc in existing.allocations.items():
                    if alloc.get("Handle") == handle and alloc.get("Node") == self.node:
                        return ip, existing.cidr
            got = self._from_blocks([b for b in blocks if b.affinity == self.node], handle)
            if got is None:
                got = self._claim_block(blocks, handle)
            if got is None:
                got = self._from_blocks([b for b in blocks if b.affinity != self.node], handle)
            if got is None:
                pools = ", ".join(map(str, self.pools))
                raise ExhaustedError(f"no free address left in the IP pools ({pools})")
            if got is not _CONFLICT:
                return got  # type: ignore[return-value]
        raise TryAgain("IPAM: too many concurrent changes to the blocks; try again")

    def _write(self, block: Block, ip: IPv4Addr, handle: str) -> tuple[IPv4Addr, IPv4Net] | object:
        block.allocations[ip] = {"Handle": handle, "Node": self.node}
        key = block_key(self.prefix, block.cidr)
        if block.mod_revision:
            kv = self.store.compare_and_swap(key, block.encode(), block.mod_revision)
        else:
            kv = self.store.create(key, block.encode())
        return (ip, block.cidr) if kv is not None else _CONFLICT

    def _from_blocks(self, blocks: list[Block], handle: str):
        for block in sorted(blocks, key=lambda b: b.cidr):
            pool = self._pool_of(block.cidr.network_address)
            if pool is None:
                continue
            ip = next(block.free_addresses(pool), None)
            if ip is not None:
                return self._write(block, ip, handle)
        return None

    def _claim_block(self, blocks: list[Block], handle: str):
        taken = {b.cidr for b in blocks}
        for pool in self.pools:
            free = [c for c in pool.subnets(new_prefix=self.block_size) if c not in taken]
            if not free:
                continue
            cidr = self.rng.choice(free[:100])
            block = Block(cidr=cidr, affinity=self.node)
            ip = next(block.free_addresses(pool), None)
            if ip is None:
                continue
            return self._write(block, ip, handle)
        return None

    # --- release ----------------------------------------------------------

    def release(self, container_id: str, ifname: str) -> list[IPv4Addr]:
        """Free every address of (container, ifname) on this node; empty blocks go."""
        return self._release_where(lambda a: a.get("Handle") == handle_of(container_id, ifname)
                                   and a.get("Node") == self.node)

    def gc(self, keep: set[tuple[str, str]]) -> list[IPv4Addr]:
        """Free this node's addresses whose attachment is not in `keep`."""
        handles = {handle_of(c, i) for c, i in keep}
        return self._release_where(lambda a: a.get("Node") == self.node and a.get("Handle") not in handles)

    def _release_where(self, match) -> list[IPv4Addr]:
        freed: list[IPv4Addr] = []
        for _ in range(MAX_RETRIES):
            conflict = False
            for block in self.blocks():
                gone = [ip for ip, a in block.allocations.items() if match(a)]
                if not gone:
                    continue
                for ip in gone:
                    del block.allocations[ip]
                key = block_key(self.prefix, block.cidr)
                if block.allocations:
                    ok = self.store.compare_and_swap(key, block.encode(), block.mod_revision) is not None
                else:
                    ok = self.store.delete(key, block.mod_revision)
                if ok:
                    freed += gone
                else:
                    conflict = True
            if not conflict:
                return freed
        raise TryAgain("IPAM: too many concurrent changes to the blocks; try again")

    def lookup(self, container_id: str, ifname: str) -> list[IPv4Addr]:
        handle = handle_of(container_id, ifname)
        return [ip for b in self.blocks() for ip, a in b.allocations.items()
                if a.get("Handle") == handle and a.get("Node") == self.node]


_CONFLICT = object()
