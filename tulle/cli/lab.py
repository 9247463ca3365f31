"""`tulle lab …`: a whole cluster from network namespaces on this machine.

Each subcommand is a small function over tulle.lab; `add_parser` registers them
(called from tulle.cli.main.build_parser).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Callable

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


def kubectl_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """API refusals in kubectl's words (`Error from server (NotFound): pods "x" not found`)."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from tulle.cluster.errors import ApiError, BadRequest

        try:
            return fn(args)
        except BadRequest as exc:
            print(f"error: {exc.msg}", file=sys.stderr)
        except ApiError as exc:
            print(f"Error from server ({exc.reason}): {exc.msg}", file=sys.stderr)
        return 1
    return run


@kubectl_errors
def _pod_add(args: argparse.Namespace) -> int:
    from tulle.lab import pods, podspec

    ports = [podspec.parse_port(p) for p in args.port or []]
    p = pods.add(args.lab, args.node, args.pod, args.namespace, podspec.parse_labels(args.labels), ports)
    print(f"pod {args.namespace}/{args.pod} on {p.node}: {p.ip}")
    return 0


@kubectl_errors
def _pod_del(args: argparse.Namespace) -> int:
    from tulle.lab import pods, podspec

    namespace, name = podspec.split_ref(args.pod, args.namespace)
    pods.delete(args.lab, name, namespace, grace_period=args.grace_period)
    print(f'pod "{name}" deleted')
    return 0


def _gc(args: argparse.Namespace) -> int:
    """Exit 0: everything collected; 1: some step failed (each is named)."""
    from tulle.lab import gc

    report = gc.collect(args.lab)
    for line in report.done:
        print(line)
    for line in report.failed:
        print(f"tulle: gc: {line}", file=sys.stderr)
    return 1 if report.failed else 0


def _chaos(args: argparse.Namespace) -> int:
    """Exit 0: every invariant held; 1: something broke (each failure is printed)."""
    from tulle.lab import chaos

    log = (lambda line: None) if args.json else print
    report = chaos.run(args.lab, args.ops, args.seed, check_every=args.check_every, log=log, verbose=args.verbose)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        counts = ", ".join(f"{k} {n}" for k, n in sorted(report.ops.items()))
        print(f"{sum(report.ops.values())} operations in {report.seconds:.0f} s ({counts})")
        for line in report.failures:
            print(f"tulle: chaos: {line}", file=sys.stderr)
        print("every invariant held" if report.ok else f"{len(report.failures)} failures")
    return 0 if report.ok else 1


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
    return pods.exec_in(args.lab, args.pod, cmd, args.namespace)


def _probe(args: argparse.Namespace) -> int:
    """Exit 0: answered; 1: no answer; 2: bad input (unknown pod or service, bad port)."""
    from tulle.cluster.errors import ApiError
    from tulle.errors import TulleError
    from tulle.lab import probe
    from tulle.lab.session import open_session

    try:
        target = probe.parse_target(args.target)
        with open_session(args.lab, lock=False) as s:
            route = probe.resolve(s, args.source, target, args.namespace)
            owners = {p.ip: k for k, p in s.st.pods.items()}
    except ApiError as exc:
        print(f"Error from server ({exc.reason}): {exc.msg}", file=sys.stderr)
        return 2
    except TulleError as exc:
        print(f"tulle: {exc.msg}", file=sys.stderr)
        return 2
    result = probe.run(route, args.target, args.timeout, owners)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.text(), file=sys.stdout if result.answered else sys.stderr)
    return 0 if result.answered else 1


def _emit(outcome) -> int:
    """Print an apply/delete outcome as kubectl does: results on stdout, the rest on stderr."""
    for line in outcome.err:
        print(line, file=sys.stderr)
    for line in outcome.out:
        print(line)
    return 1 if outcome.failed else 0


@kubectl_errors
def _apply(args: argparse.Namespace) -> int:
    from tulle.lab import apply
    from tulle.lab.session import open_session

    objs = apply.read(args.filename)          # stdin is read before the lab is locked
    with open_session(args.lab) as s:
        return _emit(apply.apply(s, objs, apply.source_name(args.filename)))


@kubectl_errors
def _delete(args: argparse.Namespace) -> int:
    from tulle.errors import ConfigError
    from tulle.lab import apply
    from tulle.lab.session import open_session

    if bool(args.filename) == bool(args.what):
        raise ConfigError("delete what? tulle lab delete -f FILE, or tulle lab delete KIND NAME [-n NS]")
    objs = apply.read(args.filename) if args.filename else []
    if not args.filename and len(args.what) < 2:
        raise ConfigError(f"delete {args.what[0]}: which one? tulle lab delete {args.what[0]} NAME [-n NS]")
    with open_session(args.lab) as s:
        if args.filename:
            return _emit(apply.delete_objects(s, objs, apply.source_name(args.filename)))
        return _emit(apply.delete_named(s, args.what[0], args.what[1:], args.namespace))


