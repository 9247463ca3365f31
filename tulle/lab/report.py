"""Human-readable lab views (rich tables); the JSON forms come straight from cluster.status."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

from tulle.lab.checks import PairResult


def nodes_table(status: dict[str, Any]) -> Table:
    t = Table(title=f"lab {status['lab']}: {status['backend']} over {status['store']}, "
                    f"pod network {status['network']}")
    bgp = any("bgp" in n for n in status["nodes"])     # bgp labs: each node's session summary
    where = "pod blocks" if bgp else "pod subnet"   # bgp: pods come from IPAM blocks, not the lease
    for col in ("node", "segment", "underlay IP", where, "agent", *(("BGP",) if bgp else ()), "pods"):
        t.add_column(col, no_wrap=col != "pods")
    by_node: dict[str, list[str]] = {}
    for p in status["pods"]:
        by_node.setdefault(p["node"], []).append(p["name"] if p["namespace"] == "default"
                                                 else f"{p['namespace']}/{p['name']}")
    for n in status["nodes"]:
        agent = f"[green]pid {n['agent_pid']}[/]" if n["agent_alive"] else f"[red]down ({n['agent_pid']})[/]"
        subnet = n["subnet"] or "[red]no lease[/]"
        if n.get("stale"):
            subnet += " [yellow](last known)[/]"
        if bgp and n["subnet"]:
            subnet = ", ".join(n.get("blocks", [])) or "-"
        t.add_row(n["name"], n["segment"], n["underlay_ip"], subnet, agent,
                  *((n.get("bgp", "-"),) if bgp else ()), ", ".join(by_node.get(n["name"], [])) or "-")
    return t


def pods_table(pods: list[dict[str, str]]) -> Table:
    t = Table(title="pods")
    for col in ("namespace", "pod", "node", "IP"):
        t.add_column(col, no_wrap=True)
    for p in pods:
        t.add_row(p["namespace"], p["name"], p["node"], p["ip"])
    return t


def _short(keys: list[str]) -> tuple[dict[str, str], str]:
    """Pod keys (`namespace/name`) as the table shows them: bare names when they share one namespace."""
    spaces = {k.split("/", 1)[0] for k in keys}
    if len(spaces) == 1:
        return {k: k.split("/", 1)[1] for k in keys}, f" (namespace {spaces.pop()})"
    return {k: k for k in keys}, ""


def reach_table(results: Iterable[PairResult]) -> Table:
    results = list(results)
    pods = sorted({r.src for r in results} | {r.dst for r in results})
    shown, where = _short(pods)
    t = Table(title=f"reachability (ICMP / TCP), from row to column{where}")
    t.add_column("from \\ to", no_wrap=True)
    for p in pods:
        t.add_column(shown[p], justify="center", no_wrap=True)
    cell = {(r.src, r.dst): r for r in results}
    for src in pods:
        row = []
        for dst in pods:
            r = cell.get((src, dst))
            if r is None:
                row.append("·")
            else:
                row.append(("[green]ok[/]" if r.icmp else "[red]FAIL[/]") + " / " +
                           ("[green]ok[/]" if r.tcp else "[red]FAIL[/]"))
        t.add_row(shown[src], *row)
    return t


def show(*renderables: Any) -> None:
    console = Console()
    if not console.is_terminal:        # a log or a pipe: no screen to fit, keep cells whole
        console = Console(width=160)
    for r in renderables:
        console.print(r)
