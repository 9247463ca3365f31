from __future__ import annotations

import pytest

from tests.cnirun import in_ns
from tests.netns.cni.pods import EXT_CLIENT, EXT_HOST, Pod, Server, add_client, make_pod, talk
from tulle.cni import hostports
from tulle.kernel import netns, nft

pytestmark = pytest.mark.netns

BASE = {"cniVersion": "1.0.0", "name": "pmnet", "type": "portmap", "capabilities": {"portMappings": True}}


def conf(prev, mappings, **fields) -> dict:
    c = {**BASE, "runtimeConfig": {"portMappings": mappings}, **fields}
    if prev is not None:
        c["prevResult"] = prev
    return c


def table(ns: str):
    return netns.run_in(ns, nft.list_table, hostports.FAMILY, hostports.TABLE)


def attachment_objects(ns: str) -> tuple[list[str], list]:
    listing = table(ns)
    chains = [c for c in nft.chains(listing) if c.startswith("pm-")]
    owned = [r for r in nft.rules(listing) if r.comment]
    return chains, owned


def reach(pod: Pod, client: str, port: int, proto: str = "tcp") -> dict[str, str]:
    """Connect to the host port from every place that matters; returns replies."""
    return {
        "outside": talk(client, str(EXT_HOST.ip), port, proto),
        "host": talk(pod.host_ns, pod.host_ip, port, proto),
        "localhost": talk(pod.host_ns, "127.0.0.1", port, proto),
        "hairpin": talk(pod.pod_ns, pod.host_ip, port, proto),
    }


