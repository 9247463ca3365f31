"""The main demo: a 3-node lab, the examples/ manifests applied, every pod reaching every other.

It applies `examples/` (a namespace `demo`, a 3-replica Deployment `web` with a
TCP and a UDP port, a Service `web`), checks every pod against every other
(ICMP and TCP), asks each web pod's server who it is over TCP and UDP from
another pod, waits for the endpoints controller's EndpointSlice, and shows what
`get pods -o wide`, `get svc` and `get endpointslices` print. It leaves the lab
running so the reader can explore it (unless --down), and says how.
"""

from __future__ import annotations

import os
import time

from tulle.cluster.errors import ApiError
from tulle.lab import apply, checks, cluster, get, probe, report, state
from tulle.lab.session import open_session

DEMO_LAB = "demo"
NAMESPACE = "demo"
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
SLICE_TIMEOUT = 20.0


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def _apply_examples(lab: str) -> bool:
    with open_session(lab) as s:
        outcome = apply.apply(s, apply.read(EXAMPLES), EXAMPLES)
    for line in outcome.out + outcome.err:
        print(f"    {line}")
    return not outcome.failed


def _who_answers(lab: str) -> bool:
    """Each web pod probed from the next one, over TCP (http) and UDP (dns): the server says who it is."""
    ok = True
    with open_session(lab, lock=False) as s:
        web = sorted(k for k in s.st.pods if k.startswith(f"{NAMESPACE}/web-"))
        for i, target in enumerate(web):
            source = web[(i + 1) % len(web)]
            for port in ("http", "dns"):
                route = probe.resolve(s, source, probe.parse_target(f"{target}:{port}"))
                result = probe.run(route, target)
                ok = ok and result.answered and result.answering_pod == target
                print(f"    {source} -> {target}:{port} ({route.address}:{route.port}/{route.protocol}): "
                      f"{result.text()}")
    return ok and bool(web)


def _wait_for_slice(lab: str, want: int, timeout: float = SLICE_TIMEOUT) -> bool:
    """Until the Service's EndpointSlices list `want` addresses (the endpoints controller runs in
    the leading agent, so it follows the pods on its own)."""
    deadline = time.monotonic() + timeout
    with open_session(lab, lock=False) as s:
        while True:
            slices = s.client.list("endpointslices", NAMESPACE, selector="kubernetes.io/service-name=web")[0]
            ready = {a for es in slices for e in es.get("endpoints") or []
                     if (e.get("conditions") or {}).get("ready", True) for a in e.get("addresses") or []}
            if len(ready) >= want:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def _show(lab: str) -> None:
    with open_session(lab, lock=False) as s:
        for word, output in (("pods", "wide"), ("svc", None), ("endpointslices", None)):
            print(f"\n$ tulle lab get {word} -n {NAMESPACE}{' -o ' + output if output else ''} --lab {lab}")
            answer = get.get(s.client, word, namespace=NAMESPACE, output=output)
            print(answer.stdout or answer.stderr)


def run_demo(lab: str = DEMO_LAB, nodes_count: int = 3, backend: str = "vxlan", store: str = "sqlite",
             segments: int = 1, down_after: bool = False, tulle: str = ".venv/bin/tulle") -> int:
    if state.exists(lab):
        _step(f"removing the previous lab {lab!r}")
        cluster.down(lab)
    _step(f"lab up: {nodes_count} nodes ({backend} backend, {store} store, {segments} segment(s)); "
          f"each node is a netns with its own `tulle agent run`")
    cluster.up(lab, nodes_count, segments, backend, store)
    _step(f"tulle lab apply -f examples/: namespace {NAMESPACE}, Deployment web (3 replicas, ports http 8080/TCP "
          f"and dns 5353/UDP), Service web; each pod is a netns wired by the installed CNI executables")
    try:
        applied = _apply_examples(lab)
    except ApiError as exc:
        print(f"    Error from server ({exc.reason}): {exc.msg}")
        applied = False
    _step("every pod to every other pod: ICMP (ping) and TCP (connect + echo)")
    results = checks.all_pairs(state.load(lab))
    _step("who answers: each web pod's server over TCP and UDP, asked from another pod (tulle lab probe)")
    answered = applied and _who_answers(lab)
    replicas = sum(1 for k in state.load(lab).pods if k.startswith(f"{NAMESPACE}/web-"))
    _step(f"waiting for the endpoints controller's EndpointSlice to list the {replicas} web pods "
          f"(at most {SLICE_TIMEOUT:.0f} s)")
    sliced = applied and _wait_for_slice(lab, replicas)
    if not sliced:
        print(f"    the EndpointSlice of service {NAMESPACE}/web did not list {replicas} pods in time")
    _show(lab)
    status = cluster.status(lab)
    report.show(report.reach_table(results), report.nodes_table(status))
    ok = applied and bool(results) and all(r.ok for r in results) and answered and sliced
    web = sorted(k.split("/", 1)[1] for k in state.load(lab).pods if k.startswith(f"{NAMESPACE}/web-"))
    if down_after:
        cluster.down(lab)
        _step(f"lab {lab} removed")
    elif len(web) >= 2:
        ip = state.load(lab).pods[f"{NAMESPACE}/{web[1]}"].ip
        t = f"{tulle} lab"
        hints = [
            (f"{t} get pods -n {NAMESPACE} -o wide --lab {lab}", "the pods, their addresses and nodes"),
            (f"{t} probe --lab {lab} -n {NAMESPACE} {web[0]} {web[1]}:http", "who answers (TCP; :dns for UDP)"),
            (f"{t} exec --lab {lab} -n {NAMESPACE} {web[0]} -- ping -c 3 {ip}", "run anything inside a pod"),
            (f"{t} get endpointslices -n {NAMESPACE} --lab {lab}", "the Service's endpoints"),
            (f"{t} get svc web -n {NAMESPACE} -o yaml --lab {lab}", "an object as the API holds it"),
            (f"{t} apply --lab {lab} -f examples/", "after editing replicas: scales up or down"),
            (f"{t} status --lab {lab}", "nodes, subnets, agents, pods"),
            (f"{t} check --lab {lab}", "all pairs again, ICMP and TCP"),
            (f"nsenter --net=/run/netns/tulle-{lab}-n1 ip route", "a node's routes to the other subnets"),
            (f"{t} node del --lab {lab} n{nodes_count}", "a node leaves; the others forget it"),
            (f"less /run/tulle/labs/{lab}/n1/agent.log", "an agent's structured log"),
        ]
        width = max(len(cmd) for cmd, _ in hints)
        print("\nExplore it (as root):")
        for cmd, why in hints:
            print(f"  {cmd.ljust(width)}   # {why}")
        print(f"Tear it down:\n  {tulle} lab down --lab {lab}")
    print("DEMO OK" if ok else "DEMO FAILED: see the lines above (apply, reachability, who answers, endpoints)")
    return 0 if ok else 1
