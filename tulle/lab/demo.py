"""The main demo: a 3-node lab, a pod on every node, every pod reaching every other.

It leaves the lab running so the reader can explore it (unless --down), and
says how: `tulle lab exec`, `tulle lab status`, `tulle lab down`.
"""

from __future__ import annotations

from tulle.lab import checks, cluster, pods, report, state

DEMO_LAB = "demo"


def run_demo(lab: str = DEMO_LAB, nodes_count: int = 3, backend: str = "vxlan", store: str = "sqlite",
             segments: int = 1, down_after: bool = False, tulle: str = ".venv/bin/tulle") -> int:
    def step(msg: str) -> None:
        print(f"==> {msg}", flush=True)

    if state.exists(lab):
        step(f"removing the previous lab {lab!r}")
        cluster.down(lab)
    step(f"lab up: {nodes_count} nodes ({backend} backend, {store} store, {segments} segment(s)); "
         f"each node is a netns with its own `tulle agent run`")
    cluster.up(lab, nodes_count, segments, backend, store)
    names = []
    for k in range(1, nodes_count + 1):
        pod = f"pod{k}"
        p = pods.add(lab, f"n{k}", pod)
        names.append(pod)
        step(f"pod {pod} on n{k}: {p.ip} (wired by the installed CNI executables through the node's agent)")
    step("every pod to every other pod: ICMP (ping) and TCP (connect + echo)")
    results = checks.all_pairs(state.load(lab))
    status = cluster.status(lab)
    report.show(report.reach_table(results), report.nodes_table(status), report.pods_table(status["pods"]))
    ok = bool(results) and all(r.ok for r in results)
    other = status["pods"][1]["ip"] if len(status["pods"]) > 1 else "10.244.0.1"
    if down_after:
        cluster.down(lab)
        step(f"lab {lab} removed")
    else:
        hints = [
            (f"{tulle} lab status --lab {lab}", "nodes, subnets, agents, pods"),
            (f"{tulle} lab exec --lab {lab} {names[0]} -- ping -c 3 {other}", "run anything inside a pod"),
            (f"{tulle} lab check --lab {lab}", "all pairs again, ICMP and TCP"),
            (f"nsenter --net=/run/netns/tulle-{lab}-n1 ip route", "a node's routes to the other subnets"),
            (f"{tulle} lab pod add --lab {lab} n2 extra", "one more pod"),
            (f"{tulle} lab node del --lab {lab} n{nodes_count}", "a node leaves; the others forget it"),
            (f"less /run/tulle/labs/{lab}/n1/agent.log", "an agent's structured log"),
        ]
        width = max(len(cmd) for cmd, _ in hints)
        print("\nExplore it (as root):")
        for cmd, why in hints:
            print(f"  {cmd.ljust(width)}   # {why}")
        print(f"Tear it down:\n  {tulle} lab down --lab {lab}")
    print("DEMO OK" if ok else "DEMO FAILED: some pods could not reach each other (see the table)")
    return 0 if ok else 1
