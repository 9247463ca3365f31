"""The object API: Kubernetes objects in the store, as the API server keeps them.

Objects are JSON at `<prefix>/<resource>/<namespace>/<name>` (cluster-scoped:
`<prefix>/<resource>/<name>`), in their API shapes. What informers and controllers
rely on holds on both stores (SQLite and etcd):

- `metadata.resourceVersion` is the store revision of the object's last write; an
  update carries the version it read and is refused with Conflict when someone
  wrote in between (compare-and-swap), so concurrent writers never lose updates.
- `list` returns the items and the revision of the read; `watch` from that
  revision + 1 sees every change after it, in order.
- `uid`, `creationTimestamp` and `generation` (bumped when anything but metadata
  and status changes) are set here, never taken from the client.
- Every write goes through `prepare` (prune unknown fields with warnings, apply
  defaults, validate with field paths), namespaces must exist, and a Service gets
  its ClusterIP and NodePorts claimed (tulle.cluster.allocators) before it is
  written and released after it is deleted.
"""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from tulle import node_defaults
from tulle.cluster import allocators, errors, kinds
from tulle.cluster.kinds import Kind
from tulle.store.base import KV, Store

DEFAULT_PREFIX = node_defaults.REGISTRY_PREFIX
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                   "managedFields")
WRITE_RETRIES = 8        # read-modify-write retries on Conflict for server-side changes

KindRef = Kind | str


def kind_of(ref: KindRef) -> Kind:
    return ref if isinstance(ref, Kind) else kinds.lookup(ref)


def now() -> str:
    """RFC 3339 in UTC, seconds precision: what the API server writes in creationTimestamp."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def name_of(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def namespace_of(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def ref(obj: dict) -> str:
    """`namespace/name` (or `name`): how logs and errors name an object."""
    ns = namespace_of(obj)
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)


@dataclass(frozen=True)
class WatchEvent:
    type: str                # ADDED | MODIFIED | DELETED
    kind: Kind
    namespace: str
    name: str
    object: dict | None      # None for DELETED (the caller's cache has the last state)
    revision: int


def decode(kind: Kind, kv: KV) -> dict:
    """A stored object with its resourceVersion (the key's mod revision) filled in."""
    obj = json.loads(kv.value)
    meta(obj)["resourceVersion"] = str(kv.mod_revision)
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind)
    return obj