@kubectl_errors
def _get(args: argparse.Namespace) -> int:
    from tulle.lab import get
    from tulle.lab.session import open_session

    with open_session(args.lab, lock=False) as s:
        answer = get.get(s.client, args.kind, args.name, args.namespace, args.all_namespaces, args.selector,
                         args.output)
    if answer.stderr:
        print(answer.stderr, file=sys.stderr)
    if answer.stdout:
        print(answer.stdout)
    return 0


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


def _fault(args: argparse.Namespace) -> int:
    from tulle.lab import faults

    if args.fault == "store":
        print(faults.store(args.lab, args.action))
    elif args.fault == "partition":
        print(faults.partition(args.lab, args.node))
    elif args.fault == "heal":
        print(faults.heal(args.lab, args.node))
    elif args.fault == "loss":
        print(faults.loss(args.lab, args.node, args.percent))
    elif args.fault in faults.DAEMONS:
        print(faults.daemon(args.lab, args.node, args.fault, args.action))
    elif args.fault == "clear":
        print(faults.clear(args.lab))
    else:
        for line in faults.active(args.lab) or ["no network fault"]:
            print(line)
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


def _namespace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default="default", help="the namespace (default: default)")


def _cmd_up(cmds) -> None:
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


def _cmd_down(cmds) -> None:
    p = cmds.add_parser("down", help="remove the lab (a missing lab is fine)")
    _lab_arg(p)
    p.set_defaults(func=_down)


def _cmd_status(cmds) -> None:
    p = cmds.add_parser("status", help="nodes, subnets (from the store), agents, pods")
    _lab_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)


def _cmd_pod(cmds) -> None:
    pod = cmds.add_parser("pod", help="add or delete a pod").add_subparsers(dest="pod_cmd", required=True)
    p = pod.add_parser("add", help="a Pod on NODE: its netns wired by the installed CNI executables, a server "
                                   "answering on each --port")
    _lab_arg(p)
    _namespace_arg(p)
    p.add_argument("--labels", help="the pod's labels: key=value[,key=value...]")
    p.add_argument("--port", action="append", metavar="[NAME:]PORT[/tcp|udp]",
                   help="a container port its server answers on (repeatable), e.g. http:8080/tcp")
    p.add_argument("node")
    p.add_argument("pod")
    p.set_defaults(func=_pod_add)
    p = pod.add_parser("del", help="stop the pod's servers, CNI DEL, remove its netns and its Pod object")
    _lab_arg(p)
    _namespace_arg(p)
    p.add_argument("pod", help="NAME or NAMESPACE/NAME")
    p.add_argument("--grace-period", type=float, default=0, metavar="SECONDS",
                   help="first mark the pod terminating and let it serve this long (default 0: at once)")
    p.set_defaults(func=_pod_del)


def _cmd_gc(cmds) -> None:
    p = cmds.add_parser("gc", help="undo half-made pods (an add or del that was killed) and reclaim what no pod "
                                   "owns: netns, servers, then CNI GC on every node (leases, rules)")
    _lab_arg(p)
    p.set_defaults(func=_gc)


def _cmd_chaos(cmds) -> None:
    p = cmds.add_parser("chaos", help="random pod adds, dels, interrupted adds, agent restarts, store outages "
                                      "and bursts, then invariants: every pod reachable from every node, leases = "
                                      "veths = pods, nothing left once its pods are deleted (exit 1 if one broke)")
    _lab_arg(p)
    p.add_argument("--ops", type=int, default=100, help="operations to run (default 100)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed, the same run (default 1)")
    p.add_argument("--check-every", type=int, default=0, metavar="N",
                   help="also check the invariants every N operations (default: only at the end)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each operation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_chaos)


def _cmd_pods(cmds) -> None:
    p = cmds.add_parser("pods", help="list pods")
    _lab_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_pods)


def _cmd_exec(cmds) -> None:
    p = cmds.add_parser("exec", help="run a command inside a pod's netns: tulle lab exec POD -- CMD ...")
    _lab_arg(p)
    _namespace_arg(p)
    p.add_argument("pod", help="NAME or NAMESPACE/NAME")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=_exec)


def _cmd_probe(cmds) -> None:
    p = cmds.add_parser("probe", help="from a pod, connect to an address, pod or service: who answers? "
                                      "(exit 0 answered, 1 no answer, 2 bad input)")
    _lab_arg(p)
    p.add_argument("-n", "--namespace", default=None, help="FROM's namespace (default: default)")
    p.add_argument("source", metavar="FROM", help="the pod to probe from: NAME or NAMESPACE/NAME")
    p.add_argument("target", metavar="TO[:PORT[/PROTO]]",
                   help="an IPv4 address, a pod or a service ([NAMESPACE/]NAME, in FROM's namespace by "
                        "default); PORT a number or a port name; no port: ICMP echo")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer (default 2)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_probe)


