"""meta/v1 shapes every kind shares: ObjectMeta, LabelSelector, conditions, references."""

from __future__ import annotations

from tulle.cluster.fieldtypes import BOOL, INT, OPEN, STR, STRING_MAP, STRINGS, TIME, ListOf, Obj

OWNER_REFERENCE = Obj({
    "apiVersion": STR, "kind": STR, "name": STR, "uid": STR,
    "controller": BOOL, "blockOwnerDeletion": BOOL,
})

MANAGED_FIELDS_ENTRY = Obj({
    "manager": STR, "operation": STR, "apiVersion": STR, "time": TIME,
    "fieldsType": STR, "fieldsV1": OPEN, "subresource": STR,
})

OBJECT_META = Obj({
    "name": STR, "generateName": STR, "namespace": STR, "selfLink": STR,
    "uid": STR, "resourceVersion": STR, "generation": INT,
    "creationTimestamp": TIME, "deletionTimestamp": TIME, "deletionGracePeriodSeconds": INT,
    "labels": STRING_MAP, "annotations": STRING_MAP,
    "ownerReferences": ListOf(OWNER_REFERENCE), "finalizers": STRINGS,
    "managedFields": ListOf(MANAGED_FIELDS_ENTRY),
})

LABEL_SELECTOR = Obj({
    "matchLabels": STRING_MAP,
    "matchExpressions": ListOf(Obj({"key": STR, "operator": STR, "values": STRINGS})),
})

# metav1.Condition and the older per-kind conditions share these names.
CONDITIONS = ListOf(Obj({
    "type": STR, "status": STR, "reason": STR, "message": STR, "observedGeneration": INT,
    "lastTransitionTime": TIME, "lastProbeTime": TIME, "lastUpdateTime": TIME, "lastHeartbeatTime": TIME,
}))

OBJECT_REFERENCE = Obj({
    "kind": STR, "namespace": STR, "name": STR, "uid": STR, "apiVersion": STR,
    "resourceVersion": STR, "fieldPath": STR,
})

LOCAL_OBJECT_REFERENCE = Obj({"name": STR})


def top(api_fields: dict, status: Obj | None = None) -> Obj:
    """A kind's root: apiVersion, kind, metadata, its own fields and (optionally) status."""
    fields = {"apiVersion": STR, "kind": STR, "metadata": OBJECT_META, **api_fields}
    if status is not None:
        fields["status"] = status
    return Obj(fields)

