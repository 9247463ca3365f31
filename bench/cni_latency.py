"""CNI latency: ADD, CHECK, DEL of bridge + host-local with ipMasq, three ways, alternated.

- `agent`: tulle's installed executable forwarding to a CniServer (the agent's
  socket server) running in this process, started in the sandbox host netns;
- `standalone`: the same executable with TULLE_STANDALONE=1 (runs the plugin itself);
- `reference`: Debian's reference plugins (/usr/lib/cni) on the same config.

Each peer has its own sandbox host netns and pod netns (one bridge each, so the
peers never see each other's state); the executable is started in the host
netns with nsenter, exactly as a runtime on that host would. Every verb's
wall time includes process start — that is what a runtime waits for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from bench import core
from tulle.agent.api import CniServer
from tulle.cni.install import install
from tulle.kernel import netns

REFERENCE_DIR = "/usr/lib/cni"
VERBS = ("ADD", "CHECK", "DEL")
PEERS = ("agent", "standalone", "reference")


def netconf(data_dir: str, sock: str) -> dict:
    """One config for all three peers (the reference plugins ignore `agentSocket`)."""
    return {"cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": "bbr0",
            "isGateway": True, "ipMasq": True, "agentSocket": sock,
            "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.99.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}}


@dataclass
class Peer:
    """One way of running the plugin: where its executables are, its netns, extra env."""
    name: str
    bin_dir: str
    host: str
    pod: str
    data_dir: str
    sock: str
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, command: str, cid: str, netns_path: str, ifname: str = "eth0") -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns_path, "CNI_IFNAME": ifname,
                "CNI_PATH": self.bin_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **self.env}

    def argv(self, extra: list[str] | None = None) -> list[str]:
        exe = os.path.join(self.bin_dir, "bridge")
        return ["nsenter", f"--net={self.host}", *(extra or []), exe]

    def run(self, command: str, conf: dict, cid: str, netns_path: str | None = None,
            ifname: str = "eth0") -> tuple[float, dict | None]:
        """One exec: (seconds, parsed stdout); raises when the plugin fails."""
        data = json.dumps(conf).encode()
        with core.Timer() as t:
            proc = subprocess.run(self.argv(), input=data, env=self.environ(command, cid, netns_path or self.pod,
                                                                             ifname),
                                  capture_output=True, timeout=core.CMD_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name} {command} failed ({proc.returncode}): "
                               f"{proc.stdout.decode(errors='replace')} {proc.stderr.decode(errors='replace')}")
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return t.seconds, out


def cycle(peer: Peer, cid: str = "bench0", netns_path: str | None = None) -> dict[str, float]:
    """ADD, CHECK, DEL of one attachment; seconds per verb."""
    conf = netconf(peer.data_dir, peer.sock)
    t_add, result = peer.run("ADD", conf, cid, netns_path)
    with_prev = dict(conf, prevResult=result)
    t_check, _ = peer.run("CHECK", with_prev, cid, netns_path)
    t_del, _ = peer.run("DEL", with_prev, cid, netns_path)
    return {"ADD": t_add, "CHECK": t_check, "DEL": t_del}


class Peers:
    """The three peers with their sandboxes, executables and the in-process agent socket."""

    def __init__(self, sandbox: core.Sandbox, names: tuple[str, ...] = PEERS) -> None:
        self.tmp = tempfile.mkdtemp(prefix="tbench", dir="/tmp")   # short: unix socket paths ≤ 108 bytes
        self.bin = os.path.join(self.tmp, "bin")
        install(self.bin)
        self.sock = os.path.join(self.tmp, "agent.sock")
        self.server: CniServer | None = None
        self.peers: dict[str, Peer] = {}
        for name in names:
            host = sandbox.make(f"{name[:5]}h")
            pod = sandbox.make(f"{name[:5]}p")
            netns.run_in(host, _lo_up)
            bin_dir = REFERENCE_DIR if name == "reference" else self.bin
            env = {"TULLE_STANDALONE": "1"} if name == "standalone" else {}
            self.peers[name] = Peer(name, bin_dir, host, pod, os.path.join(self.tmp, f"ipam-{name}"),
                                    self.sock, env)
        if "agent" in self.peers:
            self.server = CniServer(self.sock)
            netns.run_in(self.peers["agent"].host, self.server.start)   # its threads are born in the host netns

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _lo_up() -> None:
    from tulle.kernel import links

    links.set_up("lo")


def run(sandbox: core.Sandbox, cycles: int = 30, warmup: int = 2) -> dict:
    """≥30 alternated cycles per peer; medians, p90s and ratios (agent/reference, standalone/reference)."""
    peers = Peers(sandbox)
    samples: dict[str, dict[str, list[float]]] = {p: {v: [] for v in VERBS + ("cycle",)} for p in peers.peers}
    try:
        for peer in peers.peers.values():
            for _ in range(warmup):
                cycle(peer)

        def measure(name: str):
            def go(_round: int) -> None:
                t = cycle(peers.peers[name])
                for verb in VERBS:
                    samples[name][verb].append(t[verb])
                samples[name]["cycle"].append(sum(t.values()))
            return go

        core.alternate(cycles, {name: measure(name) for name in peers.peers})
        profile = import_profile(peers)
        inside = agent_profile(peers) if "agent" in peers.peers else None
    finally:
        peers.close()
    stats = {p: {v: core.summary(xs) for v, xs in d.items()} for p, d in samples.items()}
    ratios = {}
    for p in ("agent", "standalone"):
        ratios[p] = {v: {"median": core.ratio(stats[p][v]["median"], stats["reference"][v]["median"]),
                         "p90": core.ratio(stats[p][v]["p90"], stats["reference"][v]["p90"])}
                     for v in VERBS + ("cycle",)}
    return {"cycles": cycles, "stats": stats, "ratios": ratios, "samples": samples, "profile": profile,
            "agent_profile": inside}


# --- where a standalone ADD spends its time -----------------------------------------------

_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def parse_importtime(stderr: str) -> dict:
    """Top-level imports by cumulative µs, and the total (what `-X importtime` prints)."""
    top: list[tuple[str, int]] = []
    total = 0
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if not m:
            continue
        cumulative, depth, module = int(m.group(2)), len(m.group(3)) - 1, m.group(4)
        if depth == 0:
            top.append((module, cumulative))
            total += cumulative
    top.sort(key=lambda x: -x[1])
    return {"total_ms": total / 1000, "top": [{"module": m, "ms": us / 1000} for m, us in top[:12]]}


def import_profile(peers: Peers) -> dict:
    """One ADD+DEL per tulle peer run under `python -X importtime` (the executable's own flags kept)."""
    out = {}
    for name in ("standalone", "agent"):
        peer = peers.peers.get(name)
        if peer is None:
            continue
        conf = netconf(peer.data_dir, peer.sock)
        exe = os.path.join(peer.bin_dir, "bridge")
        flags = _shebang_flags(exe)
        argv = ["nsenter", f"--net={peer.host}", sys.executable, *flags, "-X", "importtime", exe]
        proc = subprocess.run(argv, input=json.dumps(conf).encode(), env=peer.environ("ADD", "prof0", peer.pod),
                              capture_output=True, timeout=core.CMD_TIMEOUT, check=False)
        result = json.loads(proc.stdout) if proc.returncode == 0 else None
        out[name] = parse_importtime(proc.stderr.decode(errors="replace"))
        out[name]["shebang"] = " ".join(flags)
        if result is not None:
            peer.run("DEL", dict(conf, prevResult=result), "prof0")
    return out


def _shebang_flags(exe: str) -> list[str]:
    with open(exe) as f:
        first = f.readline().strip()
    parts = first[2:].split()
    return parts[1:]


# --- where the agent's share of a call goes -------------------------------------------------

def agent_profile(peers: Peers, cycles: int = 10, top: int = 8) -> dict:
    """The agent's work per verb, run in-process (as a CniServer worker runs it) under cProfile.

    Per verb: the median in-process time, the netlink requests made through
    pyroute2 and the nftables calls (count and ms per call of the verb), and
    the tulle functions with the most cumulative time. Work on the pod's side
    runs on a thread of its own and shows as the caller's wait (sandbox.run).
    """
    import cProfile
    import pstats

    from tulle.agent.api import run_plugin

    peer = peers.peers["agent"]
    conf = netconf(peer.data_dir, peer.sock)
    times: dict[str, list[float]] = {v: [] for v in VERBS}
    profiles = {v: cProfile.Profile() for v in VERBS}

    def verb(command: str, c: dict) -> bytes:
        prof = profiles[command]
        with core.Timer() as t:
            prof.enable()
            out, code = run_plugin("bridge", peer.environ(command, "inproc", peer.pod), json.dumps(c).encode())
            prof.disable()
        if code != 0:
            raise RuntimeError(f"in-process {command} failed: {out.decode(errors='replace')}")
        times[command].append(t.seconds)
        return out

    def go() -> None:
        for _ in range(cycles):
            with_prev = dict(conf, prevResult=json.loads(verb("ADD", conf)))
            verb("CHECK", with_prev)
            verb("DEL", with_prev)

    netns.run_in(peer.host, go)
    out = {}
    for command, prof in profiles.items():
        stats = pstats.Stats(prof).stats  # (file, line, func) -> (calls, _, own s, cumulative s, callers)
        per = lambda x: x / cycles  # noqa: E731 — per call of the verb
        netlink = [v for k, v in stats.items() if "pyroute2" in k[0] and k[2] == "_run_with_cleanup"]
        nft_calls = [v for k, v in stats.items() if k[0].endswith("tulle/kernel/nft.py") and k[2] == "_run"]
        funcs = sorted(((f"{_module(k[0])}.{k[2]}", v[3]) for k, v in stats.items()
                        if "/tulle/" in k[0] and k[2] not in ("handle", "_dispatch", "run_plugin", "<lambda>")),
                       key=lambda x: -x[1])
        out[command] = {
            "in_process_ms": core.summary(times[command])["median"] * 1000,
            "netlink_requests": per(sum(v[0] for v in netlink)), "netlink_ms": per(sum(v[3] for v in netlink)) * 1000,
            "nft_calls": per(sum(v[0] for v in nft_calls)), "nft_ms": per(sum(v[3] for v in nft_calls)) * 1000,
            "top": [{"function": name, "ms": per(sec) * 1000} for name, sec in funcs[:top]],
        }
    return out


def _module(path: str) -> str:
    """tulle/cni/plugins/main/bridge.py -> cni.plugins.main.bridge"""
    rel = path.split("/tulle/", 1)[-1]
    return rel[:-3].replace("/", ".") if rel.endswith(".py") else rel
