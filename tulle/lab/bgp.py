"""The lab side of the BGP routed mode (`tulle lab up --backend bgp`).

What `--backend bgp` changes in a lab:
  * the network config's Backend gets ASNumber, RouteReflectors (the first N nodes
    with --route-reflectors N) and, with --tor-bgp, a ToR (AS 64513, one peer per
    segment: the router's leg on it);
  * each node's conflist is `tulle-routed` + `tulle-blocks` IPAM (pod /32s from the
    store's blocks), then portmap, instead of the Flannel-style `tulle` plugin;
  * readiness is "lease held and every BGP session this node should have is
    Established" — bgp nodes have no per-lease routes to wait for. The sessions a
    node should have are computed with the agent's own pure peer planner, so the
    lab and the agents agree on mesh / reflector / ToR topologies by construction;
  * with --tor-bgp, BIRD runs in the router netns as the top-of-rack peer (eBGP to
    every node, import/export all, routes into the router's kernel). Its files are
    in `<state>/router/`, its argv carries `<state>/router/bird.conf`, so `lab down`
    finds it by the state-dir path like every other lab process.

Status comes from each BIRD's control socket (`Bird(<state>/<node>)`): a socket is a
file, so `birdc` reaches a node's BIRD without entering its netns.
"""

from __future__ import annotations

import ipaddress
import os
import time
from typing import Any

from tulle import procs
from tulle.agent.backends.bgp import peers as bgp_peers
from tulle.agent.backends.bgp.bird import BIRD, Bird, check_config
from tulle.cluster.blocks import local_prefixes, read_blocks
from tulle.cluster.lease import DEFAULT_PREFIX
from tulle.errors import TulleError
from tulle.kernel import netns
from tulle.lab import nodes, state
from tulle.lab.topology import TOR_ASN, Node, Plan
from tulle.store import Store

ROUTER_DIR = "router"
ROUTED_MTU = 1500            # the lab's underlay MTU: native routing adds no header
CROSS_SUBNET_MTU = 1450      # CrossSubnet may carry a pod packet in VXLAN (50 bytes)
TOR_START_TIMEOUT = 5.0


# --- configuration -------------------------------------------------------------------

def reflector_names(plan: Plan) -> list[str]:
    """The route reflectors: the first N node names (names are stable: n1..nN)."""
    return [f"n{k}" for k in range(1, plan.route_reflectors + 1)]


def tor_peers(plan: Plan) -> dict[str, str]:
    """Segment CIDR → the router's leg on it (the ToR address a node on it peers with)."""
    return {str(s.cidr): str(s.router_ip.ip) for s in plan.segments}


def netconfig_extra(plan: Plan) -> dict[str, Any]:
    """The Backend fields `netconfig.build(..., extra=)` needs for this plan ({} unless bgp)."""
    if plan.backend != "bgp":
        return {}
    extra: dict[str, Any] = {"ASNumber": plan.asn}
    if plan.route_reflectors:
        extra["RouteReflectors"] = reflector_names(plan)
    if plan.tor_bgp:
        extra["ToR"] = {"ASNumber": TOR_ASN, "Peers": tor_peers(plan)}
    return extra


def conflist(plan: Plan, node: Node) -> dict[str, Any]:
    """A bgp node's net.d: routed wiring with block IPAM from the store (the URL as a node
    reaches it), then portmap. The agent socket is the node's, as for the other backends."""
    lab, name = plan.lab, node.name
    return {
        "cniVersion": nodes.CNI_VERSION,
        "name": nodes.NETWORK_NAME,
        "plugins": [
            {"type": "tulle-routed", "mtu": ROUTED_MTU if plan.tor_bgp else CROSS_SUBNET_MTU,
             "agentSocket": nodes.agent_socket(lab, name),
             "ipam": {"type": "tulle-blocks", "store": plan.store_url(), "node": name}},
            nodes.portmap(lab, name),
        ],
    }


def expected_peers(plan: Plan, node: Node) -> dict[str, str]:
    """Protocol name → peer address of the sessions `node` should have once converged."""
    me = bgp_peers.NodeRef(node.name, node.ip.ip)
    others = [bgp_peers.NodeRef(n.name, n.ip.ip) for n in plan.nodes if n.name != node.name]
    tor = None
    if plan.tor_bgp:
        tor = bgp_peers.Tor(TOR_ASN, tuple((ipaddress.IPv4Network(c), ipaddress.IPv4Address(a))
                                           for c, a in tor_peers(plan).items()))
    peer_plan = bgp_peers.plan(me, others, asn=plan.asn, reflectors=frozenset(reflector_names(plan)),
                               connected=[node.ip.network], tor=tor)
    return {p.name: str(p.address) for p in peer_plan.peers}


# --- readiness ------------------------------------------------------------------------

