"""core/v1 shapes: Namespace, Pod (and the PodSpec a Deployment's template shares),
Service, Secret.

Modelled field by field where tulle acts on them (ports, networking, scheduling
names); kept whole but unmodelled (`OPEN`) where it only carries them for the
runtime: volume sources, probes, resources, security contexts, affinity.
"""

from __future__ import annotations

from tulle.cluster.fieldtypes import (BASE64, BOOL, INT, INT_OR_STR, OPEN, STR, STRING_MAP, STRINGS,
                                      TIME, ListOf, MapOf, Obj)
from tulle.cluster.shapes.meta import CONDITIONS, LOCAL_OBJECT_REFERENCE, top

# -- Pod -------------------------------------------------------------------------

CONTAINER_PORT = Obj({"name": STR, "containerPort": INT, "hostPort": INT, "hostIP": STR, "protocol": STR})

ENV_VAR = Obj({"name": STR, "value": STR, "valueFrom": OPEN})

VOLUME_MOUNT = Obj({
    "name": STR, "mountPath": STR, "subPath": STR, "subPathExpr": STR, "readOnly": BOOL,
    "recursiveReadOnly": STR, "mountPropagation": STR,
})

CONTAINER = Obj({
    "name": STR, "image": STR, "command": STRINGS, "args": STRINGS, "workingDir": STR,
    "ports": ListOf(CONTAINER_PORT), "env": ListOf(ENV_VAR), "envFrom": ListOf(OPEN),
    "resources": OPEN, "resizePolicy": ListOf(OPEN), "restartPolicy": STR, "restartPolicyRules": ListOf(OPEN),
    "volumeMounts": ListOf(VOLUME_MOUNT), "volumeDevices": ListOf(OPEN),
    "livenessProbe": OPEN, "readinessProbe": OPEN, "startupProbe": OPEN, "lifecycle": OPEN,
    "terminationMessagePath": STR, "terminationMessagePolicy": STR, "imagePullPolicy": STR,
    "securityContext": OPEN, "stdin": BOOL, "stdinOnce": BOOL, "tty": BOOL,
})

TOLERATION = Obj({"key": STR, "operator": STR, "value": STR, "effect": STR, "tolerationSeconds": INT})

POD_SPEC = Obj({
    "containers": ListOf(CONTAINER), "initContainers": ListOf(CONTAINER),
    "ephemeralContainers": ListOf(OPEN), "volumes": ListOf(OPEN),
    "restartPolicy": STR, "terminationGracePeriodSeconds": INT, "activeDeadlineSeconds": INT,
    "dnsPolicy": STR, "dnsConfig": OPEN, "nodeSelector": STRING_MAP, "nodeName": STR,
    "serviceAccountName": STR, "serviceAccount": STR, "automountServiceAccountToken": BOOL,
    "hostNetwork": BOOL, "hostPID": BOOL, "hostIPC": BOOL, "hostUsers": BOOL,
    "shareProcessNamespace": BOOL, "securityContext": OPEN, "imagePullSecrets": ListOf(LOCAL_OBJECT_REFERENCE),
    "hostname": STR, "subdomain": STR, "setHostnameAsFQDN": BOOL, "affinity": OPEN,
    "schedulerName": STR, "tolerations": ListOf(TOLERATION),
    "hostAliases": ListOf(Obj({"ip": STR, "hostnames": STRINGS})),
    "priorityClassName": STR, "priority": INT, "preemptionPolicy": STR,
    "readinessGates": ListOf(Obj({"conditionType": STR})), "runtimeClassName": STR,
    "enableServiceLinks": BOOL, "overhead": MapOf(INT_OR_STR), "topologySpreadConstraints": ListOf(OPEN),
    "os": Obj({"name": STR}), "schedulingGates": ListOf(Obj({"name": STR})),
    "resourceClaims": ListOf(OPEN), "resources": OPEN,
})

POD_IP = Obj({"ip": STR})

POD_STATUS = Obj({
    "phase": STR, "conditions": CONDITIONS, "message": STR, "reason": STR, "nominatedNodeName": STR,
    "hostIP": STR, "hostIPs": ListOf(POD_IP), "podIP": STR, "podIPs": ListOf(POD_IP), "startTime": TIME,
    "initContainerStatuses": ListOf(OPEN), "containerStatuses": ListOf(OPEN),
    "ephemeralContainerStatuses": ListOf(OPEN), "qosClass": STR, "resize": STR,
    "resourceClaimStatuses": ListOf(OPEN), "observedGeneration": INT,
})

POD = top({"spec": POD_SPEC}, POD_STATUS)

# -- Service ---------------------------------------------------------------------

SERVICE_PORT = Obj({
    "name": STR, "protocol": STR, "appProtocol": STR, "port": INT, "targetPort": INT_OR_STR, "nodePort": INT,
})

SERVICE_SPEC = Obj({
    "type": STR, "selector": STRING_MAP, "ports": ListOf(SERVICE_PORT),
    "clusterIP": STR, "clusterIPs": STRINGS, "externalIPs": STRINGS, "externalName": STR,
    "sessionAffinity": STR,
    "sessionAffinityConfig": Obj({"clientIP": Obj({"timeoutSeconds": INT})}),
    "externalTrafficPolicy": STR, "internalTrafficPolicy": STR, "healthCheckNodePort": INT,
    "loadBalancerIP": STR, "loadBalancerSourceRanges": STRINGS, "loadBalancerClass": STR,
    "allocateLoadBalancerNodePorts": BOOL, "publishNotReadyAddresses": BOOL,
    "ipFamilies": STRINGS, "ipFamilyPolicy": STR, "trafficDistribution": STR,
})

PORT_STATUS = Obj({"port": INT, "protocol": STR, "error": STR})

LOAD_BALANCER_STATUS = Obj({"ingress": ListOf(Obj({
    "ip": STR, "hostname": STR, "ipMode": STR, "ports": ListOf(PORT_STATUS)}))})

SERVICE = top({"spec": SERVICE_SPEC},
              Obj({"loadBalancer": LOAD_BALANCER_STATUS, "conditions": CONDITIONS}))

# -- Secret, Namespace -------------------------------------------------------------

SECRET = top({"type": STR, "data": MapOf(BASE64), "stringData": STRING_MAP, "immutable": BOOL})

NAMESPACE = top({"spec": Obj({"finalizers": STRINGS})},
                Obj({"phase": STR, "conditions": CONDITIONS}))
