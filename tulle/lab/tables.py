"""`tulle lab get` tables, as kubectl prints them.

Pure: objects in, text out. The columns and cell rules are kubectl's printers
(k8s.io/kubernetes/pkg/printers/internalversion) for the kinds the lab serves;
`-o wide` adds the columns kubectl marks priority 1; `-A` puts NAMESPACE first.
Cells are left-aligned and separated by three spaces, as kubectl's tabwriter
(padding 3) lays them out, with no trailing blanks.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Callable

from tulle.cluster.labels import format_labels

Cell = Callable[[dict, datetime.datetime], str]
PADDING = 3
MORE = 3            # kubectl lists 3 hosts/addresses/ports, then "+ N more..."
LB_WIDTH = 16       # kubectl clips a load balancer's addresses to this (not with -o wide)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Cell
    wide: bool = False          # only with -o wide


# --- kubectl's small formatters --------------------------------------------------------

def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: `45s`, `3m20s`, `5h`, `2d3h`, `1y20d`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def age(obj: dict, now: datetime.datetime) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now - created).total_seconds()) if created else "<unknown>"


def format_selector(sel: dict | None) -> str:
    """metav1.FormatLabelSelector: matchLabels and matchExpressions as a selector string;
    `<none>` for the empty selector (which selects everything)."""
    parts = [(k, f"{k}={v}") for k, v in ((sel or {}).get("matchLabels") or {}).items()]
    for e in (sel or {}).get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), ",".join(sorted(e.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                "DoesNotExist": f"!{key}"}.get(op)
        if text:
            parts.append((key, text))
    return ",".join(text for _, text in sorted(parts)) or "<none>"     # requirements sorted by key


def more(items: list[str], count: int | None = None, empty: str = "<unset>") -> str:
    """kubectl's listWithMoreString: the first 3, then `+ N more...`."""
    total = len(items) if count is None else count
    shown = ",".join(items[:MORE])
    if total > MORE:
        return f"{shown} + {total - MORE} more..."
    return shown or empty


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


def _name(obj: dict, _now: datetime.datetime) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: dict, _now: datetime.datetime) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _text(fn: Callable[[dict], Any]) -> Cell:
    return lambda obj, _now: str(fn(obj))


# --- pods --------------------------------------------------------------------------

def pod_ready(pod: dict) -> str:
    statuses = _status(pod).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready") and (c.get("state") or {}).get("running") is not None)
    return f"{ready}/{len(_spec(pod).get('containers') or [])}"


def pod_status(pod: dict) -> str:
    """printPod's reason: the phase, or a container's waiting/terminated reason, or Terminating."""
    st = _status(pod)
    reason = st.get("reason") or st.get("phase") or ""
    for c in reversed(st.get("containerStatuses") or []):
        state = c.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                      else f"ExitCode:{terminated.get('exitCode', 0)}")
    if (pod.get("metadata") or {}).get("deletionTimestamp") and st.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason


def pod_restarts(pod: dict) -> str:
    return str(sum(int(c.get("restartCount") or 0) for c in _status(pod).get("containerStatuses") or []))


def pod_ip(pod: dict) -> str:
    ips = _status(pod).get("podIPs") or []
    return (ips[0].get("ip") if ips else "") or "<none>"


def readiness_gates(pod: dict) -> str:
    gates = _spec(pod).get("readinessGates") or []
    if not gates:
        return "<none>"
    conds = {c.get("type"): c.get("status") for c in _status(pod).get("conditions") or []}
    return f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"


# --- services ----------------------------------------------------------------------

def _lb_addresses(status: dict, wide: bool) -> str:
    found = sorted({i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []
                    if i.get("ip") or i.get("hostname")})
    text = ",".join(found)
    return text if wide or len(text) <= LB_WIDTH else text[:LB_WIDTH - 3] + "..."


def external_ip(svc: dict, wide: bool = False) -> str:
    spec, kind = _spec(svc), _spec(svc).get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        lb = _lb_addresses(_status(svc), wide)
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports(svc: dict) -> str:
    out = []
    for p in _spec(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        out.append(f"{p.get('port')}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p.get('port')}/{proto}")
    return ",".join(out) or "<none>"


def cluster_ip(svc: dict) -> str:
    ips = _spec(svc).get("clusterIPs") or ([_spec(svc)["clusterIP"]] if _spec(svc).get("clusterIP") else [])
    return ips[0] if ips else "<none>"


# --- endpoint slices, ingresses ------------------------------------------------------

def slice_ports(es: dict) -> str:
    ports = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in es.get("ports") or []]
    return more(ports)