def _encode(obj: dict) -> str:
    body = copy.deepcopy(obj)
    body.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _user_part(obj: dict) -> dict:
    """Everything generation counts: the object less metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Client:
    """Create/get/list/update/delete/watch API objects over a Store."""

    def __init__(self, store: Store, prefix: str = DEFAULT_PREFIX,
                 service_network: Any = allocators.DEFAULT_SERVICE_NETWORK,
                 node_ports: range = allocators.DEFAULT_NODE_PORTS,
                 clock: Callable[[], str] = now) -> None:
        import ipaddress

        self.store, self.prefix = store, prefix.rstrip("/")
        self.service_ips = allocators.ServiceIPs(store, self.prefix, ipaddress.IPv4Network(service_network)
                                                 if service_network is not None else None)
        self.node_ports = allocators.NodePorts(store, self.prefix, node_ports)
        self.clock = clock
        self.warnings: list[str] = []

    # -- keys -------------------------------------------------------------------

    def kind_prefix(self, kind: KindRef, namespace: str | None = None) -> str:
        k = kind_of(kind)
        base = f"{self.prefix}/{k.resource}/"
        return f"{base}{namespace}/" if namespace and k.namespaced else base

    def key(self, kind: KindRef, name: str, namespace: str | None = None) -> str:
        k = kind_of(kind)
        if k.namespaced:
            return f"{self.prefix}/{k.resource}/{namespace or 'default'}/{name}"
        return f"{self.prefix}/{k.resource}/{name}"

    def parse_key(self, key: str) -> tuple[Kind, str, str] | None:
        """(kind, namespace, name) of an object key; None for other keys (allocations, ...)."""
        if not key.startswith(self.prefix + "/"):
            return None
        parts = key[len(self.prefix) + 1:].split("/")
        try:
            k = kinds.by_resource(parts[0])
        except errors.BadRequest:
            return None
        if k.namespaced and len(parts) == 3:
            return k, parts[1], parts[2]
        if not k.namespaced and len(parts) == 2:
            return k, "", parts[1]
        return None

    # -- reads ------------------------------------------------------------------

    def get(self, kind: KindRef, name: str, namespace: str | None = None) -> dict:
        k = kind_of(kind)
        kv = self.store.get(self.key(k, name, namespace))
        if kv is None:
            raise errors.not_found_error(k.qualified, name)
        return decode(k, kv)

    def find(self, kind: KindRef, name: str, namespace: str | None = None) -> dict | None:
        k = kind_of(kind)
        kv = self.store.get(self.key(k, name, namespace))
        return decode(k, kv) if kv is not None else None

    def list(self, kind: KindRef, namespace: str | None = None,
             selector: dict[str, Any] | str | None = None) -> tuple[list[dict], int]:
        """Objects of a kind (one namespace, or all with None), sorted by namespace and name."""
        k = kind_of(kind)
        kvs, rev = self.store.list(self.kind_prefix(k, namespace))
        items = [decode(k, kv) for kv in kvs if self.parse_key(kv.key) is not None]
        if selector:
            from tulle.cluster import labels

            sel = labels.parse_selector(selector) if isinstance(selector, str) else {"matchLabels": selector}
            items = [o for o in items if labels.selector_matches(sel, meta(o).get("labels") or {})]
        return items, rev

    def watch(self, from_revision: int, timeout: float,
              only: Iterable[KindRef] | None = None) -> list[WatchEvent]:
        """Changes to objects with revision >= from_revision (Compacted when that history is gone)."""
        wanted = {kind_of(k).resource for k in only} if only is not None else None
        out = []
        for ev in self.store.watch(self.prefix + "/", from_revision, timeout):
            parsed = self.parse_key(ev.kv.key)
            if parsed is None or (wanted is not None and parsed[0].resource not in wanted):
                continue
            k, ns, name = parsed
            if ev.type == "delete":
                out.append(WatchEvent("DELETED", k, ns, name, None, ev.revision))
            else:
                kind = "ADDED" if ev.kv.version == 1 else "MODIFIED"
                out.append(WatchEvent(kind, k, ns, name, decode(k, ev.kv), ev.revision))
        return out

    # -- writes -----------------------------------------------------------------

    def _prepare(self, obj: dict, old: dict | None) -> tuple[Kind, dict]:
        from tulle.cluster import prepare

        if not isinstance(obj, dict):
            raise errors.BadRequest(f"an object must be a mapping, got {type(obj).__name__}")
        k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        body = copy.deepcopy(obj)
        if k.namespaced:
            meta(body).setdefault("namespace", "default")
            if not meta(body)["namespace"]:
                meta(body)["namespace"] = "default"
        else:
            meta(body).pop("namespace", None)
        if not meta(body).get("name") and meta(body).get("generateName") and old is None:
            meta(body)["name"] = meta(body)["generateName"] + uuid.uuid4().hex[:5]
        prepared, warnings = prepare.prepare(body, old)
        self.warnings.extend(warnings)
        return k, prepared

    def _require_namespace(self, k: Kind, obj: dict) -> None:
        if k.namespaced:
            ns = namespace_of(obj)
            if self.store.get(self.key("namespaces", ns)) is None:
                raise errors.not_found_error("namespaces", ns)

    def create(self, obj: dict) -> dict:
        """Write a new object (AlreadyExists when its name is taken)."""
        self.warnings = []
        k, body = self._prepare(obj, None)
        self._require_namespace(k, body)
        md = meta(body)
        for f in SERVER_METADATA:
            md.pop(f, None)
        md.update(uid=str(uuid.uuid4()), creationTimestamp=self.clock(), generation=1)
        key = self.key(k, md["name"], md.get("namespace"))
        if self.store.get(key) is not None:
            raise errors.already_exists_error(k.qualified, md["name"])
        claimed = self._claim_service(body, None) if k.kind == "Service" else ([], [])
        try:
            kv = self.store.create(key, _encode(body))
        except BaseException:
            self._release(claimed, allocators.owner_of(body))
            raise
        if kv is None:
            self._release(claimed, allocators.owner_of(body))
            raise errors.already_exists_error(k.qualified, md["name"])
        return decode(k, kv)

    def update(self, obj: dict, status: bool = False) -> dict:
        """Write a changed object at the resourceVersion it was read at (Conflict when stale).

        With `status`, only `.status` is taken from obj (the status subresource)."""
        self.warnings = []
        k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        name, ns = name_of(obj), namespace_of(obj) or ("default" if k.namespaced else "")
        key = self.key(k, name, ns)
        kv = self.store.get(key)
        if kv is None:
            raise errors.not_found_error(k.qualified, name)
        old = decode(k, kv)
        want_rv = str(meta(obj).get("resourceVersion") or "")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict_error(k.qualified, name)
        if status:
            body = copy.deepcopy(old)
            body["status"] = copy.deepcopy(obj.get("status") or {})
            _, body = self._prepare(body, old)     # the status is pruned and checked like the rest
            body["metadata"] = copy.deepcopy(old["metadata"])
            claimed: tuple[list[str], list[int]] = ([], [])
        else:
            spec_write = copy.deepcopy(obj)
            if "status" in old:          # status is written only through update_status
                spec_write["status"] = old["status"]
            _, body = self._prepare(spec_write, old)
            md = meta(body)
            for f in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if f in old["metadata"]:
                    md[f] = old["metadata"][f]
            if _user_part(body) != _user_part(old):
                md["generation"] = int(old["metadata"].get("generation", 1)) + 1
            claimed = self._claim_service(body, old) if k.kind == "Service" else ([], [])
        encoded = _encode(body)
        if encoded == _encode(old):                # a no-op write is no write (no new version, no event)
            return old
        new = self.store.compare_and_swap(key, encoded, kv.mod_revision)
        if new is None:
            self._release(claimed, allocators.owner_of(old))
            raise errors.conflict_error(k.qualified, name)
        if k.kind == "Service" and not status:
            self._release_dropped(old, body)
        return decode(k, new)

    def update_status(self, obj: dict) -> dict:
        return self.update(obj, status=True)

    def mutate(self, kind: KindRef, name: str, namespace: str | None, change: Callable[[dict], None],
               status: bool = False) -> dict:
        """Read, change, write; retried from a fresh read on Conflict (server-side writers)."""
        for _ in range(WRITE_RETRIES):
            obj = self.get(kind, name, namespace)
            change(obj)
            try:
                return self.update(obj, status=status)
            except errors.Conflict:
                continue
        raise errors.conflict_error(kind_of(kind).qualified, name)

    def apply(self, obj: dict) -> tuple[dict, str]:
        """kubectl apply: create, or take the manifest's labels, annotations and spec over the
        stored object, keeping what the server set (uid, status, allocated ClusterIPs and
        NodePorts the manifest leaves out). Returns (object, created|configured|unchanged)."""
        k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        ns = (namespace_of(obj) or "default") if k.namespaced else None
        for _ in range(WRITE_RETRIES):
            old = self.find(k, name_of(obj), ns)
            if old is None:
                try:
                    return self.create(obj), "created"
                except errors.AlreadyExists:
                    continue
            body = applied(obj, old)
            try:
                new = self.update(body)
            except errors.Conflict:
                continue
            same = new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"] or (
                _user_part(new) == _user_part(old)
                and (new["metadata"].get("labels") or {}) == (old["metadata"].get("labels") or {})
                and (new["metadata"].get("annotations") or {}) == (old["metadata"].get("annotations") or {}))
            return new, "unchanged" if same else "configured"
        raise errors.conflict_error(k.qualified, name_of(obj))

    def delete(self, kind: KindRef, name: str, namespace: str | None = None) -> dict:
        """Remove an object (NotFound when absent); a Namespace takes its objects with it."""
        k = kind_of(kind)
        key = self.key(k, name, namespace)
        kv = self.store.get(key)
        if kv is None:
            raise errors.not_found_error(k.qualified, name)
        old = decode(k, kv)
        if k.kind == "Namespace":
            for other in kinds.KINDS:
                if other.namespaced:
                    items, _ = self.list(other, name)
                    for item in items:
                        self._delete_quietly(other, item)
        if not self.store.delete(key, mod_revision=kv.mod_revision):
            return self.delete(k, name, namespace)      # changed in between: delete what is there now
        if k.kind == "Service":
            self._release(allocators.service_claims(old), allocators.owner_of(old))
        return old

    def terminate(self, kind: KindRef, name: str, namespace: str | None, grace_seconds: int) -> dict:
        """Graceful deletion's first step (what `kubectl delete pod` asks by default): the object
        stays, marked with deletionTimestamp (now + grace) and deletionGracePeriodSeconds, so
        readers see it terminating (an EndpointSlice endpoint: ready false, terminating true)
        while whoever runs it stops it; `delete` then removes it for good. Marking an object
        that is already terminating changes nothing."""
        k = kind_of(kind)
        key = self.key(k, name, namespace)
        for _ in range(WRITE_RETRIES):
            kv = self.store.get(key)
            if kv is None:
                raise errors.not_found_error(k.qualified, name)
            obj = decode(k, kv)
            if meta(obj).get("deletionTimestamp"):
                return obj
            stamp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace_seconds)
            meta(obj).update(deletionTimestamp=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             deletionGracePeriodSeconds=int(grace_seconds))
            new = self.store.compare_and_swap(key, _encode(obj), kv.mod_revision)
            if new is not None:
                return decode(k, new)
        raise errors.conflict_error(k.qualified, name)

    def _delete_quietly(self, k: Kind, obj: dict) -> None:
        try:
            self.delete(k, name_of(obj), namespace_of(obj))
        except errors.NotFound:
            pass

    def ensure_defaults(self) -> None:
        """The namespaces every cluster starts with (default, kube-system, ...)."""
        for ns in DEFAULT_NAMESPACES:
            if self.find("namespaces", ns) is None:
                try:
                    self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                except errors.AlreadyExists:
                    pass

    # -- Service allocations ------------------------------------------------------

    def _claim_service(self, svc: dict, old: dict | None) -> tuple[list[str], list[int]]:
        """Claim the ClusterIP and NodePorts `svc` needs and `old` does not hold; fill them in.
        Returns what was newly claimed (released again when the write fails)."""
        spec = svc.setdefault("spec", {})
        owner = allocators.owner_of(svc if old is None else old)
        old_ips, old_ports = allocators.service_claims(old) if old else ([], [])
        new_ips: list[str] = []
        new_ports: list[int] = []
        try:
            if spec.get("type") != "ExternalName":
                ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
                if not ip and old_ips:
                    ip = old_ips[0]
                if ip == "None":
                    spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
                elif ip and ip in old_ips:
                    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                else:
                    ip = (self.service_ips.request(ip, owner, "spec.clusterIPs") if ip
                          else self.service_ips.allocate(owner, "spec.clusterIPs"))
                    new_ips.append(ip)
                    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            else:
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            wants_node_ports = spec.get("type") in ("NodePort", "LoadBalancer") and \
                (spec.get("type") == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True))
            old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                           for p in ((old or {}).get("spec") or {}).get("ports") or []}
            for i, port in enumerate(spec.get("ports") or []):
                if not wants_node_ports:
                    if spec.get("type") not in ("NodePort", "LoadBalancer"):
                        port.pop("nodePort", None)
                    continue
                want = port.get("nodePort")
                if not want:
                    want = old_by_port.get((port.get("port"), port.get("protocol", "TCP")))
                if want and (want in old_ports or want in new_ports):
                    port["nodePort"] = want
                elif want:
                    port["nodePort"] = self.node_ports.request(int(want), owner, f"spec.ports[{i}].nodePort")
                    new_ports.append(port["nodePort"])
                else:
                    port["nodePort"] = self.node_ports.allocate(owner, f"spec.ports[{i}].nodePort")
                    new_ports.append(port["nodePort"])
        except BaseException:
            self._release((new_ips, new_ports), owner)
            raise
        return new_ips, new_ports

    def _release(self, claims: tuple[list[str], list[int]], owner: allocators.Owner) -> None:
        ips, ports = claims
        for ip in ips:
            self.service_ips.release(ip, owner)
        for port in ports:
            self.node_ports.release(port, owner)

    def _release_dropped(self, old: dict, new: dict) -> None:
        old_ips, old_ports = allocators.service_claims(old)
        new_ips, new_ports = allocators.service_claims(new)
        self._release(([i for i in old_ips if i not in new_ips], [p for p in old_ports if p not in new_ports]),
                      allocators.owner_of(old))


def applied(obj: dict, old: dict) -> dict:
    """What `kubectl apply` of `obj` over the stored `old` writes: the manifest's fields, and
    what the server or a controller set that the manifest leaves out (server metadata, a
    Service's allocated ClusterIP and NodePorts, a Pod's nodeName from the scheduler)."""
    body = copy.deepcopy(obj)
    md = meta(body)
    for f in SERVER_METADATA:
        if f in old["metadata"]:
            md[f] = old["metadata"][f]
    kind = body.get("kind")
    if kind == "Service":
        _keep_allocations(body, old)
    elif kind == "Pod" and (old.get("spec") or {}).get("nodeName"):
        body.setdefault("spec", {}).setdefault("nodeName", old["spec"]["nodeName"])
    return body


def _keep_allocations(body: dict, old: dict) -> None:
    """apply: a manifest that leaves out clusterIP/nodePort keeps the allocated ones."""
    spec, old_spec = body.setdefault("spec", {}), old.get("spec") or {}
    if not spec.get("clusterIP") and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
    for port in spec.get("ports") or []:
        kept = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
        if not port.get("nodePort") and kept:
            port["nodePort"] = kept


def connect(store: Store, prefix: str = DEFAULT_PREFIX, network_prefix: str | None = None) -> Client:
    """A Client whose ClusterIP and NodePort ranges are the cluster's (ServiceNetwork and
    NodePortRange of the network config; the API server's defaults when there is none)."""
    from tulle.cluster import netconfig
    from tulle.cluster.lease import DEFAULT_PREFIX as NETWORK_PREFIX
    from tulle.errors import NotFoundError

    try:
        cfg = netconfig.read_config(store, network_prefix or NETWORK_PREFIX)
    except NotFoundError:
        return Client(store, prefix)
    return for_config(store, cfg, prefix)


def for_config(store: Store, cfg: Any, prefix: str = DEFAULT_PREFIX) -> Client:
    """A Client with the Service ranges of an already read network config (a NetConfig)."""
    return Client(store, prefix, service_network=cfg.service_network, node_ports=cfg.node_ports)
