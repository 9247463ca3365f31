"""The schema of every kind tulle serves, one module per API group, as the
Kubernetes API spells its fields (tulle.cluster.fieldtypes is the vocabulary).
`SCHEMAS` maps (apiVersion, kind) to the root `Obj`."""

from __future__ import annotations

from tulle.cluster.fieldtypes import Obj
from tulle.cluster.shapes import apps, coordination, core, discovery, networking

SCHEMAS: dict[tuple[str, str], Obj] = {
    ("v1", "Namespace"): core.NAMESPACE,
    ("v1", "Pod"): core.POD,
    ("v1", "Service"): core.SERVICE,
    ("v1", "Secret"): core.SECRET,
    ("discovery.k8s.io/v1", "EndpointSlice"): discovery.ENDPOINT_SLICE,
    ("networking.k8s.io/v1", "NetworkPolicy"): networking.NETWORK_POLICY,
    ("networking.k8s.io/v1", "Ingress"): networking.INGRESS,
    ("apps/v1", "Deployment"): apps.DEPLOYMENT,
    ("coordination.k8s.io/v1", "Lease"): coordination.LEASE,
}
