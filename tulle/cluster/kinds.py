"""The kinds the cluster knows, as the API server's discovery lists them.

One table: apiVersion + kind → resource (the plural in URLs, store keys and
`kubectl get`), whether it lives in a namespace, and the names `get` accepts
(`svc`, `ep`, `netpol`, ...). Everything that turns a user's word into a kind goes
through `lookup`, so `tulle lab get po`, `pods` and `Pod` mean the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from tulle.cluster.errors import BadRequest


@dataclass(frozen=True)
class Kind:
    api_version: str          # "v1", "apps/v1", "discovery.k8s.io/v1", ...
    kind: str                 # "Service"
    resource: str             # "services"
    namespaced: bool = True
    short_names: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`endpointslices.discovery.k8s.io`: how kubectl names a resource of a group."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


KINDS: tuple[Kind, ...] = (
    Kind("v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",)),
    Kind("v1", "Pod", "pods", short_names=("po",)),
    Kind("v1", "Service", "services", short_names=("svc",)),
    Kind("v1", "Secret", "secrets"),
    Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses", short_names=("ing",)),
    Kind("apps/v1", "Deployment", "deployments", short_names=("deploy",)),
    Kind("coordination.k8s.io/v1", "Lease", "leases"),
)

_BY_TYPE = {(k.api_version, k.kind): k for k in KINDS}
_BY_NAME: dict[str, Kind] = {}
for _k in KINDS:
    for _name in (_k.kind.lower(), _k.resource, _k.singular, _k.qualified, *_k.short_names):
        _BY_NAME.setdefault(_name, _k)


def of(api_version: str, kind: str) -> Kind:
    """The kind a manifest names; BadRequest in kubectl's words when we do not serve it."""
    found = _BY_TYPE.get((api_version, kind))
    if found is None:
        known = [k for k in KINDS if k.kind == kind]
        if known:
            raise BadRequest(f'no matches for kind "{kind}" in version "{api_version}" '
                             f'(served: {", ".join(k.api_version for k in known)})')
        raise BadRequest(f'no matches for kind "{kind}" in version "{api_version}"')
    return found


def lookup(word: str) -> Kind:
    """A kind from what a user types after `get`/`delete`: `svc`, `services`, `Service`, ..."""
    found = _BY_NAME.get(word.lower())
    if found is None:
        raise BadRequest(f'the server doesn\'t have a resource type "{word}"')
    return found


def by_resource(resource: str) -> Kind:
    for k in KINDS:
        if k.resource == resource:
            return k
    raise BadRequest(f'the server doesn\'t have a resource type "{resource}"')
