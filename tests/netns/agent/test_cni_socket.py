"""The agent's CNI socket with the real executables: the same conflist run
through the agent and standalone gives identical results and identical state;
the work lands in the caller's netns (never the agent's); concurrency, DEL
after the pod is gone, root-only access, an agent dying mid-request, and no
per-request leaks in the long-lived agent process."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cnirun import Runner
from tests.netns.cni import mainhelp as h
from tulle.agent.api import CniServer
from tulle.cni import forward
from tulle.cni.runtime import Attachment, Runtime
from tulle.kernel import netns

pytestmark = pytest.mark.netns

PORTS = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="tcs", dir="/tmp")  # short: unix socket paths max out at 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent(make_netns, sockdir):
    """A CniServer running in its own netns (so work done in the wrong place would show there)."""
    agent_ns = make_netns("agent")
    calls: list[tuple] = []
    server = CniServer(os.path.join(sockdir, "agent.sock"), observe=lambda *a: calls.append(a))
    netns.run_in(agent_ns, server.start)  # its threads are born in agent_ns
    server.ns = agent_ns  # type: ignore[attr-defined]
    server.calls = calls  # type: ignore[attr-defined]
    yield server
    server.close()
    assert not os.path.exists(server.socket_path)


def conflist(data_dir: str, sock: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "socknet", "plugins": [
        {"type": "bridge", "bridge": "tbr0", "isGateway": True, "ipMasq": True, "agentSocket": sock,
         "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.22.0.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "agentSocket": sock},
    ]}


def snapshot(ns: str) -> dict:
    """What a netns holds, with the random parts (MACs, veth names, handles) masked."""
    def mask(text: str) -> str:
        text = re.sub(r"veth[0-9a-f]{8}", "vethX", text)
        text = re.sub(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", "MAC", text)
        text = re.sub(r"\bif\d+\b", "ifN", text)
        return re.sub(r"# handle \d+", "", text)

    links = sorted(mask(f"{l['ifname']} {l.get('link_type')} mtu={l['mtu']} master={l.get('master')}")
                   for l in h.ip_json(ns, "link", "show"))
    addrs = sorted(mask(f"{l['ifname']} {a['local']}/{a['prefixlen']}") for l in h.ip_json(ns, "addr", "show")
                   for a in l.get("addr_info", []) if a.get("scope") != "link")
    nft = mask(h.in_ns(ns, "nft", "list", "ruleset"))
    return {"links": links, "addrs": addrs, "routes": h.route_lines(ns), "nft": nft,
            "forward": h.sysctl(ns, "net.ipv4.ip_forward")}


def run_sequence(cni_bin: str, tmp: str, host_ns: str, pod_ns: str, sock: str) -> dict:
    """ADD, CHECK, DEL of the conflist as a runtime on the host (host_ns) would run it."""
    rt = Runtime([cni_bin], cache_dir=os.path.join(tmp, "cache"))
    cl = conflist(os.path.join(tmp, "ipam"), sock)
    att = Attachment("c0ffee", pod_ns, "eth0", capability_args={"portMappings": PORTS})
    t0 = time.monotonic()
    result = netns.run_in(host_ns, rt.add, cl, att)
    t_add = time.monotonic() - t0
    after_add = {"host": snapshot(host_ns), "pod": snapshot(pod_ns)}
    netns.run_in(host_ns, rt.check, cl, att)
    t0 = time.monotonic()
    netns.run_in(host_ns, rt.delete, cl, att)
    t_del = time.monotonic() - t0
    after_del = {"host": snapshot(host_ns), "pod": snapshot(pod_ns)}
    return {"result": h.normalise(result), "after_add": after_add, "after_del": after_del,
            "leases": os.listdir(os.path.join(tmp, "ipam", "socknet")), "seconds": (t_add, t_del)}


def test_agent_and_standalone_give_identical_results(agent, cni_bin, make_netns, tmp_path):
    alone = run_sequence(cni_bin, str(tmp_path / "alone"), make_netns("h1"), make_netns("p1"),
                         str(tmp_path / "absent.sock"))
    assert agent.calls == []  # socket absent: standalone, the agent saw nothing
    via = run_sequence(cni_bin, str(tmp_path / "via"), make_netns("h2"), make_netns("p2"), agent.socket_path)
    assert [c[:2] for c in agent.calls] == [("bridge", "ADD"), ("portmap", "ADD"), ("bridge", "CHECK"),
                                            ("portmap", "CHECK"), ("portmap", "DEL"), ("bridge", "DEL")]
    assert all(c[3] == 0 and c[2] >= 0 for c in agent.calls)
    assert via["result"] == alone["result"]
    assert via["result"]["ips"][0]["address"] == "10.22.0.2/24"
    assert via["after_add"] == alone["after_add"]
    assert "18080" in via["after_add"]["host"]["nft"] and "tbr0 10.22.0.1/24" in via["after_add"]["host"]["addrs"]
    assert via["after_del"] == alone["after_del"]
    assert via["leases"] == alone["leases"]
    # everything happened in the caller's netns: the agent's own netns is untouched
    assert snapshot(agent.ns)["links"] == ["lo loopback mtu=65536 master=None"]
    assert snapshot(agent.ns)["nft"] == ""
    print(f"\nlatency ADD+DEL of a 2-plugin conflist: standalone {alone['seconds']}, agent {via['seconds']}")


def test_del_through_agent_after_pod_netns_is_gone(agent, cni_bin, make_netns, host_ns, tmp_path):
    pod = make_netns("pod")
    rt = Runtime([cni_bin], cache_dir=str(tmp_path / "cache"))
    cl = conflist(str(tmp_path / "ipam"), agent.socket_path)
    att = Attachment("c0ffee", pod, "eth0", capability_args={"portMappings": PORTS})
    netns.run_in(host_ns, rt.add, cl, att)
    assert "18080" in h.in_ns(host_ns, "nft", "list", "ruleset")
    netns.remove(os.path.basename(pod))
    netns.run_in(host_ns, rt.delete, cl, att)
    assert not [n for n in os.listdir(tmp_path / "ipam" / "socknet") if n[0].isdigit()]  # lease released
    rules = h.nft_rules(host_ns)
    assert not [r for r in rules if ":c0ffee:eth0" in r.get("comment", "")]
    assert [c[:2] for c in agent.calls][-2:] == [("portmap", "DEL"), ("bridge", "DEL")]


FAKE_IPAM = """#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","ips":[{"address":"10.22.0.9/24","gateway":"10.22.0.1"}],"dns":{"domain":"%s"}}' \\
    "$(readlink /proc/self/ns/net | tr -dc 0-9)"
