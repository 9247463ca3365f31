"""Control plane: time to first reply for a new pod, time for a joining node's subnet
to be routed on every node, and the agents' memory and idle CPU — for labs of 10
and 50 nodes (vxlan, SQLite store).

Peers: a new pod's first reply from a pod on another node is read against the
first reply from a pod on its own node (alternated); the join at 50 nodes against
the join at 10. Routes are observed as they appear, with one `ip -ts monitor
route` per node netns (event-driven, no polling gaps), stopped by pid after.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import threading
import time

from bench import core
from tulle.kernel import netns
from tulle.lab import agents, cluster, pods, state, topology

_ROUTE = re.compile(r"^(?:\[[^\]]*\]\s*)?(\d+\.\d+\.\d+\.\d+/\d+)\s")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tulle.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tulle {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def first_reply(lab: str, node: str, peer_pod: str, name: str) -> dict:
    """`tulle lab pod add` of a pod on `node`, then ping it from `peer_pod` until the first reply."""
    with core.Timer() as t_add:
        out = _cli("lab", "pod", "add", "--lab", lab, node, name).stdout
    ip = out.strip().rsplit(" ", 1)[-1]
    t0 = time.perf_counter()
    proc = core.in_ns(netns.path_of(topology.pod_netns(lab, peer_pod)), "ping", "-n", "-c", "1", "-w", "5",
                      "-i", "0.01", ip, check=False, timeout=15)
    t_reply = time.perf_counter() - t0
    pods.delete(lab, name)
    if proc.returncode != 0:
        raise RuntimeError(f"no reply from {name} ({ip}) to {peer_pod} within 5 s")
    return {"add_s": t_add.seconds, "reply_after_add_s": t_reply, "total_s": t_add.seconds + t_reply}


class RouteWatch:
    """One `ip -ts monitor route` per node netns; records when each first sees a new subnet."""

    def __init__(self, node_paths: dict[str, str], known: set[ipaddress.IPv4Network]) -> None:
        self.known = known
        self.seen: dict[str, float] = {}
        self.subnet: ipaddress.IPv4Network | None = None
        self.procs: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        for name, path in node_paths.items():
            proc = subprocess.Popen(["nsenter", f"--net={path}", "ip", "-ts", "monitor", "route"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
            self.procs.append(proc)
            t = threading.Thread(target=self._read, args=(name, proc), daemon=True)
            t.start()
            self.threads.append(t)

    def _read(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            if "Deleted" in line:
                continue
            m = _ROUTE.match(line.strip())
            if not m:
                continue
            dst = ipaddress.IPv4Network(m.group(1), strict=False)
            if dst.prefixlen == 0 or dst in self.known or not dst.subnet_of(topology.DEFAULT_NETWORK):
                continue
            with self._lock:
                self.seen.setdefault(name, now)
                self.subnet = self.subnet or dst

    def stop(self) -> None:
        core.stop_processes(self.procs)
        for t in self.threads:
            t.join(2)


def _covers_all(others: list[ipaddress.IPv4Network]) -> bool:
    from tulle.kernel import routes

    table = [r.dst for r in routes.list_routes(4) if r.dst.prefixlen > 0]
    return all(any(s.subnet_of(d) for d in table) for s in others)


def node_join(lab: str, timeout: float = 60) -> dict:
    """A node joins: seconds until every other node routes its subnet, and until it routes all others."""
    st = state.load(lab)
    plan = st.plan()
    kv = cluster.open_lab_store(plan)
    try:
        known = {l.subnet for l in agents.leases(kv)}
    finally:
        kv.close()
    watch = RouteWatch({n.name: netns.path_of(n.netns) for n in plan.nodes}, known)
    try:
        time.sleep(0.3)   # the monitors subscribe
        t0 = time.perf_counter()
        name = cluster.node_add(lab, wait=False)
        new_path = netns.path_of(f"tulle-{lab}-{name}")
        deadline = t0 + timeout
        t_own = None
        while time.perf_counter() < deadline:
            if t_own is None and netns.run_in(new_path, _covers_all, sorted(known)):
                t_own = time.perf_counter() - t0
            if t_own is not None and len(watch.seen) == len(plan.nodes):
                break
            time.sleep(0.02)
        missing = [n.name for n in plan.nodes if n.name not in watch.seen]
        if missing or t_own is None:
            raise RuntimeError(f"node {name} joined lab {lab} but after {timeout:.0f}s: not routed on "
                               f"{missing}, own routes {'ok' if t_own else 'missing'}")
        times = sorted(v - t0 for v in watch.seen.values())
        return {"node": name, "subnet": str(watch.subnet), "routed_on_all_s": times[-1],
                "routed_median_s": core.median(times), "own_routes_s": t_own}
    finally:
        watch.stop()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime + stime


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def agent_usage(lab: str, window: float) -> dict:
    """RSS (MiB) and idle CPU (% of one core) of every agent over `window` seconds."""
    pids = [p for p in state.load(lab).nodes.values() if p]
    before = {p: _cpu_ticks(p) for p in pids}
    time.sleep(window)
    cpu = [100.0 * (_cpu_ticks(p) - before[p]) / CLK_TCK / window for p in pids]
    rss = [_rss_kib(p) / 1024 for p in pids]
    return {"agents": len(pids), "rss_mib": core.summary(rss), "idle_cpu_pct": core.summary(cpu),
            "idle_cpu_total_pct": sum(cpu)}


def run_size(nodes: int, lab: str, rounds: int, joins: int, window: float) -> dict:
    out: dict = {"nodes": nodes}
    try:
        with core.Timer() as t_up:
            cluster.up(lab, nodes_count=nodes - joins, backend="vxlan", timeout=max(30.0, 3.0 * nodes))
        out["up_s"] = t_up.seconds
        out["join"] = [node_join(lab) for _ in range(joins)]
        time.sleep(min(2.0, window))     # let the join's reconcile settle before measuring idle
        out["usage"] = agent_usage(lab, window)
        pods.add(lab, "n2", "remote")
        pods.add(lab, "n1", "local")
        samples: dict[str, list[dict]] = {"cross": [], "same": []}
        core.alternate(rounds, {
            "cross": lambda r: samples["cross"].append(first_reply(lab, "n1", "remote", f"fx{r}")),
            "same": lambda r: samples["same"].append(first_reply(lab, "n1", "local", f"fs{r}")),
        })
        out["first_reply"] = {k: {m: core.summary([s[m] for s in v]) for m in v[0]} for k, v in samples.items()}
        out["first_reply"]["ratio_cross_same"] = core.ratio(out["first_reply"]["cross"]["total_s"]["median"],
                                                            out["first_reply"]["same"]["total_s"]["median"])
        out["alive"] = all(agents.alive(lab, n, p) for n, p in state.load(lab).nodes.items())
        return out
    finally:
        cluster.down(lab)


def run(sizes: tuple[int, ...] = (10, 50), rounds: int = 5, joins: int = 3, window: float = 5.0,
        lab_prefix: str = "bc") -> dict:
    out: dict = {"sizes": {}}
    for n in sizes:
        out["sizes"][str(n)] = run_size(n, f"{lab_prefix}{n}", rounds, joins, window)
    if len(sizes) >= 2:
        small, big = out["sizes"][str(sizes[0])], out["sizes"][str(sizes[-1])]
        out["join_ratio_big_small"] = core.ratio(max(j["routed_on_all_s"] for j in big["join"]),
                                                 max(j["routed_on_all_s"] for j in small["join"]))
    return out
