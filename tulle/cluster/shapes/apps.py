"""apps/v1 Deployment: a replica count, a selector and a Pod template."""

from __future__ import annotations

from tulle.cluster.fieldtypes import BOOL, INT, INT_OR_STR, STR, Obj
from tulle.cluster.shapes.core import POD_SPEC
from tulle.cluster.shapes.meta import CONDITIONS, LABEL_SELECTOR, OBJECT_META, top

POD_TEMPLATE_SPEC = Obj({"metadata": OBJECT_META, "spec": POD_SPEC})

DEPLOYMENT_SPEC = Obj({
    "replicas": INT, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE_SPEC,
    "strategy": Obj({"type": STR, "rollingUpdate": Obj({"maxUnavailable": INT_OR_STR, "maxSurge": INT_OR_STR})}),
    "minReadySeconds": INT, "revisionHistoryLimit": INT, "paused": BOOL, "progressDeadlineSeconds": INT,
})

DEPLOYMENT_STATUS = Obj({
    "observedGeneration": INT, "replicas": INT, "updatedReplicas": INT, "readyReplicas": INT,
    "availableReplicas": INT, "unavailableReplicas": INT, "terminatingReplicas": INT,
    "conditions": CONDITIONS, "collisionCount": INT,
})

DEPLOYMENT = top({"spec": DEPLOYMENT_SPEC}, DEPLOYMENT_STATUS)
