"""What the lab runs for a Pod object, and the Pod a `tulle lab pod add` describes.

Pure (no I/O): the `--port`/`--labels` flags, the Pod manifest they make, the
containers and ports a Pod asks the lab to serve, the hostPort mappings handed
to CNI's portmap, and the status a running pod reports — the part of a kubelet
that is data, tested without root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tulle.errors import ConfigError

DEFAULT_NAMESPACE = "default"
LAB_IMAGE = "tulle.local/lab/podserver"   # what `pod add` names as image: the lab runs podserver.py
PROTOCOLS = ("TCP", "UDP")                 # what a pod server answers

_PORT_FLAG = re.compile(r"^(?:(?P<name>[^:/]+):)?(?P<port>[^:/]+)(?:/(?P<proto>[A-Za-z]+))?$")


@dataclass(frozen=True)
class Port:
    port: int
    protocol: str          # TCP | UDP
    name: str = ""

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Container:
    name: str
    ports: tuple[Port, ...]


def key(namespace: str, name: str) -> str:
    """`namespace/name`: how the lab state and the CLI name a pod (client-go's cache key)."""
    return f"{namespace}/{name}"


def split_ref(ref: str, namespace: str = DEFAULT_NAMESPACE) -> tuple[str, str]:
    """`ns/name` or `name` (in `namespace`) → (namespace, name)."""
    ns, sep, name = ref.partition("/")
    return (ns, name) if sep else (namespace, ref)


def parse_port(text: str) -> dict[str, Any]:
    """`[name:]port[/tcp|udp]` → a containerPort entry as Kubernetes spells it."""
    m = _PORT_FLAG.match(text.strip())
    if not m or not m.group("port").isdigit() or not 1 <= int(m.group("port")) <= 65535:
        raise ConfigError(f"bad --port {text!r}: use [name:]port[/tcp|udp] with a port in 1..65535, "
                          f"e.g. http:8080/tcp or 5353/udp")
    proto = (m.group("proto") or "TCP").upper()
    if proto not in PROTOCOLS:
        raise ConfigError(f"bad --port {text!r}: protocol {m.group('proto')!r} is not tcp or udp")
    port: dict[str, Any] = {"containerPort": int(m.group("port")), "protocol": proto}
    if m.group("name"):
        port = {"name": m.group("name"), **port}
    return port


def parse_labels(text: str | None) -> dict[str, str]:
    """`k=v,k2=v2` (kubectl run --labels) → a labels map; the API validates keys and values."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"bad --labels item {item!r}: use key=value[,key=value...]")
        out[k.strip()] = v.strip()
    return out


def pod_manifest(namespace: str, name: str, node: str, labels: dict[str, str] | None = None,
                 ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The Pod `tulle lab pod add` creates: one container named like the pod (as `kubectl run`)."""
    container: dict[str, Any] = {"name": name, "image": LAB_IMAGE}
    if ports:
        container["ports"] = list(ports)
    md: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        md["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": node, "containers": [container]}}


def host_network(pod: dict) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def containers_of(pod: dict) -> tuple[Container, ...]:
    """Each container and the ports its server answers on; ConfigError for what the lab cannot serve."""
    out = []
    for i, c in enumerate((pod.get("spec") or {}).get("containers") or []):
        ports = []
        for j, p in enumerate(c.get("ports") or []):
            proto = str(p.get("protocol") or "TCP").upper()
            if proto not in PROTOCOLS:
                raise ConfigError(f"spec.containers[{i}].ports[{j}].protocol: {proto}: the lab's pod "
                                  f"servers answer TCP and UDP only")
            ports.append(Port(int(p["containerPort"]), proto, str(p.get("name") or "")))
        out.append(Container(str(c.get("name") or f"c{i}"), tuple(ports)))
    return tuple(out)


def port_mappings(pod: dict) -> list[dict[str, Any]]:
    """hostPort entries as CNI's portMappings capability takes them (what a kubelet passes to
    portmap); none for hostNetwork pods, whose ports already are the node's."""
    if host_network(pod):
        return []
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                m = {"hostPort": int(p["hostPort"]), "containerPort": int(p["containerPort"]),
                     "protocol": str(p.get("protocol") or "TCP").lower()}
                if p.get("hostIP"):
                    m["hostIP"] = p["hostIP"]
                out.append(m)
    return out


_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def pending_status(now: str) -> dict[str, Any]:
    """Scheduled (nodeName set), nothing running yet."""
    return {"phase": "Pending", "qosClass": "BestEffort",
            "conditions": [_condition("PodScheduled", now)]}


def running_status(pod: dict, pod_ip: str, host_ip: str, now: str,
                   container_ids: dict[str, str] | None = None) -> dict[str, Any]:
    """Running and Ready: the sandbox is wired and every container's server listens."""
    ids = container_ids or {}
    statuses = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        st: dict[str, Any] = {"name": c.get("name"), "image": c.get("image", ""), "imageID": "",
                              "ready": True, "started": True, "restartCount": 0,
                              "state": {"running": {"startedAt": now}}}
        if c.get("name") in ids:
            st["containerID"] = ids[c["name"]]
        statuses.append(st)
    return {"phase": "Running", "qosClass": "BestEffort", "startTime": now,
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "conditions": [_condition(t, now) for t in _CONDITIONS], "containerStatuses": statuses}


def _condition(kind: str, now: str) -> dict[str, Any]:
    return {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
