"""Throughput and round-trip latency, pod→pod, per backend, against the same path
wired by hand with `ip` commands and against a bare veth pair.

For each backend a 2-node lab (real agents) gets pods a, b on n1 and c on n2.
Beside it, in the bench's own netns, the same shape is built by hand: a fabric
bridge, two "nodes" on it, three pods, wired as the backend's datapath is
(`HAND_PATH`):
  host-gw  a cni0 bridge per node, a route per remote node subnet via its underlay;
  vxlan    the same bridges, a VXLAN device with static neighbour/FDB entries;
  udp      read against that VXLAN path (the kernel's limit for the encapsulated
           paths: udp has no in-kernel equivalent) and against its own goal, 1 Gbit/s;
  bgp      Calico-style routed pods, as tulle-routed + BIRD wire them: a veth per pod
           with the fixed host MAC, proxy ARP and the 169.254.1.1 gateway, a /32 host
           route per pod, a blackhole for the node's own block and the remote block
           via the other node's underlay address (what BIRD installs on one segment).
Every hand path takes the lab pods' MTU (read from pod a's eth0). The hand paths
carry no nft rules. iperf3 servers run inside the server netns for the whole
scenario and are stopped by pid.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass

from bench import core
from tulle.kernel import links, netns
from tulle.lab import cluster, pods, topology

IPERF_PORT = 5201
HAND_UNDERLAY = ("198.51.100.11", "198.51.100.12")
MAC = ("02:b0:00:00:00:01", "02:b0:00:00:00:02")
HAND_PATH = {"host-gw": "host-gw", "vxlan": "vxlan", "udp": "vxlan", "bgp": "routed"}
HAND_PODS = (("a1", "a2"), ("b1",))                 # per hand node
ROUTED_GATEWAY = "169.254.1.1"                      # tulle-routed's (Calico's) pod gateway
ROUTED_HOST_MAC = "ee:ee:ee:ee:ee:ee"
ROUTED_BLOCK_LEN = 26                               # tulle-blocks' default block size


@dataclass
class Path:
    name: str
    client: str       # netns path
    server: str
    server_ip: str


class Servers:
    """iperf3 servers by pid, one per server netns."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, ns: str, ip: str) -> None:
        self.procs.append(subprocess.Popen(["nsenter", f"--net={ns}", "iperf3", "-s", "-B", ip, "-p",
                                            str(IPERF_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        core.stop_processes(self.procs)
        self.procs.clear()


def iperf(path: Path, seconds: float, streams: int) -> float:
    """Gbit/s received (retries while the server is still starting or a run reports no sum; bounded)."""
    seconds = max(1, int(round(seconds)))     # iperf3 reads -t as an integer; 0 would mean "forever"
    deadline = time.monotonic() + 10
    while True:
        proc = core.in_ns(path.client, "iperf3", "-c", path.server_ip, "-p", str(IPERF_PORT), "-t", str(seconds),
                          "-P", str(streams), "-J", check=False, timeout=seconds + 30)
        if proc.returncode == 0:
            # iperf3 can exit 0 without the receiver's sum (results exchange lost): measure again
            received = json.loads(proc.stdout).get("end", {}).get("sum_received")
            if received is not None:
                return received["bits_per_second"] / 1e9
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 {path.name} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
        time.sleep(0.2)


_RTT = re.compile(r"time=([\d.]+) ms")


def rtt(path: Path, count: int) -> list[float]:
    """Per-packet round trips (ms) of `ping -i 0.01`."""
    proc = core.in_ns(path.client, "ping", "-n", "-c", str(count), "-i", "0.01", "-W", "1", path.server_ip,
                      check=False, timeout=count * 0.05 + 10)
    return [float(x) for x in _RTT.findall(proc.stdout)]


# --- the hand-wired twin of a 2-node lab -----------------------------------------------------

def hand_path(backend: str) -> str:
    """Which hand-wired path a backend is read against; an unknown backend is a clear error."""
    try:
        return HAND_PATH[backend]
    except KeyError:
        raise ValueError(f"throughput: no hand-wired path for backend {backend!r}; "
                         f"known: {', '.join(HAND_PATH)}") from None


def build_hand(sandbox: core.Sandbox, mode: str, pod_mtu: int) -> dict[str, tuple[str, str]]:
    """Fabric + 2 nodes + pods a1, a2 (node 1) and b1 (node 2); returns pod -> (netns, ip).
    `mode` is a value of HAND_PATH."""
    if mode not in set(HAND_PATH.values()):
        raise ValueError(f"throughput: unknown hand-wired path {mode!r}")
    fabric = sandbox.make("hfab")
    nodes = [sandbox.make("hn1"), sandbox.make("hn2")]
    core.ip_batch(fabric, ["link set lo up", "link add br0 type bridge", "link set br0 up"])
    out: dict[str, tuple[str, str]] = {}
    for k, node in enumerate(nodes):
        core.ip_batch(fabric, [f"link add u{k} type veth peer name eth0 netns {node}",
                               f"link set u{k} master br0", f"link set u{k} up"])
        core.ip_batch(node, ["link set lo up", f"addr add {HAND_UNDERLAY[k]}/24 dev eth0", "link set eth0 up"])
        core.in_ns(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if mode != "routed":
            core.ip_batch(node, ["link add cni0 type bridge", f"addr add 10.250.{k + 1}.1/24 dev cni0",
                                 "link set cni0 up"])
        for j, pod_name in enumerate(HAND_PODS[k]):
            pod = sandbox.make(f"hp{pod_name}")
            addr = f"10.250.{k + 1}.{j + 2}"
            (_routed_pod if mode == "routed" else _bridged_pod)(node, pod, f"hv{pod_name}", addr, pod_mtu)
            out[pod_name] = (pod, addr)
    node_routes = {"host-gw": _host_gw_routes, "vxlan": _vxlan_routes, "routed": _routed_routes}[mode]
    for k, node in enumerate(nodes):
        node_routes(node, k, pod_mtu)
    return out


def _bridged_pod(node: str, pod: str, host: str, addr: str, mtu: int) -> None:
    """Flannel's pod: a veth on the node's cni0 bridge, the bridge as gateway."""
    gateway = addr.rsplit(".", 1)[0] + ".1"
    core.ip_batch(node, [f"link add {host} mtu {mtu} type veth peer name eth0 netns {pod}",
                         f"link set {host} master cni0", f"link set {host} up"])
    core.ip_batch(pod, ["link set lo up", f"link set eth0 mtu {mtu}", f"addr add {addr}/24 dev eth0",
                        "link set eth0 up", f"route add 10.250.0.0/16 via {gateway}"])


def _routed_pod(node: str, pod: str, host: str, addr: str, mtu: int) -> None:
    """tulle-routed's pod: /32 address, link-scoped gateway with a permanent neighbour
    entry; the host end has the fixed MAC, proxy ARP, and a /32 route to the pod."""
    core.ip_batch(node, [f"link add {host} mtu {mtu} address {ROUTED_HOST_MAC} type veth peer name eth0 netns {pod}",
                         f"link set {host} up", f"route add {addr}/32 dev {host} scope link"])
    core.in_ns(node, "sysctl", "-qw", f"net.ipv4.conf.{host}.proxy_arp=1", f"net.ipv4.neigh.{host}.proxy_delay=0",
               f"net.ipv4.conf.{host}.forwarding=1")
    core.ip_batch(pod, ["link set lo up", f"link set eth0 mtu {mtu}", f"addr add {addr}/32 dev eth0",
                        "link set eth0 up", f"route add {ROUTED_GATEWAY}/32 dev eth0 scope link",
                        f"route add default via {ROUTED_GATEWAY} dev eth0",
                        f"neigh replace {ROUTED_GATEWAY} lladdr {ROUTED_HOST_MAC} dev eth0 nud permanent"])


def _host_gw_routes(node: str, k: int, _mtu: int) -> None:
    other = 1 - k
    core.ip(node, "route", "add", f"10.250.{other + 1}.0/24", "via", HAND_UNDERLAY[other])


def _vxlan_routes(node: str, k: int, pod_mtu: int) -> None:
    other = 1 - k
    core.ip_batch(node, [
        f"link add vx0 address {MAC[k]} mtu {min(pod_mtu, 1450)} type vxlan id 1 local {HAND_UNDERLAY[k]} "
        f"dstport 8472 nolearning dev eth0",
        f"addr add 10.250.{k + 1}.0/32 dev vx0", "link set vx0 up",
        f"neigh add 10.250.{other + 1}.0 lladdr {MAC[other]} dev vx0 nud permanent",
        f"route add 10.250.{other + 1}.0/24 via 10.250.{other + 1}.0 dev vx0 onlink"])
    core.in_ns(node, "bridge", "fdb", "append", MAC[other], "dev", "vx0", "dst", HAND_UNDERLAY[other])


def _routed_routes(node: str, k: int, _mtu: int) -> None:
    """What BIRD installs on a node of a one-segment mesh: own block blackholed, the
    other node's block via its underlay address (native routing, no encapsulation)."""
    other = 1 - k
    core.ip_batch(node, [f"route add blackhole 10.250.{k + 1}.0/{ROUTED_BLOCK_LEN}",
                         f"route add 10.250.{other + 1}.0/{ROUTED_BLOCK_LEN} via {HAND_UNDERLAY[other]} dev eth0"])


def build_veth(sandbox: core.Sandbox) -> tuple[str, str]:
    """The floor of every path: two netns joined by one veth pair."""
    a, b = sandbox.make("va"), sandbox.make("vb")
    core.ip_batch(a, [f"link add eth0 type veth peer name eth0 netns {b}", "addr add 10.251.0.1/30 dev eth0",
                      "link set eth0 up", "link set lo up"])
    core.ip_batch(b, ["addr add 10.251.0.2/30 dev eth0", "link set eth0 up", "link set lo up"])
    return a, b


# --- the scenario -----------------------------------------------------------------------

def measure(paths: list[Path], seconds: float, rounds: int, pings: int) -> dict:
    """Alternated rounds over `paths`: Gbit/s for 1 and 4 streams, RTT ms; ratios vs paths[1:]."""
    out: dict = {}
    for streams in (1, 4):
        gbps: dict[str, list[float]] = {p.name: [] for p in paths}

        def runner(p: Path, streams: int = streams, gbps=gbps):
            return lambda _r: gbps[p.name].append(iperf(p, seconds, streams))

        core.alternate(rounds, {p.name: runner(p) for p in paths})
        out[f"streams{streams}"] = {name: core.summary(xs) for name, xs in gbps.items()}
    lat: dict[str, list[float]] = {p.name: [] for p in paths}
    core.alternate(rounds, {p.name: (lambda _r, p=p: lat[p.name].extend(rtt(p, max(1, pings // rounds))))
                            for p in paths})
    out["rtt_ms"] = {name: core.summary(xs) for name, xs in lat.items()}
    first = paths[0].name
    out["ratios"] = {}
    for other in paths[1:]:
        out["ratios"][f"{first}/{other.name}"] = {
            "streams1": core.ratio(out["streams1"][first]["median"], out["streams1"][other.name]["median"]),
            "streams4": core.ratio(out["streams4"][first]["median"], out["streams4"][other.name]["median"]),
            "rtt": core.ratio(out["rtt_ms"][first]["median"], out["rtt_ms"][other.name]["median"]),
        }
    return out


def pod_wiring(backend: str) -> str:
    """How two pods on one node reach each other: through the cni0 bridge, or routed by the node."""
    return "routed" if hand_path(backend) == "routed" else "bridge"


def run_backend(sandbox: core.Sandbox, backend: str, lab: str, seconds: float, rounds: int, pings: int,
                same_node: bool) -> dict:
    mode = hand_path(backend)         # before anything exists
    servers = Servers()
    try:
        cluster.up(lab, nodes_count=2, backend=backend, timeout=60)
        for node, pod in (("n1", "a"), ("n1", "b"), ("n2", "c")):
            pods.add(lab, node, pod)
        st = cluster.state.load(lab)

        def lab_pod(p: str) -> tuple[str, str]:
            return netns.path_of(topology.pod_netns(lab, p)), st.pods[f"default/{p}"].ip

        mtu = netns.run_in(lab_pod("a")[0], links.mtu_of, "eth0")
        if not mtu:
            raise RuntimeError(f"lab {lab}: pod a has no eth0")
        hand = build_hand(sandbox, mode, mtu)
        va, vb = build_veth(sandbox)
        for ns, ip in (lab_pod("b"), lab_pod("c"), hand["a2"], hand["b1"], (vb, "10.251.0.2")):
            servers.start(ns, ip)
        veth = Path("veth", va, vb, "10.251.0.2")
        cross = [Path("tulle", lab_pod("a")[0], *lab_pod("c")), Path("hand", hand["a1"][0], *hand["b1"]), veth]
        out = {"backend": backend, "pod_mtu": mtu, "hand_path": mode, "pod_wiring": pod_wiring(backend),
               "cross_node": measure(cross, seconds, rounds, pings)}
        if same_node:
            same = [Path("tulle", lab_pod("a")[0], *lab_pod("b")), Path("hand", hand["a1"][0], *hand["a2"]), veth]
            out["same_node"] = measure(same, seconds, rounds, pings)
        return out
    finally:
        servers.stop()
        cluster.down(lab)
        sandbox.close()


def run(sandbox: core.Sandbox, backends: tuple[str, ...], seconds: float = 3, rounds: int = 3,
        pings: int = 300, lab_prefix: str = "bt") -> dict:
    """Same-node paths are measured once per pod wiring (the first bridged backend, and bgp)."""
    for backend in backends:
        hand_path(backend)            # refuse an unknown backend before any lab comes up
    out = {"seconds": seconds, "rounds": rounds, "backends": {}}
    seen: set[str] = set()
    for backend in backends:
        lab = f"{lab_prefix}{backend.replace('-', '')[:6]}"
        wiring = pod_wiring(backend)
        out["backends"][backend] = run_backend(sandbox, backend, lab, seconds, rounds, pings,
                                               same_node=wiring not in seen)
        seen.add(wiring)
    return out