def node_bird(lab: str, node: str) -> Bird:
    """The BIRD a node's agent runs: its files are in the agent's --state-dir."""
    return Bird(nodes.node_dir(lab, node))


def missing_sessions(plan: Plan) -> list[str]:
    """What keeps the lab from being ready: BIRDs not answering, sessions not Established."""
    missing = []
    for node in plan.nodes:
        try:
            protos = {p.name: p for p in node_bird(plan.lab, node.name).protocols()}
        except TulleError:
            missing.append(f"{node.name}: BIRD not answering yet")
            continue
        for name, addr in expected_peers(plan, node).items():
            p = protos.get(name)
            if p is None:
                missing.append(f"{node.name}: no BGP session {name} ({addr}) yet")
            elif not p.established:
                missing.append(f"{node.name}: BGP session {name} ({addr}) is {p.info or p.state}")
    return missing


# --- the top-of-rack BIRD in the router netns ------------------------------------------------

def tor_dir(lab: str) -> str:
    return state.path(lab, ROUTER_DIR)


def tor_bird(lab: str) -> Bird:
    return Bird(tor_dir(lab))


def tor_config(plan: Plan) -> str:
    """eBGP (AS 64513) to every node, everything imported and exported, routes into the
    router's kernel (so it forwards between the segments' pods natively)."""
    router_id = plan.segments[0].router_ip.ip
    lines = [
        "# Generated by `tulle lab up --tor-bgp`: the lab's top-of-rack router.",
        f"router id {router_id};",
        "protocol device { scan time 2; }",
        "protocol kernel { scan time 2; ipv4 { export all; }; }",
        "template bgp tulle_node {",
        f"  local as {TOR_ASN};",
        "  connect delay time 1;",
        "  connect retry time 2;",
        "  error wait time 1, 10;",
        "  hold time 9;",
        "  keepalive time 3;",
        "  ipv4 { import all; export all; };",
        "}",
    ]
    for node in plan.nodes:
        lines.append(f"protocol bgp {node.name} from tulle_node {{ neighbor {node.ip.ip} as {plan.asn}; }}")
    return "\n".join(lines) + "\n"


def start_tor(plan: Plan) -> int:
    """Start BIRD in the router netns (detached, like the agents); returns its pid once it answers."""
    if not plan.tor_bgp or plan.router_netns is None:
        raise TulleError("--tor-bgp needs the router netns (--segments 2)")
    bird = tor_bird(plan.lab)
    os.makedirs(bird.dir, exist_ok=True)
    check_config(tor_config(plan), f"{bird.conf}.new")
    os.replace(f"{bird.conf}.new", bird.conf)
    pid = procs.spawn([BIRD, "-f", "-c", bird.conf, "-s", bird.ctl, "-P", bird.pidfile], bird.logfile,
                      netns_path=netns.path_of(plan.router_netns))
    deadline = time.monotonic() + TOR_START_TIMEOUT
    while True:
        if not procs.alive(pid):
            raise TulleError(f"the ToR BIRD exited at start; see {bird.logfile}:\n{_tail(bird.logfile)}")
        try:
            bird.birdc("show", "status", timeout=2.0)
            return pid
        except TulleError:
            if time.monotonic() > deadline:
                stop_tor(plan.lab, pid)
                raise TulleError(f"the ToR BIRD does not answer on {bird.ctl}; see {bird.logfile}") from None
            time.sleep(0.05)


def refresh_tor(plan: Plan) -> bool:
    """After a node joins or leaves: the ToR BIRD gets the plan's nodes as its peers, with
    `birdc configure` (sessions of unchanged peers stay up). True when it was reconfigured.
    Never starts BIRD here: that would be in the caller's netns, not the router's."""
    if not plan.tor_bgp:
        return False
    bird = tor_bird(plan.lab)
    text = tor_config(plan)
    if bird.pid() is None or bird.current_config() == text:
        return False
    check_config(text, f"{bird.conf}.new")
    os.replace(f"{bird.conf}.new", bird.conf)
    reply = bird.birdc("configure")
    if "Reconfigured" not in reply and "Reconfiguration" not in reply:
        raise TulleError(f"the ToR BIRD refused its new config: {reply.strip()}")
    return True


def stop_tor(lab: str, pid: int | None = None) -> None:
    """Stop the ToR BIRD by pid (given, or from its pid file), only if its argv is ours."""
    bird = tor_bird(lab)
    pid = pid or bird.pid()
    if pid:
        procs.stop(pid, bird.conf)


def _tail(path: str, n: int = 10) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --- status (`tulle lab bgp`) ------------------------------------------------------------------

def _peer_of(name: str, known: dict[str, str]) -> str:
    """A session's peer: from the planned peers, else the address encoded in the name (Mesh_a_b_c_d)."""
    if name in known:
        return known[name]
    parts = name.split("_")[1:]
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return ".".join(parts)
    return ""


