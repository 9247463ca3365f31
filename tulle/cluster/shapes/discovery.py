"""discovery.k8s.io/v1 EndpointSlice: its fields sit at the top level, beside metadata."""

from __future__ import annotations

from tulle.cluster.fieldtypes import BOOL, INT, STR, STRING_MAP, STRINGS, ListOf, Obj
from tulle.cluster.shapes.meta import OBJECT_REFERENCE, top

_NAMED = ListOf(Obj({"name": STR}))

ENDPOINT = Obj({
    "addresses": STRINGS,
    "conditions": Obj({"ready": BOOL, "serving": BOOL, "terminating": BOOL}),
    "hostname": STR, "targetRef": OBJECT_REFERENCE, "deprecatedTopology": STRING_MAP,
    "nodeName": STR, "zone": STR, "hints": Obj({"forZones": _NAMED, "forNodes": _NAMED}),
})

ENDPOINT_PORT = Obj({"name": STR, "protocol": STR, "port": INT, "appProtocol": STR})

ENDPOINT_SLICE = top({"addressType": STR, "endpoints": ListOf(ENDPOINT), "ports": ListOf(ENDPOINT_PORT)})
