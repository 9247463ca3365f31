"""`tulle lab up --backend bgp`: real agents running real BIRD in the node netns, pods wired by
tulle-routed + tulle-blocks; mesh, route reflectors, CrossSubnet and a top-of-rack BIRD."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.lab.conftest import needs_agent, new_lab_name
from tests.lab.test_lifecycle import traces
from tulle import procs
from tulle.cluster import netconfig
from tulle.agent.backends.bgp import crosssubnet
from tulle.cluster.blocks import blocks_prefix, decode
from tulle.cluster.lease import DEFAULT_PREFIX
from tulle.kernel import netns
from tulle.lab import agents, bgp, checks, cluster, pods, state, topology

pytestmark = [pytest.mark.netns, needs_agent,
              pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed")]

BIRD_PROTO = "bird"


def tulle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tulle.cli.main", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def kernel_routes(lab: str, node: str, proto: str) -> dict[str, str]:
    """dst → gateway (or type) of a node's routes with this protocol."""
    out = subprocess.run(["nsenter", f"--net={netns.path_of(f'tulle-{lab}-{node}')}", "ip", "-j", "route",
                          "show", "proto", proto], capture_output=True, text=True, timeout=10, check=True).stdout
    return {r["dst"]: r.get("gateway", r.get("type", "")) for r in json.loads(out or "[]")}


def block_of(ip: str, size: int = 26) -> str:
    return str(ipaddress.IPv4Network(f"{ip}/{size}", strict=False))


def assert_all_reach(lab: str) -> None:
    results = checks.all_pairs(state.load(lab))
    failed = [r for r in results if not r.ok]
    assert results and not failed, failed


def add_pods(lab: str, where: dict[str, str]) -> dict[str, str]:
    """pod → node; returns pod → IP."""
    return {pod: pods.add(lab, node, pod).ip for pod, node in where.items()}


# --- one 3-node mesh lab, used by the tests below in order ----------------------------------

@pytest.fixture(scope="module")
def mesh():
    name = new_lab_name()
    try:
        cluster.up(name, nodes_count=3, backend="bgp")
        yield name
    finally:
        cluster.down(name)


def test_new_pod_is_reachable_from_another_node_within_3s(mesh):
    pods.add(mesh, "n2", "a")
    b = pods.add(mesh, "n1", "b")            # n1's first pod: a block BGP must announce first
    start = time.monotonic()
    deadline = start + 3.0
    assert checks.until(deadline, lambda: checks.ping(mesh, "a", b.ip, timeout=0.5).returncode == 0), \
        f"pod b ({b.ip}) on n1 not reachable from n2 within 3 s"
    st = state.load(mesh)
    server = checks.EchoServer(pods.netns_path(st, "default/b"), "b", b.ip)
    try:
        assert checks.until(deadline, lambda: checks.tcp(pods.netns_path(st, "default/a"), "a", b.ip,
                                                          timeout=0.5))
    finally:
        server.close()


def test_mesh_every_pod_reaches_every_other(mesh):
    pods.add(mesh, "n3", "c")
    listed = json.loads(tulle("lab", "pods", "--lab", mesh, "--json").stdout)
    assert {p["name"]: p["node"] for p in listed} == {"a": "n2", "b": "n1", "c": "n3"}
    assert len({block_of(p["ip"]) for p in listed}) == 3     # a /26 block per node, from the store
    status = cluster.status(mesh)
    assert [n["bgp"] for n in status["nodes"]] == ["2/2 up"] * 3
    # the pods' blocks, not the leases (which hold no pods in bgp mode)
    assert {n["name"]: n["blocks"] for n in status["nodes"]} == {p["node"]: [block_of(p["ip"])] for p in listed}
    text = tulle("lab", "status", "--lab", mesh).stdout
    assert "pod blocks" in text and block_of(listed[0]["ip"]) in text
    assert_all_reach(mesh)
    out = tulle("lab", "check", "--lab", mesh, "--json")
    assert out.returncode == 0 and all(r["icmp"] and r["tcp"] for r in json.loads(out.stdout)), out.stderr
    # native routes learned by BIRD: n1 reaches c's block via n3 on the segment
    ips = {p["name"]: p["ip"] for p in listed}
    assert kernel_routes(mesh, "n1", BIRD_PROTO)[block_of(ips["c"])] == "198.51.100.13"


def test_lab_bgp_json_lists_established_sessions_and_learned_routes(mesh):
    out = tulle("lab", "bgp", "--lab", mesh, "--json")
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["mode"] == "node-to-node mesh" and view["asn"] == 64512 and "router" not in view
    ips = {p.node: p.ip for p in state.load(mesh).pods.values()}
    for n in view["nodes"]:
        others = {"198.51.100.11", "198.51.100.12", "198.51.100.13"} - {n["underlay_ip"]}
        assert {s["peer"] for s in n["sessions"]} == others
        assert all(s["established"] and s["info"].startswith("Established") for s in n["sessions"])
        learned = {r["prefix"] for r in n["routes"] if r["primary"]}
        assert learned == {block_of(ip) for node, ip in ips.items() if node != n["name"]}
        assert n["blocks"] == [block_of(ips[n["name"]])]
    text = tulle("lab", "bgp", "--lab", mesh)
    assert text.returncode == 0 and "Established" in text.stdout and "Mesh_198_51_100_12" in text.stdout