fi
"""


def test_exec_delegation_from_the_agent_runs_in_the_callers_netns(agent, cni_bin, pod_ns, host_ns, tmp_path):
    """An IPAM type tulle does not have is executed from CNI_PATH by the agent, inside the caller's
    netns: the fake IPAM reports the netns it ran in (as its DNS domain)."""
    ipam_dir = tmp_path / "ext"
    ipam_dir.mkdir()
    (ipam_dir / "fake-ipam").write_text(FAKE_IPAM)
    (ipam_dir / "fake-ipam").chmod(0o755)
    cni = Runner([cni_bin, str(ipam_dir)], data_dir=str(tmp_path))
    conf = {"cniVersion": "1.0.0", "name": "ext", "type": "bridge", "bridge": "tbr0", "isGateway": True,
            "agentSocket": agent.socket_path, "ipam": {"type": "fake-ipam"}}
    res = cni("bridge", "ADD", conf, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    assert res.out["ips"][0]["address"] == "10.22.0.9/24"
    assert res.out["dns"]["domain"] == str(os.stat(host_ns).st_ino)
    assert agent.calls[-1][:2] == ("bridge", "ADD")
    assert cni("bridge", "DEL", conf, netns=pod_ns, host_ns=host_ns).ok


def test_parallel_adds_get_distinct_addresses_and_leak_nothing(agent, cni_bin, pod_ns, host_ns, tmp_path):
    cni = Runner([cni_bin], data_dir=str(tmp_path))
    conf = {"cniVersion": "1.0.0", "name": "par", "type": "bridge", "bridge": "tbr0", "isGateway": True,
            "agentSocket": agent.socket_path, "ipam": h.host_local(str(tmp_path / "ipam"))}
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()

    def add(i: int):
        return cni("bridge", "ADD", conf, netns=pod_ns, host_ns=host_ns, container_id=f"c{i}", ifname=f"eth{i}")

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(add, range(10)))
    assert all(r.ok for r in results), [r.out for r in results if not r.ok]
    ips = {r.out["ips"][0]["address"] for r in results}
    assert len(ips) == 10
    assert len(h.veths(host_ns)) == 10
    with ThreadPoolExecutor(10) as pool:
        dels = list(pool.map(lambda i: cni("bridge", "DEL", conf, netns=pod_ns, host_ns=host_ns,
                                           container_id=f"c{i}", ifname=f"eth{i}"), range(10)))
    assert all(r.ok for r in dels)
    assert h.veths(host_ns) == [] and h.link_names(pod_ns) == {"lo"}
    assert sum(1 for c in agent.calls if c[1] == "ADD") == 10
    # the long-lived process keeps nothing per request: idle workers (each with its netlink
    # socket) are bounded by the burst's concurrency, and close() ends them all
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and agent.in_flight():
        time.sleep(0.05)
    workers = threading.active_count() - threads_before
    assert 1 <= workers <= 10
    for i in range(10):  # sequential calls reuse the idle workers
        assert cni("bridge", "DEL", conf, netns=pod_ns, host_ns=host_ns, container_id=f"c{i}").ok
    assert threading.active_count() - threads_before <= workers
    agent.close()
    assert threading.active_count() <= threads_before
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_non_root_client_is_refused(agent):
    """The socket is 0600 (a non-root connect fails, the executable runs standalone); a non-root
    peer that gets through anyway (here: the mode loosened on purpose) is refused by its uid."""
    assert os.stat(agent.socket_path).st_mode & 0o777 == 0o600

    def as_nobody() -> dict:
        """A forked child that drops to uid/gid 65534, then talks to the agent (the venv's
        interpreter may not be reachable for that user, so no exec)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: only socket calls, then _exit
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                try:
                    s = forward.connect(agent.socket_path)
                    out, code = forward.call(s, "bridge", {"CNI_COMMAND": "ADD"}, b"{}", timeout=10)
                    res = {"out": out.decode(), "code": code}
                except forward.AgentUnavailable as e:
                    res = {"unavailable": str(e)}
                os.write(w, json.dumps(res).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return json.loads(data)

    assert "Permission denied" in as_nobody()["unavailable"]
    os.chmod(os.path.dirname(agent.socket_path), 0o755)
    os.chmod(agent.socket_path, 0o666)
    got = as_nobody()
    assert got["code"] == 1 and json.loads(got["out"])["code"] == 5
    assert "root only" in json.loads(got["out"])["msg"]
    assert agent.calls == []


def test_agent_dying_mid_request_is_try_again_and_leaves_nothing(cni, make_netns, pod_ns, host_ns, sockdir,
                                                                 tmp_path):
    agent_ns = make_netns("agent")
    sock = os.path.join(sockdir, "dying.sock")
    script = ("import os, sys, time\nfrom tulle.agent.api import CniServer\n"
              "s = CniServer(sys.argv[1], handler=lambda *a: os._exit(3))\ns.start()\n"
              "print('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen(["nsenter", f"--net={agent_ns}", sys.executable, "-c", script, sock],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        conf = {"cniVersion": "1.0.0", "name": "die", "type": "bridge", "bridge": "tbr0", "isGateway": True,
                "agentSocket": sock, "ipam": h.host_local(str(tmp_path / "ipam"))}
        res = cni("bridge", "ADD", conf, netns=pod_ns, host_ns=host_ns)
        assert res.error_code == 11, res.out
        assert proc.wait(10) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # no second, standalone run happened behind the error
    assert h.link_names(host_ns) == {"lo"} and h.link_names(pod_ns) == {"lo"}
    assert not (tmp_path / "ipam").exists()
    # the dead agent's socket file is stale now: the next call runs standalone
    assert os.path.exists(sock)
    res = cni("bridge", "ADD", conf, netns=pod_ns, host_ns=host_ns)
    assert res.ok, res.out
    assert cni("bridge", "DEL", conf, netns=pod_ns, host_ns=host_ns).ok


def test_server_socket_lifecycle(make_netns, sockdir):
    """Parent dir made 0700; a stale file is replaced; a live agent's socket or a plain file is not."""
    path = os.path.join(sockdir, "run", "agent.sock")
    first = CniServer(path)
    netns.run_in(make_netns("agent"), first.start)
    try:
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
        with pytest.raises(Exception, match="another agent"):
            CniServer(path).start()
    finally:
        first.close()
    assert not os.path.exists(path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    second = CniServer(path)
    second.start()
    try:
        forward.connect(path).close()
    finally:
        second.close()
    with open(path, "w") as f:
        f.write("not a socket")
    with pytest.raises(Exception, match="not a socket"):
        CniServer(path).start()


def test_idle_workers_end_and_an_idle_server_has_no_worker(make_netns, sockdir, monkeypatch):
    from tulle.agent import api

    monkeypatch.setattr(api, "WORKER_IDLE", 0.2)
    server = CniServer(os.path.join(sockdir, "idle.sock"), handler=lambda kind, env, stdin: (b"{}", 0))
    netns.run_in(make_netns("agent"), server.start)
    try:
        threads = threading.active_count()
        conf = json.dumps({"agentSocket": server.socket_path}).encode()
        assert forward.try_forward("bridge", {"CNI_COMMAND": "ADD"}, conf) == (b"{}", 0)
        assert threading.active_count() == threads + 1  # the worker waits for the next call
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and threading.active_count() > threads:
            time.sleep(0.05)
        assert threading.active_count() == threads
        assert forward.try_forward("bridge", {"CNI_COMMAND": "DEL"}, conf) == (b"{}", 0)  # a new one serves
    finally:
        server.close()
