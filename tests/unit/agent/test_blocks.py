"""Block IPAM against the embedded store (pure logic, no root)."""

from __future__ import annotations

import ipaddress
import random
import threading

import pytest

from tulle.cluster.blocks import BlockAllocator, blocks_prefix, decode, local_prefixes, read_blocks
from tulle.errors import ConfigError, ExhaustedError
from tulle.store import open_store

POOL = ipaddress.ip_network("10.244.0.0/24")


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite://{tmp_path}/store.db")
    yield s
    s.close()


def alloc(store, node, size=26, pools=(POOL,), seed=1):
    return BlockAllocator(store, "/t", node, list(pools), block_size=size, rng=random.Random(seed))


def test_node_claims_a_block_and_fills_it_first(store):
    a = alloc(store, "n1")
    ips = [a.allocate(f"c{i}", "eth0") for i in range(3)]
    blocks = {b for _, b in ips}
    assert len(blocks) == 1 and a.own_blocks() == sorted(blocks)
    assert len({ip for ip, _ in ips}) == 3


def test_same_handle_is_idempotent(store):
    a = alloc(store, "n1")
    assert a.allocate("c1", "eth0") == a.allocate("c1", "eth0")


def test_two_nodes_get_different_blocks(store):
    b1 = alloc(store, "n1").allocate("c1", "eth0")[1]
    b2 = alloc(store, "n2", seed=1).allocate("c2", "eth0")[1]
    assert b1 != b2


def test_full_block_claims_another_then_borrows(store):
    # /24 pool in /30 blocks = 64 blocks; make it tiny: a /28 pool in /30 blocks = 4 blocks.
    pool = ipaddress.ip_network("10.244.0.0/28")
    n1, n2 = alloc(store, "n1", size=30, pools=(pool,)), alloc(store, "n2", size=30, pools=(pool,))
    first = n2.allocate("x", "eth0")
    got = [n1.allocate(f"c{i}", "eth0") for i in range(11)]  # pool has 14 usable, n2 holds 1
    assert len({ip for ip, _ in got}) == 11
    borrowed = [ip for ip, b in got if b == first[1]]
    assert borrowed, "n1 should have borrowed from n2's block once the pool had no free block"
    blocks = [decode(kv) for kv in store.list(blocks_prefix("/t"))[0]]
    n1_local = local_prefixes(blocks, "n1")   # where masquerade keeps outside sources: blocks + borrowed /32s
    assert set(n1_local) == set(n1.own_blocks()) | {ipaddress.ip_network(f"{ip}/32") for ip in borrowed}
    assert local_prefixes(blocks, "n2") == [first[1]]
    with pytest.raises(ExhaustedError):
        for i in range(5):
            n1.allocate(f"more{i}", "eth0")


def test_release_frees_and_drops_empty_blocks(store):
    a = alloc(store, "n1")
    ip, block = a.allocate("c1", "eth0")
    assert a.lookup("c1", "eth0") == [ip]
    assert a.release("c1", "eth0") == [ip]
    assert a.own_blocks() == []
    assert a.release("c1", "eth0") == []  # idempotent


def test_gc_keeps_valid_attachments_of_this_node_only(store):
    n1, n2 = alloc(store, "n1"), alloc(store, "n2", seed=2)
    keep_ip, _ = n1.allocate("keep", "eth0")
    n1.allocate("gone", "eth0")
    other, _ = n2.allocate("other", "eth0")
    n1.gc({("keep", "eth0")})
    assert n1.lookup("keep", "eth0") == [keep_ip] and n1.lookup("gone", "eth0") == []
    assert n2.lookup("other", "eth0") == [other]


def test_concurrent_nodes_never_share_an_address(tmp_path):
    url = f"sqlite://{tmp_path}/c.db"
    results: list = []
    errors: list = []

    def worker(node: str) -> None:
        s = open_store(url)
        try:
            a = alloc(s, node, size=28, seed=hash(node) % 100)
            for i in range(15):
                results.append(a.allocate(f"{node}-{i}", "eth0")[0])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(f"n{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 60 and len(set(results)) == 60


def test_bad_block_size():
    with pytest.raises(ConfigError):
        BlockAllocator(None, "/t", "n1", [POOL], block_size=20)  # type: ignore[arg-type]


def test_read_blocks_sets_malformed_keys_aside(store):
    """Routes and status read past a bad block (reporting it); the allocator stays strict."""
    ip, block = alloc(store, "n1").allocate("c1", "eth0")
    other = next(n for n in POOL.subnets(new_prefix=26) if n != block)
    key = f"{blocks_prefix('/t')}{other.network_address}-26"
    store.put(key, b"{not json")
    good, bad = read_blocks(store, "/t")
    assert [b.cidr for b in good] == [block] and ip in good[0].allocations
    assert list(bad) == [key]
