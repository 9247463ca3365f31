"""`tulle lab …`: a whole cluster from network namespaces on this machine.

Each subcommand is a small function over tulle.lab; `add_parser` registers them
(called from tulle.cli.main.build_parser).
"""

from __future__ import annotations

import argparse
import json
import sys

from tulle.lab import topology


def _up(args: argparse.Namespace) -> int:
    from tulle.lab import cluster, report

    cluster.up(args.lab, args.nodes, args.segments, args.backend, args.store, args.network, args.subnet_len,
               timeout=args.timeout, route_reflectors=args.route_reflectors, tor_bgp=args.tor_bgp, asn=args.asn)
    status = cluster.status(args.lab)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        report.show(report.nodes_table(status))
        print(f"lab {args.lab} is up. Next: tulle lab pod add --lab {args.lab} n1 a; "
              f"tulle lab status --lab {args.lab}; tulle lab down --lab {args.lab}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from tulle.lab import cluster

    if cluster.down(args.lab):
        print(f"lab {args.lab} removed")
    else:
        print(f"lab {args.lab} does not exist: nothing to remove")
    return 0


def _status(args: argparse.Namespace) -> int:
    from tulle.lab import cluster, report

    status = cluster.status(args.lab)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        report.show(report.nodes_table(status))
        if status.get("store_error"):
            print(f"store: {status['store_error']}", file=sys.stderr)
    return 0


def _pod_add(args: argparse.Namespace) -> int:
    from tulle.lab import pods

    p = pods.add(args.lab, args.node, args.pod)
    print(f"pod {args.pod} on {p.node}: {p.ip}")
    return 0


def _pod_del(args: argparse.Namespace) -> int:
    from tulle.lab import pods

    pods.delete(args.lab, args.pod)
    print(f"pod {args.pod} removed")
    return 0


def _pods(args: argparse.Namespace) -> int:
    from tulle.lab import cluster, report, state

    listed = cluster.pod_list(state.load(args.lab))
    if args.json:
        print(json.dumps(listed, indent=2))
    else:
        report.show(report.pods_table(listed))
    return 0


def _exec(args: argparse.Namespace) -> int:
    from tulle.lab import pods

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return pods.exec_in(args.lab, args.pod, cmd)


def _bgp(args: argparse.Namespace) -> int:
    from tulle.lab import bgp, report

    view = bgp.status(args.lab)
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        report.show(*bgp.tables(view))
    return 0


def _check(args: argparse.Namespace) -> int:
    from tulle.lab import checks, report, state

    results = checks.all_pairs(state.load(args.lab), timeout=args.timeout)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        report.show(report.reach_table(results))
    return 0 if all(r.ok for r in results) else 1


def _node_del(args: argparse.Namespace) -> int:
    from tulle.lab import cluster

    cluster.node_del(args.lab, args.node)
    print(f"node {args.node} removed from lab {args.lab}")
    return 0


def _node_add(args: argparse.Namespace) -> int:
    from tulle.lab import cluster

    name = cluster.node_add(args.lab, timeout=args.timeout)
    print(f"node {name} joined lab {args.lab}")
    return 0


def _node_restart(args: argparse.Namespace) -> int:
    from tulle.lab import cluster

    pid = cluster.agent_restart(args.lab, args.node, kill=args.kill)
    print(f"agent of {args.node} restarted: pid {pid}")
    return 0


def _demo_lab(args: argparse.Namespace) -> int:
    from tulle.lab.demo import run_demo

    return run_demo(args.lab, args.nodes, args.backend, args.store, args.segments, down_after=args.down)


def add_demo_parser(demo) -> None:
    """`tulle demo lab` (the README's main command), under the `demo` group of the CLI."""
    p = demo.add_parser("lab", help="a 3-node lab: pods on every node reach each other (left running)")
    p.add_argument("--lab", default="demo", help="lab name (default: demo)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--backend", default="vxlan", help=f"one of {', '.join(topology.BACKENDS)}")
    p.add_argument("--store", default="sqlite", help="sqlite or etcd")
    p.add_argument("--segments", type=int, default=1)
    p.add_argument("--down", action="store_true", help="tear the lab down at the end")
    p.set_defaults(func=_demo_lab)


def _lab_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lab", default="lab", help="lab name (default: lab)")


def add_parser(sub) -> None:
    lab = sub.add_parser("lab", help="a multi-node cluster from network namespaces on this machine")
    cmds = lab.add_subparsers(dest="cmd", required=True)

    p = cmds.add_parser("up", help="create fabric, nodes and agents; wait until every node has its subnet")
    _lab_arg(p)
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--segments", type=int, default=1, help="L2 segments joined by a router (1 or 2)")
    p.add_argument("--backend", default="vxlan", help=f"one of {', '.join(topology.BACKENDS)} (default vxlan)")
    p.add_argument("--store", default="sqlite", help="sqlite (a file in the lab dir) or etcd (in the fabric)")
    p.add_argument("--network", default=str(topology.DEFAULT_NETWORK), help="pod network (default 10.244.0.0/16)")
    p.add_argument("--subnet-len", type=int, default=topology.DEFAULT_SUBNET_LEN, help="node subnet length")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the agents")
    p.add_argument("--route-reflectors", type=int, default=0, metavar="N",
                   help="bgp: the first N nodes are route reflectors (default 0: node-to-node mesh)")
    p.add_argument("--tor-bgp", action="store_true",
                   help="bgp, with --segments 2: the router runs BIRD as a top-of-rack peer (AS "
                        f"{topology.TOR_ASN}), so pods route natively across segments (no VXLAN)")
    p.add_argument("--asn", type=int, default=None,
                   help=f"bgp: the cluster's AS number (default {topology.DEFAULT_ASN})")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_up)

    p = cmds.add_parser("down", help="remove the lab (a missing lab is fine)")
    _lab_arg(p)
    p.set_defaults(func=_down)

    p = cmds.add_parser("status", help="nodes, subnets (from the store), agents, pods")
    _lab_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    pod = cmds.add_parser("pod", help="add or delete a pod").add_subparsers(dest="pod_cmd", required=True)
    p = pod.add_parser("add", help="a pod netns on NODE, wired by the installed CNI executables")
    _lab_arg(p)
    p.add_argument("node")
    p.add_argument("pod")
    p.set_defaults(func=_pod_add)
    p = pod.add_parser("del", help="CNI DEL and remove the pod netns")
    _lab_arg(p)
    p.add_argument("pod")
    p.set_defaults(func=_pod_del)

    p = cmds.add_parser("pods", help="list pods")
    _lab_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_pods)

    p = cmds.add_parser("exec", help="run a command inside a pod's netns: tulle lab exec POD -- CMD ...")
    _lab_arg(p)
    p.add_argument("pod")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=_exec)

    p = cmds.add_parser("bgp", help="bgp labs: each node's BGP sessions and the routes it learned (from BIRD)")
    _lab_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bgp)

    p = cmds.add_parser("check", help="every pod to every other pod, ICMP and TCP")
    _lab_arg(p)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per pair before it counts as failed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_check)

    node = cmds.add_parser("node", help="node operations").add_subparsers(dest="node_cmd", required=True)
    p = node.add_parser("add", help="a node joins (the lowest free n<k>); waits until every node routes to it")
    _lab_arg(p)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the agents")
    p.set_defaults(func=_node_add)
    p = node.add_parser("del", help="a node leaves: pods, agent, lease and netns go")
    _lab_arg(p)
    p.add_argument("node")
    p.set_defaults(func=_node_del)
    p = node.add_parser("restart", help="restart a node's agent (--kill: SIGKILL first, as a crash)")
    _lab_arg(p)
    p.add_argument("node")
    p.add_argument("--kill", action="store_true")
    p.set_defaults(func=_node_restart)