def slice_endpoints(es: dict) -> str:
    addrs = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return more(addrs)


def ingress_hosts(ing: dict) -> str:
    rules = _spec(ing).get("rules") or []
    hosts = [r["host"] for r in rules if r.get("host")]
    if not hosts:
        return "*"
    shown = ",".join(hosts[:MORE])
    return f"{shown} + {len(rules) - MORE} more..." if len(hosts) > MORE else shown


def containers_cell(obj: dict, what: str) -> str:
    containers = ((_spec(obj).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get(what, "")) for c in containers)


COLUMNS: dict[str, list[Column]] = {
    "Pod": [Column("NAME", _name), Column("READY", _text(pod_ready)), Column("STATUS", _text(pod_status)),
            Column("RESTARTS", _text(pod_restarts)), Column("AGE", age),
            Column("IP", _text(pod_ip), True),
            Column("NODE", _text(lambda p: _spec(p).get("nodeName") or "<none>"), True),
            Column("NOMINATED NODE", _text(lambda p: _status(p).get("nominatedNodeName") or "<none>"), True),
            Column("READINESS GATES", _text(readiness_gates), True)],
    "Service": [Column("NAME", _name), Column("TYPE", _text(lambda s: _spec(s).get("type") or "ClusterIP")),
                Column("CLUSTER-IP", _text(cluster_ip)), Column("EXTERNAL-IP", _text(external_ip)),
                Column("PORT(S)", _text(service_ports)), Column("AGE", age),
                Column("SELECTOR", _text(lambda s: format_labels(_spec(s).get("selector"))), True)],
    "EndpointSlice": [Column("NAME", _name), Column("ADDRESSTYPE", _text(lambda e: e.get("addressType", ""))),
                      Column("PORTS", _text(slice_ports)), Column("ENDPOINTS", _text(slice_endpoints)),
                      Column("AGE", age)],
    "Deployment": [Column("NAME", _name),
                   Column("READY", _text(lambda d: f"{_status(d).get('readyReplicas', 0)}/"
                                                   f"{_spec(d).get('replicas', 1)}")),
                   Column("UP-TO-DATE", _text(lambda d: _status(d).get("updatedReplicas", 0))),
                   Column("AVAILABLE", _text(lambda d: _status(d).get("availableReplicas", 0))),
                   Column("AGE", age),
                   Column("CONTAINERS", _text(lambda d: containers_cell(d, "name")), True),
                   Column("IMAGES", _text(lambda d: containers_cell(d, "image")), True),
                   Column("SELECTOR", _text(lambda d: format_selector(_spec(d).get("selector"))), True)],
    "Namespace": [Column("NAME", _name), Column("STATUS", _text(lambda n: _status(n).get("phase") or "Active")),
                  Column("AGE", age)],
    "NetworkPolicy": [Column("NAME", _name),
                      Column("POD-SELECTOR", _text(lambda n: format_selector(_spec(n).get("podSelector")))),
                      Column("AGE", age)],
    "Ingress": [Column("NAME", _name),
                Column("CLASS", _text(lambda i: _spec(i).get("ingressClassName") or "<none>")),
                Column("HOSTS", _text(ingress_hosts)),
                Column("ADDRESS", _text(lambda i: _lb_addresses(_status(i), False))),
                Column("PORTS", _text(lambda i: "80, 443" if _spec(i).get("tls") else "80")), Column("AGE", age)],
    "Secret": [Column("NAME", _name), Column("TYPE", _text(lambda s: s.get("type") or "Opaque")),
               Column("DATA", _text(lambda s: len(s.get("data") or {}))), Column("AGE", age)],
    "Lease": [Column("NAME", _name), Column("HOLDER", _text(lambda le: _spec(le).get("holderIdentity") or "")),
              Column("AGE", age)],
}


def columns(kind: str, wide: bool = False, all_namespaces: bool = False) -> list[Column]:
    cols = [c for c in COLUMNS.get(kind, [Column("NAME", _name), Column("AGE", age)]) if wide or not c.wide]
    return ([Column("NAMESPACE", _namespace)] + cols) if all_namespaces else cols


def layout(rows: list[list[str]]) -> str:
    """Left-aligned cells, PADDING blanks between columns, none after the last."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i] + PADDING) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("".join(cells))
    return "\n".join(lines)


def render(kind: str, objs: list[dict], now: datetime.datetime, wide: bool = False,
           all_namespaces: bool = False) -> str:
    """The table `kubectl get` prints for objects of one kind (header included)."""
    cols = columns(kind, wide, all_namespaces)
    rows = [[c.header for c in cols]] + [[c.cell(o, now) for c in cols] for o in objs]
    return layout(rows)
