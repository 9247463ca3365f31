"""`python -m bench [--quick] [--only cni,churn,throughput,control,objects] [--backends host-gw,vxlan,udp,bgp] …`

Runs the scenarios, writes bench/results/<id>.json and the markdown report
(docs/benchmarks.md for a full run; --report elsewhere). Needs root (it makes
network namespaces); everything it makes is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from bench import core, machine, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = ("cni", "churn", "throughput", "control", "objects")
BACKENDS = ("host-gw", "vxlan", "udp", "bgp")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): a smoke run, not a measurement")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--backends", default=",".join(BACKENDS), help="throughput backends")
    p.add_argument("--cycles", type=int, help="CNI cycles per peer (default 30)")
    p.add_argument("--pods", type=int, help="pods per churn peer and concurrency (default 200)")
    p.add_argument("--seconds", type=float, help="iperf3 -t (default 3)")
    p.add_argument("--rounds", type=int, help="alternated rounds per path (default 5)")
    p.add_argument("--sizes", help="control-plane lab sizes (default 10,50)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="JSON directory")
    p.add_argument("--report", help="markdown path (default: docs/benchmarks.md for a full run, none for --quick)")
    p.add_argument("--notes", default=os.path.join(ROOT, "bench", "notes.md"),
                   help="markdown appended under the goals: the misses' profiles and causes, before/after "
                        "(default bench/notes.md; '' for none)")
    p.add_argument("--render", metavar="JSON", help="only write the report of an earlier run's JSON")
    return p.parse_args(argv)


def sizes(args: argparse.Namespace) -> dict:
    q = args.quick
    return {
        "cycles": args.cycles or (2 if q else 30),
        "pods": args.pods or (4 if q else 200), "churn_rounds": 1 if q else 4,
        "seconds": args.seconds or (1 if q else 3), "rounds": args.rounds or (1 if q else 5),
        "pings": 10 if q else 300,
        "sizes": tuple(int(x) for x in args.sizes.split(",")) if args.sizes else ((3,) if q else (10, 50)),
        "fr_rounds": 1 if q else 5, "joins": 1 if q else 3, "window": 0.5 if q else 5.0,
        "object_rounds": 2 if q else 50, "failovers": 1 if q else 3,
    }


def run(args: argparse.Namespace) -> dict:
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (it creates network namespaces)")
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    z = sizes(args)
    rid = time.strftime("%Y%m%d-%H%M%S")
    result: dict = {"id": rid, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": args.quick,
                    "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in z.items()},
                    "machine": machine.describe(), "errors": {}}
    t0 = time.monotonic()
    prefix = "q" if args.quick else "b"       # lab names: a smoke run never meets a full one
    for name in only:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        t = time.monotonic()
        sandbox = core.Sandbox()
        try:
            if name == "cni":
                from bench import cni_latency
                result["cni"] = cni_latency.run(sandbox, cycles=z["cycles"])
            elif name == "churn":
                from bench import churn
                result["churn"] = churn.run(sandbox, pods=z["pods"], rounds=z["churn_rounds"])
            elif name == "throughput":
                from bench import throughput
                result["throughput"] = throughput.run(sandbox, tuple(b for b in args.backends.split(",") if b),
                                                      seconds=z["seconds"], rounds=z["rounds"], pings=z["pings"],
                                                      lab_prefix=f"{prefix}t")
            elif name == "control":
                from bench import control
                result["control"] = control.run(z["sizes"], rounds=z["fr_rounds"], joins=z["joins"],
                                                window=z["window"], lab_prefix=f"{prefix}c")
            elif name == "objects":
                from bench import objects
                result["objects"] = objects.run(rounds=z["object_rounds"], failovers=z["failovers"],
                                                lab=f"{prefix}o")
        except Exception as exc:   # one failed scenario must not lose the others' figures
            traceback.print_exc()
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
        finally:
            sandbox.close()
        print(f"bench: {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    result["duration_s"] = time.monotonic() - t0
    return result



def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        with open(args.render) as f:
            result = json.load(f)
    else:
        result = run(args)
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{result['id']}{'-quick' if args.quick else ''}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1, default=str)
            f.write("\n")
        print(f"bench: results in {path}", file=sys.stderr)
    quick = result.get("quick", False)
    target = args.report or (None if quick else os.path.join(ROOT, "docs", "benchmarks.md"))
    if target:
        notes = ""
        if args.notes and os.path.exists(args.notes):
            with open(args.notes) as f:
                notes = f.read()
        text = report.render(result, notes)
        if result["errors"]:
            text += "\n## Errors\n\n" + "\n".join(f"- {k}: {v}" for k, v in result["errors"].items()) + "\n"
        with open(target, "w") as f:
            f.write(text)
        print(f"bench: report in {target}", file=sys.stderr)
    for g in report.goals(result):
        state = "n/a" if g["met"] is None else ("met" if g["met"] else "MISSED")
        print(f"  {state:6} {g['goal']}: {core.fmt(g['value']) if g['value'] is not None else '–'} "
              f"(target {g['target']})")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
