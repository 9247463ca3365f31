"""networking.k8s.io/v1 shapes: NetworkPolicy and Ingress."""

from __future__ import annotations

from tulle.cluster.fieldtypes import INT, INT_OR_STR, STR, STRINGS, ListOf, Obj
from tulle.cluster.shapes.core import PORT_STATUS
from tulle.cluster.shapes.meta import CONDITIONS, LABEL_SELECTOR, top

# -- NetworkPolicy -----------------------------------------------------------------

NETWORK_POLICY_PORT = Obj({"protocol": STR, "port": INT_OR_STR, "endPort": INT})

NETWORK_POLICY_PEER = Obj({
    "podSelector": LABEL_SELECTOR, "namespaceSelector": LABEL_SELECTOR,
    "ipBlock": Obj({"cidr": STR, "except": STRINGS}),
})

NETWORK_POLICY_SPEC = Obj({
    "podSelector": LABEL_SELECTOR,
    "ingress": ListOf(Obj({"from": ListOf(NETWORK_POLICY_PEER), "ports": ListOf(NETWORK_POLICY_PORT)})),
    "egress": ListOf(Obj({"to": ListOf(NETWORK_POLICY_PEER), "ports": ListOf(NETWORK_POLICY_PORT)})),
    "policyTypes": STRINGS,
})

NETWORK_POLICY = top({"spec": NETWORK_POLICY_SPEC}, Obj({"conditions": CONDITIONS}))

# -- Ingress -----------------------------------------------------------------------

INGRESS_BACKEND = Obj({
    "service": Obj({"name": STR, "port": Obj({"name": STR, "number": INT})}),
    "resource": Obj({"apiGroup": STR, "kind": STR, "name": STR}),
})

INGRESS_RULE = Obj({
    "host": STR,
    "http": Obj({"paths": ListOf(Obj({"path": STR, "pathType": STR, "backend": INGRESS_BACKEND}))}),
})

INGRESS_SPEC = Obj({
    "ingressClassName": STR, "defaultBackend": INGRESS_BACKEND,
    "tls": ListOf(Obj({"hosts": STRINGS, "secretName": STR})), "rules": ListOf(INGRESS_RULE),
})

INGRESS_STATUS = Obj({"loadBalancer": Obj({"ingress": ListOf(Obj({
    "ip": STR, "hostname": STR, "ports": ListOf(PORT_STATUS)}))})})

INGRESS = top({"spec": INGRESS_SPEC}, INGRESS_STATUS)