def _cmd_apply(cmds) -> None:
    p = cmds.add_parser("apply", help="create or update what manifests describe (kubectl apply): Namespaces, "
                                      "Pods, Deployments, Services, NetworkPolicies, Ingresses, Secrets, ...")
    _lab_arg(p)
    p.add_argument("-f", "--filename", required=True,
                   help="a YAML or JSON manifest (multi-document, List) or a directory of them; - for stdin")
    p.set_defaults(func=_apply)


def _cmd_delete(cmds) -> None:
    p = cmds.add_parser("delete", help="delete what a manifest describes, or KIND NAME...; pods, deployments "
                                       "and namespaces take their pods' netns and servers with them")
    _lab_arg(p)
    p.add_argument("-f", "--filename", help="a manifest; - for stdin")
    _namespace_arg(p)
    p.add_argument("what", nargs="*", metavar="KIND NAME", help="e.g. svc web, deployment web, pod web-1")
    p.set_defaults(func=_delete)


def _cmd_get(cmds) -> None:
    p = cmds.add_parser("get", help="list objects as kubectl does: tulle lab get KIND [NAME] [-n NS|-A] "
                                    "[-l SELECTOR] [-o wide|json|yaml|name]")
    _lab_arg(p)
    p.add_argument("kind", help="pods, svc, deploy, endpointslices, ns, netpol, ing, secrets, leases, ...")
    p.add_argument("name", nargs="?")
    _namespace_arg(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (NAMESPACE column first)")
    p.add_argument("-l", "--selector", help="a label selector, e.g. app=web or 'tier in (a,b)'")
    p.add_argument("-o", "--output", help="wide, json, yaml or name")
    p.set_defaults(func=_get)


def _cmd_bgp(cmds) -> None:
    p = cmds.add_parser("bgp", help="bgp labs: each node's BGP sessions and the routes it learned (from BIRD)")
    _lab_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bgp)


def _cmd_check(cmds) -> None:
    p = cmds.add_parser("check", help="every pod to every other pod, ICMP and TCP")
    _lab_arg(p)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per pair before it counts as failed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_check)


def _cmd_fault(cmds) -> None:
    fault = cmds.add_parser("fault", help="inject a fault (undone by its matching command and by lab down)")
    fsub = fault.add_subparsers(dest="fault", required=True)
    p = fsub.add_parser("store", help="etcd frozen (stop), killed (kill) or back (start); SQLite: write lock held")
    _lab_arg(p)
    p.add_argument("action", choices=("stop", "kill", "start"))
    p.set_defaults(func=_fault)
    for name, what in (("partition", "the node's fabric port drops every frame"),
                       ("heal", "remove the node's network fault")):
        p = fsub.add_parser(name, help=what)
        _lab_arg(p)
        p.add_argument("node")
        p.set_defaults(func=_fault)
    p = fsub.add_parser("loss", help="the node's fabric port drops PERCENT %% of frames each way (no netem here: "
                                     "no delay fault)")
    _lab_arg(p)
    p.add_argument("node")
    p.add_argument("percent", type=int)
    p.set_defaults(func=_fault)
    for name, what in (("bird", "a bgp node's BIRD frozen (stop), killed (kill: its agent starts another) or "
                                "resumed (start)"),
                       ("forwarder", "a udp node's forwarder frozen, killed or resumed, as for bird")):
        p = fsub.add_parser(name, help=what)
        _lab_arg(p)
        p.add_argument("node")
        p.add_argument("action", choices=("stop", "kill", "start"))
        p.set_defaults(func=_fault)
    for name, what in (("clear", "remove every network fault"), ("list", "the network faults in place")):
        p = fsub.add_parser(name, help=what)
        _lab_arg(p)
        p.set_defaults(func=_fault)


def _cmd_node(cmds) -> None:
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


COMMANDS = {
    "up": _cmd_up,
    "down": _cmd_down,
    "status": _cmd_status,
    "pod": _cmd_pod,
    "gc": _cmd_gc,
    "chaos": _cmd_chaos,
    "pods": _cmd_pods,
    "exec": _cmd_exec,
    "probe": _cmd_probe,
    "apply": _cmd_apply,
    "delete": _cmd_delete,
    "get": _cmd_get,
    "bgp": _cmd_bgp,
    "check": _cmd_check,
    "fault": _cmd_fault,
    "node": _cmd_node,
}


def add_parser(sub, rest: list[str] | None = None) -> None:
    """The `lab` group; with `rest` (the arguments after `lab`) naming a command, only that
    command's parser is built — argparse takes ~3 ms a parser, and fifty `pod add`s at once
    should not each build thirty."""
    lab = sub.add_parser("lab", help="a multi-node cluster from network namespaces on this machine")
    cmds = lab.add_subparsers(dest="cmd", required=True)
    only = rest[0] if rest and rest[0] in COMMANDS else None
    for name, add in COMMANDS.items():
        if only is None or name == only:
            add(cmds)