def test_tcp_every_path_then_del(cni, lab):
    pod, client = lab
    c = conf(pod.prev_result, [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    res = cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.ok, res.out
    assert res.out == pod.prev_result
    assert in_ns(pod.host_ns, "sysctl", "-n", f"net.ipv4.conf.{pod.host_veth}.route_localnet").strip() == "1"
    with Server(pod.pod_ns, 80):
        got = reach(pod, client, 8080)
        assert got == {
            "outside": f"pong:ping:{EXT_CLIENT.ip}",    # source preserved from outside
            "host": f"pong:ping:{pod.host_ip}",
            "localhost": f"pong:ping:{pod.host_ip}",    # masqueraded
            "hairpin": f"pong:ping:{pod.host_ip}",      # masqueraded
        }
        assert cni("portmap", "CHECK", {**c, "prevResult": res.out}, netns=pod.pod_ns, host_ns=pod.host_ns).ok
        assert cni("portmap", "DEL", {**c, "prevResult": res.out}, netns=pod.pod_ns, host_ns=pod.host_ns).ok
        assert all(v.startswith("ERR") for v in reach(pod, client, 8080).values())
    assert attachment_objects(pod.host_ns) == ([], [])
    assert cni("portmap", "DEL", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok


def test_udp_and_host_ip(cni, lab):
    pod, client = lab
    c = conf(pod.prev_result, [
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
        {"hostPort": 9090, "containerPort": 90, "protocol": "tcp", "hostIP": str(EXT_HOST.ip)},
    ])
    assert cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    with Server(pod.pod_ns, 53, "udp"), Server(pod.pod_ns, 90):
        assert talk(client, str(EXT_HOST.ip), 5353, "udp") == f"pong:ping:{EXT_CLIENT.ip}"
        assert talk(pod.pod_ns, pod.host_ip, 5353, "udp") == f"pong:ping:{pod.host_ip}"
        assert talk(client, str(EXT_HOST.ip), 9090) == f"pong:ping:{EXT_CLIENT.ip}"
        assert talk(pod.host_ns, pod.host_ip, 9090).startswith("ERR")  # not the mapped hostIP


def test_empty_mappings_pass_through(cni, lab):
    pod, _ = lab
    for c in (conf(pod.prev_result, []), {**BASE, "prevResult": pod.prev_result}):
        res = cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns)
        assert res.ok and res.out == pod.prev_result
    assert table(pod.host_ns) is None


def test_snat_false_has_no_masquerade(cni, lab):
    pod, client = lab
    c = conf(pod.prev_result, [{"hostPort": 8080, "containerPort": 80}], snat=False)
    assert cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    _, owned = attachment_objects(pod.host_ns)
    assert [r.chain for r in owned] == ["hostports"]
    with Server(pod.pod_ns, 80):
        assert talk(client, str(EXT_HOST.ip), 8080) == f"pong:ping:{EXT_CLIENT.ip}"
    assert cni("portmap", "CHECK", {**c, "prevResult": pod.prev_result}, netns=pod.pod_ns, host_ns=pod.host_ns).ok


@pytest.mark.parametrize("mappings,fields", [
    ([{"hostPort": 0, "containerPort": 80}], {}),
    ([{"hostPort": 70000, "containerPort": 80}], {}),
    ([{"hostPort": 80}], {}),
    ([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}], {}),
    ([{"hostPort": 80, "containerPort": 80, "hostIP": "bogus"}], {}),
    ([{"hostPort": 80, "containerPort": 80, "hostIP": 5}], {}),         # was a DNAT to 0.0.0.5
    ([{"hostPort": 80, "containerPort": 80, "hostIP": 3325256705}], {}),
    (["80:80"], {}),
    ({"hostPort": 80}, {}),
    ([{"hostPort": 80, "containerPort": 80}], {"markMasqBit": 40}),
    ([{"hostPort": 80, "containerPort": 80}], {"snat": "yes"}),
])
def test_bad_config_is_code_7(cni, lab, mappings, fields):
    pod, _ = lab
    res = cni("portmap", "ADD", conf(pod.prev_result, mappings, **fields), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 7, res.out
    assert table(pod.host_ns) is None


def test_prev_result_of_an_unknown_version_is_refused(cni, lab):
    pod, _ = lab
    prev = {**pod.prev_result, "cniVersion": "7.0.0"}
    res = cni("portmap", "ADD", conf(prev, [{"hostPort": 80, "containerPort": 80}]), netns=pod.pod_ns,
              host_ns=pod.host_ns)
    assert res.error_code == 1 and "prevResult.cniVersion" in res.out["msg"], res.out
    assert table(pod.host_ns) is None


def test_external_set_mark_chain_is_unsupported(cni, lab):
    pod, _ = lab
    res = cni("portmap", "ADD", conf(pod.prev_result, [{"hostPort": 80, "containerPort": 80}],
                                     externalSetMarkChain="KUBE-MARK-MASQ"), netns=pod.pod_ns, host_ns=pod.host_ns)
    assert res.error_code == 2


def test_missing_prev_result_is_code_7(cni, lab):
    pod, _ = lab
    res = cni("portmap", "ADD", conf(None, [{"hostPort": 80, "containerPort": 80}]), netns=pod.pod_ns,
              host_ns=pod.host_ns)
    assert res.error_code == 7
    assert table(pod.host_ns) is None


def test_del_without_netns_or_prev_result(cni, lab):
    pod, _ = lab
    c = conf(pod.prev_result, [{"hostPort": 8080, "containerPort": 80}])
    assert cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    assert attachment_objects(pod.host_ns) != ([], [])
    assert cni("portmap", "DEL", {**BASE}, netns="/run/netns/tulle-gone", host_ns=pod.host_ns).ok
    assert attachment_objects(pod.host_ns) == ([], [])


def test_readd_replaces(cni, lab):
    pod, client = lab
    assert cni("portmap", "ADD", conf(pod.prev_result, [{"hostPort": 8080, "containerPort": 80}]),
               netns=pod.pod_ns, host_ns=pod.host_ns).ok
    c = conf(pod.prev_result, [{"hostPort": 8081, "containerPort": 80}])
    assert cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    chains, owned = attachment_objects(pod.host_ns)
    assert len(chains) == 1 and len(owned) == 2
    with Server(pod.pod_ns, 80):
        assert talk(client, str(EXT_HOST.ip), 8081).startswith("pong")
        assert talk(client, str(EXT_HOST.ip), 8080).startswith("ERR")


def test_check_detects_drift(cni, lab):
    pod, _ = lab
    c = conf(pod.prev_result, [{"hostPort": 8080, "containerPort": 80}])
    assert cni("portmap", "ADD", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    assert cni("portmap", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).ok
    other = conf(pod.prev_result, [{"hostPort": 8081, "containerPort": 80}])
    assert cni("portmap", "CHECK", other, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    chains, owned = attachment_objects(pod.host_ns)
    jump = next(r for r in owned if r.chain == "hostports")
    in_ns(pod.host_ns, "nft", "delete", "rule", "inet", hostports.TABLE, "hostports", "handle", str(jump.handle))
    assert cni("portmap", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103
    in_ns(pod.host_ns, "nft", "delete", "table", "inet", hostports.TABLE)
    assert cni("portmap", "CHECK", c, netns=pod.pod_ns, host_ns=pod.host_ns).error_code == 103


def test_gc_collects_stale_attachments(cni, lab):
    pod, _ = lab
    m = [{"hostPort": 8080, "containerPort": 80}]
    for cid in ("keep", "stale"):
        assert cni("portmap", "ADD", conf(pod.prev_result, m), netns=pod.pod_ns, container_id=cid,
                   host_ns=pod.host_ns).ok
    other = {**conf(pod.prev_result, m), "name": "othernet"}
    assert cni("portmap", "ADD", other, netns=pod.pod_ns, container_id="stale", host_ns=pod.host_ns).ok
    gc = {**BASE, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("portmap", "GC", gc, container_id="", ifname="", host_ns=pod.host_ns).ok
    chains, owned = attachment_objects(pod.host_ns)
    assert len(chains) == 2
    assert sorted(r.comment.split(":")[1] for r in owned if r.chain == "hostports") == ["keep", "stale"]
    assert cni("portmap", "CHECK", conf(pod.prev_result, m), netns=pod.pod_ns, container_id="keep",
               host_ns=pod.host_ns).ok
    assert cni("portmap", "CHECK", conf(pod.prev_result, m), netns=pod.pod_ns, container_id="stale",
               host_ns=pod.host_ns).error_code == 103


def test_same_behaviour_as_reference(cni, ref_cni, make_netns):
    outcomes = {}
    for who, runner in (("tulle", cni), ("ref", ref_cni)):
        host, pod_ns, client = make_netns("h"), make_netns("p"), make_netns("c")
        pod = make_pod(host, pod_ns)
        add_client(host, client)
        c = conf(pod.prev_result, [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
        res = runner("portmap", "ADD", c, netns=pod_ns, host_ns=host)
        assert res.ok, (who, res.out)
        with Server(pod_ns, 80):
            outcomes[who] = (res.out == pod.prev_result, reach(pod, client, 8080))
        assert runner("portmap", "DEL", {**c, "prevResult": res.out}, netns=pod_ns, host_ns=host).ok
    assert outcomes["tulle"] == outcomes["ref"]
