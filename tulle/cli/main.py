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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tulle", description="tulle: a container network fabric")
    sub = parser.add_subparsers(dest="group", required=True)

    cni = sub.add_parser("cni", help="CNI plugins").add_subparsers(dest="cmd", required=True)
    p = cni.add_parser("install", help="write one executable per plugin type")
    p.add_argument("--bin-dir", required=True, help="directory for the plugin executables")
    p.add_argument("--conf-dir", help="also write an example 10-tulle.conflist here")
    p.set_defaults(func=_cni_install)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TulleError as exc:
        print(f"tulle: {exc.msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
