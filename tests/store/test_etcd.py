"""etcd-only behaviour: unreachable servers, several endpoints, the netns option."""

from __future__ import annotations

import socket

import pytest

from tulle.kernel import links, netns
from tulle.store import StoreUnavailable, open_store
from tulle.store.etcd import EtcdStore

pytestmark = pytest.mark.netns


def test_server_version(etcd_server):
    assert etcd_server.version.startswith("3.")


@pytest.mark.parametrize("lo_up", [True, False], ids=["refused", "unreachable"])
def test_nobody_listening(make_netns, lo_up):
    empty = make_netns("noetcd")
    if lo_up:
        netns.run_in(empty, links.set_up, "lo")
    with pytest.raises(StoreUnavailable) as info:
        open_store("etcd://127.0.0.1:2379", netns=empty)
    assert "etcd://127.0.0.1:2379" in str(info.value)


def test_failover_to_a_live_endpoint(etcd_server):
    store = EtcdStore([("127.0.0.1", 1), etcd_server.endpoint], netns=etcd_server.netns_path)
    try:
        kv = store.put("/tulle-test/failover", b"ok")
        assert store.get("/tulle-test/failover") == kv
        assert store.delete("/tulle-test/failover")
    finally:
        store.close()


def test_netns_in_url(etcd_server):
    name = etcd_server.netns_path.rsplit("/", 1)[-1]
    store = open_store(f"{etcd_server.url}?netns={name}")
    try:
        assert store.list("/tulle-test/none/")[0] == []
    finally:
        store.close()


def test_reconnects_after_server_closed_idle_connection(etcd_server):
    store = etcd_server.store()
    try:
        assert store.get("/tulle-test/idle") is None
        store._conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had closed it
        assert store.get("/tulle-test/idle") is None
    finally:
        store.close()