def test_node_that_fills_its_block_borrows_and_stays_reachable(mesh):
    # A tiny pool (two /30 blocks, 3 usable addresses each), written straight into the
    # config: tulle-blocks reads Pools/BlockSize from the store at each ADD.
    st = state.load(mesh)
    plan = st.plan()
    kv = cluster.open_lab_store(plan)
    try:
        netconfig.write_config(kv, DEFAULT_PREFIX, netconfig.build(
            str(plan.network), plan.subnet_len, "bgp", extra={"Pools": ["10.244.200.0/29"], "BlockSize": 30}))
        ips = add_pods(mesh, {"q2": "n2", "q1a": "n1", "q1b": "n1", "q1c": "n1", "q1d": "n1"})
        blocks = {str(b.cidr): b for b in (decode(x) for x in kv.list(blocks_prefix(DEFAULT_PREFIX))[0])}
    finally:
        kv.close()
    owner = blocks[block_of(ips["q1d"], 30)]
    assert owner.affinity == "n2" and block_of(ips["q1d"], 30) == block_of(ips["q2"], 30), (ips, blocks)
    assert blocks[block_of(ips["q1a"], 30)].affinity == "n1"
    # the borrowed /32 is announced by n1: n3 routes it to n1, past n2's block
    deadline = time.monotonic() + 10
    while kernel_routes(mesh, "n3", BIRD_PROTO).get(ips["q1d"]) != "198.51.100.11" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel_routes(mesh, "n3", BIRD_PROTO).get(ips["q1d"]) == "198.51.100.11"
    assert kernel_routes(mesh, "n3", BIRD_PROTO).get(block_of(ips["q2"], 30)) == "198.51.100.12"
    assert_all_reach(mesh)


# --- other topologies ------------------------------------------------------------------------

def test_six_nodes_with_two_route_reflectors(make_lab):
    st = make_lab(nodes_count=6, backend="bgp", route_reflectors=2)
    view = bgp.status(st.lab)
    sessions = {n["name"]: sorted(s["name"] for s in n["sessions"]) for n in view["nodes"]}
    assert len(sessions["n1"]) == 5 and len(sessions["n2"]) == 5
    assert sessions["n6"] == ["RR_198_51_100_11", "RR_198_51_100_12"]
    assert view["mode"] == "route reflectors n1, n2"
    add_pods(st.lab, {f"p{k}": f"n{k}" for k in range(1, 7)})
    assert_all_reach(st.lab)


def test_two_segments_cross_subnet(make_lab):
    st = make_lab(backend="bgp", segments=2)
    ips = add_pods(st.lab, {"p1": "n1", "p2": "n2", "p3": "n3"})   # n2 is on segment 1
    assert_all_reach(st.lab)
    assert kernel_routes(st.lab, "n1", BIRD_PROTO).get(block_of(ips["p3"])) == "198.51.100.13"   # native
    assert kernel_routes(st.lab, "n1", str(crosssubnet.PROTO)).get(block_of(ips["p2"])) == "203.0.113.12"


def test_two_segments_tor_bgp_routes_natively_and_down_leaves_nothing(lab_name):
    cluster.up(lab_name, backend="bgp", segments=2, tor_bgp=True)
    tor_pid = bgp.tor_bird(lab_name).pid()
    assert tor_pid and procs.alive(tor_pid)
    ips = add_pods(lab_name, {"p1": "n1", "p2": "n2", "p3": "n3"})
    assert_all_reach(lab_name)
    n1 = kernel_routes(lab_name, "n1", BIRD_PROTO)
    n2 = kernel_routes(lab_name, "n2", BIRD_PROTO)
    assert n1[block_of(ips["p2"])] == "198.51.100.1"     # other segment: via the router leg, proto bird
    assert n2[block_of(ips["p1"])] == "203.0.113.1" and n2[block_of(ips["p3"])] == "203.0.113.1"
    assert n1[block_of(ips["p3"])] == "198.51.100.13"    # same segment: straight to the node
    for node in ("n1", "n2", "n3"):
        assert kernel_routes(lab_name, node, str(crosssubnet.PROTO)) == {}   # no tulle-vxlan routes
    view = json.loads(tulle("lab", "bgp", "--lab", lab_name, "--json").stdout)
    assert {s["name"] for s in view["router"]["sessions"] if s["established"]} == {"n1", "n2", "n3"}
    assert "ToR" in {s["name"] for s in view["nodes"][1]["sessions"] if s["established"]}
    assert cluster.down(lab_name) is True
    assert traces(lab_name) == [] and not procs.alive(tor_pid)


