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
        by_node.setdefault(p["node"], []).append(p["name"])
    for n in status["nodes"]:
        agent = f"[green]pid {n['agent_pid']}[/]" if n["agent_alive"] else f"[red]down ({n['agent_pid']})[/]"
        subnet = n["subnet"] or "[red]no lease[/]"
        if bgp and n["subnet"]:
            subnet = ", ".join(n.get("blocks", [])) or "-"
        t.add_row(n["name"], n["segment"], n["underlay_ip"], subnet, agent,
                  *((n.get("bgp", "-"),) if bgp else ()), ", ".join(by_node.get(n["name"], [])) or "-")
    return t


def pods_table(pods: list[dict[str, str]]) -> Table:
    t = Table(title="pods")
    for col in ("pod", "node", "IP"):
        t.add_column(col, no_wrap=True)
    for p in pods:
        t.add_row(p["name"], p["node"], p["ip"])
    return t


def reach_table(results: Iterable[PairResult]) -> Table:
    results = list(results)
    pods = sorted({r.src for r in results} | {r.dst for r in results})
    t = Table(title="reachability (ICMP / TCP), from row to column")
    t.add_column("from \\ to")
    for p in pods:
        t.add_column(p, justify="center")
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
        t.add_row(src, *row)
    return t


def show(*renderables: Any) -> None:
    console = Console()
    for r in renderables:
        console.print(r)
