"""The `tulle` command."""

from __future__ import annotations

import argparse
import socket
import sys

from tulle.errors import TulleError


def _cni_install(args: argparse.Namespace) -> int:
    from tulle.cni.install import install

    for path in install(args.bin_dir, args.conf_dir):
        print(path)
    return 0


def _cni_run(args: argparse.Namespace) -> int:
    """cnitool-style: run a .conflist's plugins for one attachment, as a runtime would."""
    import json
    import os

    from tulle.cni.runtime import Attachment, Runtime

    with open(args.conflist) as f:
        conflist = json.load(f)
    caps = {}
    for item in args.cap or []:
        key, _, value = item.partition("=")
        caps[key] = json.loads(value)
    rt = Runtime(args.bin_dir.split(":"), cache_dir=args.cache_dir)
    netns = args.netns if args.netns.startswith("/") else os.path.join("/run/netns", args.netns)
    att = Attachment(container_id=args.container_id, netns=netns, ifname=args.ifname,
                     args=[tuple(a.split("=", 1)) for a in (args.args.split(";") if args.args else [])],
                     capability_args=caps)
    if args.cmd == "add":
        print(json.dumps(rt.add(conflist, att), indent=2))
    elif args.cmd == "check":
        rt.check(conflist, att)
    else:
        rt.delete(conflist, att)
    return 0


def _demo_podman(args: argparse.Namespace) -> int:
    from tulle.demo.run import run_demo

    return run_demo(args.plugin_dir)


def _add_demo(sub, rest: list[str]) -> None:
    demo = sub.add_parser("demo", help="demonstrations in a sandbox netns").add_subparsers(dest="cmd", required=True)
    p = demo.add_parser("podman", help="podman containers on tulle's CNI plugins, in a sandbox netns")
    p.add_argument("--plugin-dir", help="CNI plugin dir to use (default: tulle's, installed in a temp dir)")
    p.set_defaults(func=_demo_podman)
    from tulle.cli.lab import add_demo_parser

    add_demo_parser(demo)


def _agent_run(args: argparse.Namespace) -> int:
    """The node agent, in the calling process's netns, until SIGTERM."""
    from tulle.agent.daemon import DEFAULT_RECONCILE_INTERVAL, Options, run

    return run(Options(
        node=args.node, store=args.store, prefix=args.prefix, public_ip=args.public_ip, iface=args.iface,
        socket=args.socket, subnet_file=args.subnet_file, state_dir=args.state_dir,
        metrics_addr=args.metrics_addr, backend=args.backend, ip_masq=not args.no_ip_masq,
        reconcile_interval=DEFAULT_RECONCILE_INTERVAL if args.reconcile_interval is None else args.reconcile_interval,
        lease_ttl=args.lease_ttl, renew_margin=args.renew_margin, registry_prefix=args.registry_prefix,
        leader_lease=args.leader_lease_duration))


def _agent_init_network(args: argparse.Namespace) -> int:
    """Write the cluster network config (`<prefix>/config`) the agents read."""
    from tulle.agent.daemon import open_node_store
    from tulle.cluster import netconfig

    cfg = netconfig.build(args.network, subnet_len=args.subnet_len, backend=args.backend, vni=args.vni,
                          port=args.port, direct_routing=args.direct_routing,
                          subnet_min=args.subnet_min, subnet_max=args.subnet_max,
                          service_network=args.service_network, node_port_range=args.node_port_range)
    store = open_node_store(args.store)
    try:
        netconfig.write_config(store, args.prefix, cfg)
    finally:
        store.close()
    print(cfg.to_json())
    return 0


