"""The kernel layer against the real kernel, inside private namespaces."""

from __future__ import annotations

import errno
import ipaddress
import threading

import pytest

from tests.cnirun import in_ns, ip_json
from tulle.errors import ExistsError, KernelError, NotFoundError
from tulle.kernel import addrs, links, netns, nft, routes, sysctl

pytestmark = pytest.mark.netns


def test_run_in_isolates_thread_and_restores_nothing(host_ns):
    before = {l.name for l in links.all_links()}
    netns.run_in(host_ns, links.add_bridge, "br-test")
    assert {l.name for l in links.all_links()} == before  # caller's netns untouched
    assert netns.run_in(host_ns, links.get, "br-test").kind == "bridge"


def test_run_in_propagates_errors(host_ns):
    with pytest.raises(NotFoundError):
        netns.run_in(host_ns, links.require, "nope0")
    with pytest.raises(NotFoundError):
        netns.run_in("/run/netns/tulle-does-not-exist", links.all_links)


def test_is_netns(host_ns, tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")
    assert netns.is_netns(host_ns)
    assert not netns.is_netns(str(f))
    assert not netns.is_netns("/run/netns/tulle-missing")


def test_veth_across_namespaces_with_addresses_and_routes(host_ns, pod_ns):
    def host_side():
        links.add_veth("vt0", "eth0", peer_netns=pod_ns, mtu=1400)
        links.set_up("vt0")
        addrs.add("vt0", ipaddress.ip_interface("10.99.0.1/24"))
        with pytest.raises(ExistsError):
            links.add_veth("vt0", "x", peer_netns=pod_ns)

    def pod_side():
        links.set_up("eth0")
        addrs.add("eth0", ipaddress.ip_interface("10.99.0.2/24"))
        routes.add(routes.Route(dst=ipaddress.ip_network("0.0.0.0/0"), gw=ipaddress.ip_address("10.99.0.1")))
        return addrs.list_on("eth0"), routes.list_routes(4)

    netns.run_in(host_ns, host_side)
    got_addrs, got_routes = netns.run_in(pod_ns, pod_side)
    assert got_addrs == [ipaddress.ip_interface("10.99.0.2/24")]
    default = [r for r in got_routes if r.dst.prefixlen == 0]
    assert default and str(default[0].gw) == "10.99.0.1" and default[0].dev == "eth0"
    assert ip_json(pod_ns, "link", "show", "eth0")[0]["mtu"] == 1400
    in_ns(pod_ns, "ping", "-c1", "-W2", "10.99.0.1")
    # delete is idempotent
    assert netns.run_in(host_ns, links.delete, "vt0") is True
    assert netns.run_in(host_ns, links.delete, "vt0") is False


def test_sysctl_is_per_namespace(host_ns):
    root_value = sysctl.get("net.ipv4.ip_forward")
    netns.run_in(host_ns, sysctl.set, "net.ipv4.ip_forward", 1 - int(root_value))
    assert netns.run_in(host_ns, sysctl.get, "net.ipv4.ip_forward") == str(1 - int(root_value))
    assert sysctl.get("net.ipv4.ip_forward") == root_value


@pytest.mark.parametrize("key", ["kernel.hostname", "net/../kernel/hostname", "vm.swappiness"])
def test_sysctl_refuses_non_network_keys(key):
    from tulle.errors import ConfigError

    with pytest.raises(ConfigError):
        sysctl.set(key, 1)


def test_nft_transaction_is_atomic_and_in_the_namespace(host_ns):
    def work():
        tx = nft.Transaction("inet", "tulle-t").add(nft.Table("inet", "tulle-t"))
        tx.add(nft.Chain("post", type="nat", hook="postrouting", priority="srcnat"))
        tx.add(nft.Rule("post", [nft.match(nft.ip_field(4, "saddr"), nft.prefix("10.1.0.5/32")),
                                 nft.masquerade()], comment="tag:1"))
        nft.run(tx)
        bad = nft.Transaction("inet", "tulle-t").add(nft.Chain("other"))
        bad.add(nft.Rule("post", [nft.jump("missing-chain")]))
        with pytest.raises(KernelError) as failed:
            nft.run(bad)
        assert failed.value.errno == errno.ENOENT
        return nft.list_table("inet", "tulle-t")

    objs = netns.run_in(host_ns, work)
    assert nft.chains(objs) == ["post"]  # the failed batch added nothing, not even "other"
    assert [r.comment for r in nft.rules(objs)] == ["tag:1"]
    assert ("inet", "tulle-t") not in nft.list_tables()  # root netns untouched


def test_threads_each_get_their_own_socket(make_netns):
    a, b = make_netns("a"), make_netns("b")
    results = {}

    def worker(path):
        results[path] = netns.run_in(path, lambda: (links.add_bridge("brx"), links.get("brx").index)[1])

    threads = [threading.Thread(target=worker, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {a, b}


def test_vxlan_neighbours_and_fdb(host_ns):
    from tulle.kernel import neigh

    remote = ipaddress.ip_address("198.51.100.12")
    vtep_ip = ipaddress.ip_address("10.244.2.0")

    def work():
        links.add_veth("und0", "und1")
        addrs.add("und0", ipaddress.ip_interface("198.51.100.11/24"))
        links.set_up("und0")
        links.add_vxlan("vx1", vni=1, port=8472, local="198.51.100.11", dev="und0", mtu=1450)
        links.set_up("vx1")
        neigh.replace("vx1", vtep_ip, "02:00:00:00:02:00")
        neigh.replace("vx1", vtep_ip, "02:00:00:00:02:00")  # idempotent
        neigh.fdb_append("vx1", "02:00:00:00:02:00", remote)
        got = (neigh.list_on("vx1"), [e for e in neigh.fdb_list("vx1") if e.dst is not None])
        assert neigh.delete("vx1", vtep_ip) and not neigh.delete("vx1", vtep_ip)
        assert neigh.fdb_delete("vx1", "02:00:00:00:02:00", remote)
        return got, links.get("vx1")

    (neighs, fdb), vx = netns.run_in(host_ns, work)
    assert [(n.ip, n.mac, n.permanent) for n in neighs] == [(vtep_ip, "02:00:00:00:02:00", True)]
    assert [(e.mac, e.dst) for e in fdb] == [("02:00:00:00:02:00", remote)]
    assert vx.kind == "vxlan" and vx.mtu == 1450


def test_tun_and_ifb(host_ns):
    def work():
        links.add_tun("tun-t0", mtu=1472)
        links.add_ifb("ifb-t0")
        return links.get("tun-t0"), links.get("ifb-t0")

    tun, ifb = netns.run_in(host_ns, work)
    assert tun.kind == "tun" and tun.mtu == 1472
    assert ifb.kind == "ifb"