def bird_view(bird: Bird, known: dict[str, str]) -> dict[str, Any]:
    """One BIRD's sessions and what it learned over BGP (an `error` when it does not answer)."""
    out: dict[str, Any] = {"bird_pid": bird.pid(), "sessions": [], "routes": [], "blocks": []}
    try:
        protos = bird.protocols()
        entries = bird.routes()
    except TulleError as exc:
        out["error"] = exc.msg
        return out
    bgp_names = {p.name for p in protos if p.proto == "BGP"}
    for p in protos:
        if p.proto == "BGP":
            out["sessions"].append({"name": p.name, "peer": _peer_of(p.name, known), "state": p.state,
                                    "info": p.info, "established": p.established})
    for r in entries:
        if r.protocol in bgp_names:
            out["routes"].append({"prefix": r.prefix, "via": r.via[0] if r.via else "", "dev": r.dev,
                                  "from": r.protocol, "primary": r.primary})
        elif r.protocol == "tulle_blocks":
            out["blocks"].append(r.prefix)
    return out


def status(lab: str) -> dict[str, Any]:
    """What `tulle lab bgp --json` prints: per node (and the ToR router) sessions and learned routes."""
    st = state.load(lab)
    plan = st.plan()
    if plan.backend != "bgp":
        raise TulleError(f"lab {lab!r} runs backend {plan.backend}, not bgp (tulle lab up --backend bgp)")
    mode = f"route reflectors {', '.join(reflector_names(plan))}" if plan.route_reflectors else "node-to-node mesh"
    out: dict[str, Any] = {"lab": lab, "asn": plan.asn, "mode": mode, "tor_bgp": plan.tor_bgp, "nodes": []}
    for node in plan.nodes:
        view = bird_view(node_bird(lab, node.name), expected_peers(plan, node))
        out["nodes"].append({"name": node.name, "underlay_ip": str(node.ip.ip), **view})
    if plan.tor_bgp:
        known = {n.name: str(n.ip.ip) for n in plan.nodes}
        out["router"] = {"name": "router", "asn": TOR_ASN, **bird_view(tor_bird(lab), known)}
    return out


def session_summary(lab: str, node: str) -> str:
    """`2/2 Established` (or why not) for the `lab status` table: cheap, one birdc call."""
    try:
        sessions = [p for p in node_bird(lab, node).protocols() if p.proto == "BGP"]
    except TulleError:
        return "BIRD down"
    return f"{sum(p.established for p in sessions)}/{len(sessions)} up"


def pod_blocks(plan: Plan, kv: Store) -> dict[str, list[str]]:
    """node → where its pods are (its IPAM blocks, borrowed /32s), read from the store;
    empty unless bgp: there the lease a node holds carries no pods."""
    if plan.backend != "bgp":
        return {}
    blocks, _ = read_blocks(kv, DEFAULT_PREFIX)
    return {n.name: [str(p) for p in local_prefixes(blocks, n.name)] for n in plan.nodes}


def annotate_status(plan: Plan, status_out: dict[str, Any], blocks: dict[str, list[str]]) -> None:
    """Add each node's BGP summary and pod blocks (`pod_blocks`) to `lab status` (bgp labs only)."""
    if plan.backend != "bgp":
        return
    for entry in status_out.get("nodes", []):
        entry["bgp"] = session_summary(plan.lab, entry["name"])
        entry["blocks"] = blocks.get(entry["name"], [])
    status_out["bgp"] = {"asn": plan.asn, "route_reflectors": reflector_names(plan), "tor_bgp": plan.tor_bgp}


def tables(view: dict[str, Any]) -> list[Any]:
    """Rich tables of `status()`: sessions, then learned routes."""
    from rich.table import Table

    title = f"lab {view['lab']}: BGP AS {view['asn']}, {view['mode']}" + (", ToR AS %d" % TOR_ASN
                                                                          if view["tor_bgp"] else "")
    sessions = Table(title=title)
    for col in ("node", "session", "peer", "state"):
        sessions.add_column(col, no_wrap=True)
    routes = Table(title="routes learned over BGP (* = BIRD's best)")
    for col in ("node", "prefix", "via", "from"):
        routes.add_column(col, no_wrap=True)
    who = list(view["nodes"]) + ([view["router"]] if view.get("router") else [])
    for n in who:
        if n.get("error"):
            sessions.add_row(n["name"], "-", "-", f"[red]{n['error']}[/]")
            continue
        for s in n["sessions"] or [{"name": "-", "peer": "-", "info": "no sessions", "established": False}]:
            colour = "green" if s["established"] else "yellow"
            sessions.add_row(n["name"], s["name"], s["peer"], f"[{colour}]{s['info'] or s.get('state', '')}[/]")
        for r in n["routes"]:
            routes.add_row(n["name"], r["prefix"] + (" *" if r["primary"] else ""), r["via"] or r["dev"], r["from"])
    return [sessions, routes]