def _store_args(p) -> None:
    """Where the agents' shared state is: the same two options for every agent command."""
    from tulle import node_defaults
    from tulle.cluster.lease import DEFAULT_PREFIX

    p.add_argument("--store", default=node_defaults.STORE,
                   help="sqlite:///PATH or etcd://HOST:PORT[,HOST:PORT] (default %(default)s)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="store key prefix (default %(default)s)")


def _add_agent(sub, rest: list[str]) -> None:
    from tulle import node_defaults

    agent = sub.add_parser("agent", help="the node agent").add_subparsers(dest="cmd", required=True)
    p = agent.add_parser("run", help="run the node agent in this network namespace (until SIGTERM)")
    p.add_argument("--node", default=socket.gethostname(), help="this node's name (default: the hostname)")
    _store_args(p)
    p.add_argument("--public-ip", help="the address other nodes reach this node at")
    p.add_argument("--iface", help="the underlay device (default: the one carrying --public-ip)")
    p.add_argument("--socket", default=node_defaults.AGENT_SOCKET, help="CNI socket (default %(default)s)")
    p.add_argument("--subnet-file", default=node_defaults.SUBNET_ENV, help="default %(default)s")
    p.add_argument("--state-dir", default=node_defaults.AGENT_STATE_DIR, help="default %(default)s")
    p.add_argument("--metrics-addr", help="HOST:PORT for /metrics and /healthz (default: off)")
    p.add_argument("--backend", help="must match the network config's Backend.Type when given")
    p.add_argument("--no-ip-masq", action="store_true", help="do not masquerade traffic leaving the cluster")
    p.add_argument("--reconcile-interval", type=float, metavar="SECONDS",
                   help="full converge (repairs drift) at least this often (default 30)")
    ttl, margin = node_defaults.LEASE_TTL, node_defaults.LEASE_RENEW_MARGIN
    p.add_argument("--lease-ttl", type=int, default=ttl, metavar="SECONDS",
                   help=f"subnet lease TTL (default {ttl / 3600:g} h, as Flannel)")
    p.add_argument("--renew-margin", type=float, default=margin, metavar="SECONDS",
                   help=f"renew this long before the lease expires (default {margin / 3600:g} h)")
    p.add_argument("--registry-prefix", default=node_defaults.REGISTRY_PREFIX,
                   help="store key prefix of the API objects (default %(default)s)")
    p.add_argument("--leader-lease-duration", type=int, default=node_defaults.LEADER_LEASE, metavar="SECONDS",
                   help="how long a dead leader holds the cluster-wide controllers (default %(default)s, as "
                        "kube-controller-manager)")
    p.set_defaults(func=_agent_run)
    p = agent.add_parser("init-network", help="write the network config the agents read")
    _store_args(p)
    p.add_argument("--network", required=True, help="the cluster (pod) CIDR, e.g. 10.244.0.0/16")
    p.add_argument("--subnet-len", type=int, help="prefix length of each node's subnet (default 24)")
    p.add_argument("--subnet-min", help="first subnet to hand out (default: the network's second)")
    p.add_argument("--subnet-max", help="last subnet to hand out (default: the network's last)")
    p.add_argument("--backend", default="vxlan", help="host-gw, vxlan, udp or bgp (default %(default)s)")
    p.add_argument("--vni", type=int, help="VXLAN network identifier (default 1)")
    p.add_argument("--port", type=int, help="UDP port (default: vxlan 8472, udp 8285)")
    p.add_argument("--direct-routing", action="store_true", help="vxlan: plain routes to same-segment peers")
    p.add_argument("--service-network", help="the ClusterIP range (default 10.96.0.0/12)")
    p.add_argument("--node-port-range", help="NodePorts, FIRST-LAST (default 30000-32767)")
    p.set_defaults(func=_agent_init_network)


def _add_lab(sub, rest: list[str]) -> None:
    from tulle.cli.lab import add_parser

    add_parser(sub, rest)


def _add_cni(sub, rest: list[str]) -> None:
    cni = sub.add_parser("cni", help="CNI plugins").add_subparsers(dest="cmd", required=True)
    p = cni.add_parser("install", help="write one executable per plugin type")
    p.add_argument("--bin-dir", required=True, help="directory for the plugin executables")
    p.add_argument("--conf-dir", help="also write an example 10-tulle.conflist here")
    p.set_defaults(func=_cni_install)
    for verb in ("add", "check", "del"):
        p = cni.add_parser(verb, help=f"run {verb.upper()} of a conflist for one attachment (like cnitool)")
        p.add_argument("--conflist", required=True, help="path of the .conflist")
        p.add_argument("--netns", required=True, help="pod netns: a name under /run/netns or a path")
        p.add_argument("--container-id", required=True)
        p.add_argument("--ifname", default="eth0")
        p.add_argument("--args", help="CNI_ARGS, e.g. IgnoreUnknown=1;IP=10.88.0.9")
        p.add_argument("--cap", action="append", metavar="NAME=JSON",
                       help='a runtimeConfig capability, e.g. portMappings=\'[{"hostPort":8080,...}]\'')
        p.add_argument("--bin-dir", default="/opt/cni/bin", help="plugin directories (CNI_PATH), ':'-separated")
        p.add_argument("--cache-dir", default="/var/lib/tulle/cni-results",
                       help="where ADD results are kept for CHECK and DEL")
        p.set_defaults(func=_cni_run)


GROUPS = {"cni": _add_cni, "demo": _add_demo, "lab": _add_lab, "agent": _add_agent}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command tree, or, when `argv` names a group (and a command in it), just the
    parsers it needs: a `tulle lab pod add` among fifty at once should not build all ~50."""
    parser = argparse.ArgumentParser(prog="tulle", description="tulle: a container network fabric")
    sub = parser.add_subparsers(dest="group", required=True)
    only = argv[0] if argv and argv[0] in GROUPS else None     # else: the full tree's usage error
    for name, add in GROUPS.items():
        if only is None or name == only:
            add(sub, argv[1:] if only else [])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except TulleError as exc:
        from tulle.cni.errors import CNIError

        print(f"tulle: {exc.msg}", file=sys.stderr)
        if isinstance(exc, CNIError):
            print(f"tulle: CNI error code {exc.code}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
