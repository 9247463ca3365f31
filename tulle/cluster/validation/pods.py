"""Pod and PodSpec validation (core/v1), shared by Pods and Deployment templates.

Covered: containers (names, images, ports, env names, host-port clashes), init
containers, restart and DNS policies, host networking, node and service-account
names, tolerations, host aliases; on update, the API server's short list of
mutable spec fields.
"""

from __future__ import annotations

from typing import Any

from tulle.cluster import names
from tulle.cluster.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from tulle.cluster.fieldpath import child, index
from tulle.cluster.validation.common import each, enum, ip_errors, name_field, port_number, protocol
from tulle.cluster.validation.meta import annotations, labels

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
TOLERATION_OPERATORS = ["Equal", "Exists"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
MAX_INT32 = 2**31 - 1

UPDATABLE = ("`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
             "`spec.tolerations` (only additions to existing tolerations),"
             "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def _env_name_errors(name: str) -> list[str]:
    """RelaxedEnvironmentVariableValidation (GA): printable ASCII other than '='."""
    if all(" " <= ch <= "~" and ch != "=" for ch in name):
        return []
    return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]


def container_ports(path: str, ports: list[dict[str, Any]]) -> list[FieldError]:
    out: list[FieldError] = []
    seen: set[str] = set()
    for i, port in enumerate(ports):
        at = index(path, i)
        name = port.get("name", "")
        if name:
            problems = names.port_name_errors(name)
            if problems:
                out += each(child(at, "name"), name, problems)
            elif name in seen:
                out.append(duplicate(child(at, "name"), name))
            seen.add(name)
        if not port.get("containerPort"):
            out.append(required(child(at, "containerPort")))
        else:
            out += port_number(child(at, "containerPort"), port["containerPort"])
        if port.get("hostPort"):
            out += port_number(child(at, "hostPort"), port["hostPort"])
        out += protocol(child(at, "protocol"), port.get("protocol"))
    return out


def _container(path: str, c: dict[str, Any], is_pod: bool) -> list[FieldError]:
    """What every container must satisfy (validateContainerCommon + the pod-only checks)."""
    out: list[FieldError] = []
    name = c.get("name", "")
    if not name:
        out.append(required(child(path, "name")))
    else:
        out += name_field(child(path, "name"), name, names.dns1123_label_errors)
    image = c.get("image", "")
    if not image:
        out.append(required(child(path, "image")))
    elif is_pod and image != image.strip():
        out.append(invalid(child(path, "image"), image, "must not have leading or trailing whitespace"))
    out += enum(child(path, "terminationMessagePolicy"), c.get("terminationMessagePolicy"),
                TERMINATION_MESSAGE_POLICIES, needed=False)
    out += enum(child(path, "imagePullPolicy"), c.get("imagePullPolicy"), PULL_POLICIES, needed=False)
    out += container_ports(child(path, "ports"), c.get("ports") or [])
    for i, var in enumerate(c.get("env") or []):
        at = child(index(child(path, "env"), i), "name")
        if not var.get("name"):
            out.append(required(at))
        else:
            out += each(at, var["name"], _env_name_errors(var["name"]))
    return out


def _host_port_clashes(path: str, containers: list[dict[str, Any]]) -> list[FieldError]:
    """Two ports may not claim the same protocol/hostIP/hostPort (AccumulateUniqueHostPorts)."""
    out, seen = [], set()
    for i, c in enumerate(containers):
        for j, port in enumerate(c.get("ports") or []):
            if port.get("hostPort"):
                what = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{port['hostPort']}"
                if what in seen:
                    out.append(duplicate(child(index(child(index(path, i), "ports"), j), "hostPort"), what))
                seen.add(what)
    return out


def containers(path: str, regular: list[dict[str, Any]], is_pod: bool) -> list[FieldError]:
    if not regular:
        return [required(path)]
    out: list[FieldError] = []
    seen: set[str] = set()
    for i, c in enumerate(regular):
        at = index(path, i)
        out += _container(at, c, is_pod)
        if c.get("name", "") in seen:
            out.append(duplicate(child(at, "name"), c.get("name", "")))
        seen.add(c.get("name", ""))
        if c.get("restartPolicy") is not None:
            out.append(forbidden(child(at, "restartPolicy"), "may not be set for non-init containers"))
    return out + _host_port_clashes(path, regular)


def init_containers(path: str, init: list[dict[str, Any]], regular: list[dict[str, Any]],
                    is_pod: bool) -> list[FieldError]:
    out: list[FieldError] = []
    seen = {c.get("name", "") for c in regular}
    for i, c in enumerate(init):
        at = index(path, i)
        out += _container(at, c, is_pod)
        if c.get("restartPolicy") is not None and c["restartPolicy"] != "Always":
            out.append(not_supported(child(at, "restartPolicy"), c["restartPolicy"], ["Always"]))
        if c.get("name", "") in seen:
            out.append(duplicate(child(at, "name"), c.get("name", "")))
        elif c.get("name"):
            seen.add(c["name"])
        out += _host_port_clashes(path, [c])            # init containers run one at a time
    return out


def _host_network(path: str, spec: dict[str, Any], is_pod: bool) -> list[FieldError]:
    """With hostNetwork a container's port is the node's: hostPort must equal containerPort
    (a template may leave it 0, the Pod made from it gets it defaulted)."""
    if spec.get("hostNetwork") is not True:
        return []
    out = []
    for i, c in enumerate(spec.get("containers") or []):
        for j, port in enumerate(c.get("ports") or []):
            hp, cp = port.get("hostPort", 0), port.get("containerPort", 0)
            if (is_pod or hp) and hp != cp:
                at = child(index(child(index(child(path, "containers"), i), "ports"), j), "hostPort")
                out.append(invalid(at, hp, "must match `containerPort` when `hostNetwork` is true"))
    return out


def tolerations(path: str, items: list[dict[str, Any]]) -> list[FieldError]:
    out: list[FieldError] = []
    for i, t in enumerate(items):
        at = index(path, i)
        k, op, value, effect = t.get("key", ""), t.get("operator", ""), t.get("value", ""), t.get("effect", "")
        if k:
            out += each(child(at, "key"), k, names.qualified_name_errors(k))
        if not k and op != "Exists":
            out.append(invalid(child(at, "operator"), op, 'operator must be Exists when `key` is empty, '
                                                          'which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            out.append(invalid(child(at, "effect"), effect,
                               "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op in ("Equal", ""):
            problems = names.label_value_errors(value)
            if problems:
                out.append(invalid(child(at, "operator"), value, ";".join(problems)))
        elif op == "Exists":
            if value:
                out.append(invalid(child(at, "operator"), value, "value must be empty when `operator` is 'Exists'"))
        else:
            out.append(not_supported(child(at, "operator"), op, TOLERATION_OPERATORS))
        if effect and effect not in TAINT_EFFECTS:
            out.append(not_supported(child(at, "effect"), effect, TAINT_EFFECTS))
    return out


def _subdomain_field(spec: dict[str, Any], path: str, name: str) -> list[FieldError]:
    value = spec.get(name, "")
    return name_field(child(path, name), value, names.dns1123_subdomain_errors) if value else []


def pod_spec(path: str, spec: dict[str, Any], is_pod: bool) -> list[FieldError]:
    """ValidatePodSpec, for the parts tulle models (paths under `path`, e.g. `spec`)."""
    regular = spec.get("containers") or []
    out = containers(child(path, "containers"), regular, is_pod)
    out += init_containers(child(path, "initContainers"), spec.get("initContainers") or [], regular, is_pod)
    out += _host_network(path, spec, is_pod)
    out += enum(child(path, "restartPolicy"), spec.get("restartPolicy"), RESTART_POLICIES)
    out += enum(child(path, "dnsPolicy"), spec.get("dnsPolicy"), DNS_POLICIES)
    if spec.get("dnsPolicy") == "None" and not (spec.get("dnsConfig") or {}).get("nameservers"):
        out.append(required(child(path, "dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
    out += labels(child(path, "nodeSelector"), spec.get("nodeSelector"))
    for name in ("serviceAccountName", "nodeName", "priorityClassName"):
        out += _subdomain_field(spec, path, name)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        out.append(invalid(child(path, "activeDeadlineSeconds"), deadline, names.inclusive_range_error(1, MAX_INT32)))
    for name in ("hostname", "subdomain"):
        if spec.get(name):
            out += name_field(child(path, name), spec[name], names.dns1123_label_errors)
    out += tolerations(child(path, "tolerations"), spec.get("tolerations") or [])
    for i, alias in enumerate(spec.get("hostAliases") or []):
        at = index(child(path, "hostAliases"), i)
        out += ip_errors(child(at, "ip"), alias.get("ip", ""))
        for j, host in enumerate(alias.get("hostnames") or []):
            out += name_field(index(child(at, "hostnames"), j), host, names.dns1123_subdomain_errors)
    return out


def pod_template(path: str, template: dict[str, Any] | None) -> list[FieldError]:
    """ValidatePodTemplateSpec: its labels and annotations sit at `<path>.labels` (sic,
    as the API server words it), its spec is a Pod's less the Pod-only checks."""
    if template is None:
        return [required(path)]
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    out = labels(child(path, "labels"), meta.get("labels"))
    out += annotations(child(path, "annotations"), meta.get("annotations"))
    out += pod_spec(child(path, "spec"), spec, is_pod=False)
    if spec.get("ephemeralContainers"):
        out.append(forbidden(child(path, "spec", "ephemeralContainers"),
                             "ephemeral containers not allowed in pod template"))
    return out


# -- the Pod itself -------------------------------------------------------------------

def _changed(path: str, new: Any, old: Any) -> list[str]:
    """The paths where two specs differ (what the Forbidden message lists)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return [p for k in sorted(set(new) | set(old)) for p in _changed(child(path, k), new.get(k), old.get(k))]
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [p for i, (a, b) in enumerate(zip(new, old)) for p in _changed(index(path, i), a, b)]
    return [] if new == old else [path]


def _tolerations_kept(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> bool:
    """Every old toleration is still there (only its tolerationSeconds may change)."""
    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return {k: v for k, v in a.items() if k != "tolerationSeconds"} == \
            {k: v for k, v in b.items() if k != "tolerationSeconds"}
    return all(any(same(o, n) for n in new) for o in old)


def pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """ValidatePodUpdate: images may change, tolerations may be added, the deadline may
    shrink; anything else in the spec is Forbidden."""
    spec, was = new.get("spec") or {}, old.get("spec") or {}
    out: list[FieldError] = []
    for group in ("containers", "initContainers"):
        if len(spec.get(group) or []) != len(was.get(group) or []):
            return [forbidden(child("spec", group), "pod updates may not add or remove containers")]
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), was.get("activeDeadlineSeconds")
    if deadline is not None and old_deadline is not None and deadline > old_deadline:
        out.append(invalid("spec.activeDeadlineSeconds", deadline, "must be less than or equal to previous value"))
    elif deadline is None and old_deadline is not None:
        out.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    if not _tolerations_kept(spec.get("tolerations") or [], was.get("tolerations") or []):
        out.append(forbidden("spec.tolerations",
                             "existing toleration can not be modified except its tolerationSeconds"))
    munged = {**spec, "tolerations": was.get("tolerations"), "activeDeadlineSeconds": old_deadline}
    for group in ("containers", "initContainers"):
        if group in spec:
            munged[group] = [{**c, "image": o.get("image")} for c, o in zip(spec[group], was.get(group) or [])]
    munged = {k: v for k, v in munged.items() if v is not None}
    diff = _changed("spec", munged, was)
    if diff:
        out.append(forbidden("spec", f"pod updates may not change fields other than {UPDATABLE}\n"
                                     f"changed: {', '.join(diff)}"))
    return out


def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    out = pod_spec("spec", obj.get("spec") or {}, is_pod=True)
    return out + (pod_update(obj, old) if old is not None else [])
