"""The `tulle` command."""

from __future__ import annotations

import argparse
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


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="demonstrations in a sandbox netns").add_subparsers(dest="cmd", required=True)
    p = demo.add_parser("podman", help="podman containers on tulle's CNI plugins, in a sandbox netns")
    p.add_argument("--plugin-dir", help="CNI plugin dir to use (default: tulle's, installed in a temp dir)")
    p.set_defaults(func=_demo_podman)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tulle", description="tulle: a container network fabric")
    sub = parser.add_subparsers(dest="group", required=True)

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
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TulleError as exc:
        print(f"tulle: {exc.msg}", file=sys.stderr)
        if getattr(exc, "code", None) is not None:
            print(f"tulle: CNI error code {exc.code}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