# --- agent restarts ------------------------------------------------------------------------
# The restarted agent must not touch BIRD before it knows the peers, and graceful restart
# must carry the routes while BIRD itself is down (the agent stopped it, or it died with
# the agent). Each node's pod pings the next node's pod at 10/s; in the ToR lab n2 is on
# the other segment, so two of the three pairs cross the router and one stays on the mesh.

RESTART_LABS = {"mesh": dict(nodes_count=3, backend="bgp"),
                "tor": dict(nodes_count=3, backend="bgp", segments=2, tor_bgp=True)}
RESTARTS = ("SIGTERM", "SIGKILL", "SIGKILL+bird")   # the last: BIRD dies with its agent


def start_pinger(lab: str, pod: str, ip: str) -> subprocess.Popen:
    """ping at 10/s until SIGINT, one line per reply."""
    cmd = ["nsenter", f"--net={netns.path_of(topology.pod_netns(lab, pod))}",
           "ping", "-n", "-i", "0.1", "-W", "1", ip]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


IN_FLIGHT = 10      # requests after the last reply that may still be on their way at SIGINT


def lost_by(ping: subprocess.Popen) -> list[int]:
    """Stop a pinger; the sequence numbers of its echo requests that got no reply. Requests
    sent after the last reply were in flight when it stopped (a loaded machine delays the
    replies, not loses them), unless there are so many that the path was down at the end."""
    ping.send_signal(signal.SIGINT)
    try:
        out, _ = ping.communicate(timeout=10)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    m = re.search(r"(\d+) packets transmitted", out)
    seqs = {int(s) for s in re.findall(r"icmp_seq=(\d+) ttl=", out)}
    assert m and seqs, out
    sent, last = int(m.group(1)), max(seqs)
    lost = sorted(set(range(1, last + 1)) - seqs)
    if sent - last > IN_FLIGHT:
        lost += list(range(last + 1, sent + 1))
    return lost


def restart_agent(lab: str, node: str, how: str) -> None:
    """SIGTERM or SIGKILL the node's agent and start it again; SIGKILL+bird kills its BIRD too."""
    if how == "SIGKILL+bird":
        agents.kill(lab, node, state.load(lab).nodes[node])
        bird = bgp.node_bird(lab, node)
        pid = bird.pid()
        assert pid and procs.signal_pid(pid, bird.ctl, signal.SIGKILL)
        assert procs.wait_dead(pid, 5.0)
    cluster.agent_restart(lab, node, kill=how != "SIGTERM")


def bird_log_tail(lab: str, node: str, lines: int = 25) -> str:
    """The end of a node's bird.log (sessions, graceful restarts): what a loss is read against."""
    with open(state.path(lab, node, "bird.log")) as f:
        return f"{node}:\n" + "".join(f.readlines()[-lines:])


@pytest.mark.parametrize("topo", sorted(RESTART_LABS))
def test_agent_restarts_lose_no_packet(make_lab, topo):
    lab = make_lab(**RESTART_LABS[topo]).lab
    names = ["n1", "n2", "n3"]
    ips = add_pods(lab, {f"p{n}": n for n in names})
    pairs = [(f"p{a}", ips[f"p{b}"]) for a, b in zip(names, names[1:] + names[:1])]
    for pod, ip in pairs:
        assert checks.until(time.monotonic() + 5, lambda: checks.ping(lab, pod, ip, timeout=0.5).returncode == 0)
    lost: dict[str, list[list[int]]] = {}
    logs: list[str] = []
    for how in RESTARTS:
        for node in names:
            pings = [start_pinger(lab, pod, ip) for pod, ip in pairs]
            try:
                time.sleep(0.5)
                restart_agent(lab, node, how)
                time.sleep(2.0)          # sessions are back (ready): so must the routes be, and stay
            finally:
                lost[f"{how} {node}"] = [lost_by(p) for p in pings]
            if any(lost[f"{how} {node}"]):
                logs.append(f"--- {how} {node}\n" + "\n".join(bird_log_tail(lab, n) for n in names))
    report = "; ".join(f"{k}: {v}" for k, v in lost.items())
    assert not any(seqs for per_pair in lost.values() for seqs in per_pair), \
        f"pings lost per pair: {report}\n" + "\n".join(logs)


@pytest.mark.parametrize("args, words", [
    (["--backend", "bgp", "--route-reflectors", "4"], "--route-reflectors must be between 0"),
    (["--backend", "bgp", "--asn", "0"], "--asn must be an AS number in 1..4294967295, got 0"),
    (["--backend", "vxlan", "--tor-bgp"], "--tor-bgp: only for --backend bgp"),
    (["--backend", "bgp", "--tor-bgp"], "--tor-bgp needs --segments 2"),
])
def test_bad_bgp_input_is_refused_and_creates_nothing(lab_name, args, words):
    out = tulle("lab", "up", "--lab", lab_name, *args)
    assert out.returncode == 1 and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert traces(lab_name) == []
