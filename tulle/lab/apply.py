"""`tulle lab apply -f` and `tulle lab delete -f FILE | KIND NAME`: manifests into the lab, as kubectl does.

The lab plays every part behind the API at once: `apply` writes the objects
(kubectl's lines: `service/web created`, `deployment.apps/web configured`,
`pod/x unchanged`; warnings on stderr) and, before it returns, does what the
scheduler, the deployment controller and the kubelets would do — Pods run on
their node (nodeName honoured, else the node with the fewest pods), a
Deployment's replicas are created, replaced or removed. Deleting a Pod, a
Deployment or a Namespace stops the pods' servers and removes their netns too.

Every object of a file is checked first (kind served, fields valid): a file with
one bad object creates nothing and says which field breaks which rule. Objects
are then applied in file order, as kubectl does, and deleted in reverse order
(a Namespace after what lives in it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

from tulle.cluster import errors, kinds
from tulle.cluster.api import applied
from tulle.cluster.errors import ApiError
from tulle.cluster.kinds import Kind
from tulle.errors import TulleError
from tulle.lab import deployments, pods, podspec
from tulle.lab.get import name_form, ref_form
from tulle.lab.session import Session


@dataclass
class Outcome:
    """What kubectl would print: result lines (stdout), warnings and errors (stderr)."""

    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    failed: bool = False

    def error(self, exc: ApiError, doing: str, source: str) -> None:
        self.err.append(f"Error from server ({exc.reason}): error when {doing} \"{source}\": {exc.msg}")
        self.failed = True


def read(path: str) -> list[dict]:
    """The objects of a manifest file (`-`: stdin), as kubectl reads them."""
    from tulle.cluster import manifest

    return manifest.load_file(path)


def source_name(path: str) -> str:
    return "STDIN" if path == "-" else path


def _namespaced(k: Kind, obj: dict) -> dict:
    body = copy.deepcopy(obj)
    md = body.setdefault("metadata", {})
    if k.namespaced:
        md["namespace"] = md.get("namespace") or podspec.DEFAULT_NAMESPACE
    return body


def check(objs: list[dict], source: str, find: Callable[[Kind, dict], dict | None] | None = None) -> Outcome:
    """Every object's kind and fields before anything is written — against the stored object
    when `find` has one (update rules: immutable fields), else as a creation."""
    from tulle.cluster import prepare

    out = Outcome()
    for obj in objs:
        old = None
        try:
            k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
            body = _namespaced(k, obj)
            old = find(k, body) if find is not None else None
            prepare.prepare(applied(body, old) if old is not None else body, old)
        except ApiError as exc:
            out.error(exc, "patching" if old is not None else "creating", source)
    return out


def apply(s: Session, objs: list[dict], source: str) -> Outcome:
    """Apply every object (after `check` passed for all of them)."""
    out = check(objs, source, lambda k, body: s.client.find(k, body["metadata"].get("name", ""),
                                                            body["metadata"].get("namespace")))
    if out.failed:
        return out
    for obj in objs:
        k = kinds.of(obj["apiVersion"], obj["kind"])
        body = _namespaced(k, obj)
        warnings: list[str] = []
        what = name_form(k, body["metadata"].get("name", ""))
        try:
            action = _apply_one(s, k, body, warnings)
        except TulleError as exc:
            out.err += [f"Warning: {w}" for w in warnings]
            if isinstance(exc, ApiError):
                out.error(exc, "applying", source)
            else:                           # the lab could not run it (a port taken, CNI failed, ...)
                out.err.append(f'error: {what} in "{source}": {exc.msg}')
                out.failed = True
            continue
        out.err += [f"Warning: {w}" for w in warnings]
        out.out.append(f"{what} {action}")
    return out


def _apply_one(s: Session, k: Kind, body: dict, warnings: list[str]) -> str:
    md = body["metadata"]
    if k.kind == "Pod":
        old = s.client.find(k, md.get("name", ""), md["namespace"])
        if old is None:
            pods.create(s, body, warnings)
            return "created"
        spec = body.setdefault("spec", {})
        spec.setdefault("nodeName", (old.get("spec") or {}).get("nodeName"))   # the binding stays
    stored, action = s.client.apply(body)
    warnings += s.client.warnings
    if k.kind == "Deployment":
        deployments.reconcile(s, stored)
    return action


def delete_objects(s: Session, objs: list[dict], source: str) -> Outcome:
    """`delete -f`: every object of the file, the last first."""
    out = Outcome()
    for obj in reversed(objs):
        try:
            k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
            md = _namespaced(k, obj)["metadata"]
            delete(s, k, md.get("name", ""), md.get("namespace"))
        except ApiError as exc:
            out.error(exc, "deleting", source)
            continue
        out.out.append(f"{ref_form(k, md.get('name', ''))} deleted")
    return out


def delete(s: Session, k: Kind, name: str, namespace: str | None) -> None:
    """Delete one object; Pods, Deployments and Namespaces take their pods' runtime with them."""
    namespace = (namespace or podspec.DEFAULT_NAMESPACE) if k.namespaced else None
    if k.kind == "Pod":
        pods.remove(s, namespace, name)
    elif k.kind == "Deployment":
        deployments.delete(s, namespace, name)
    elif k.kind == "Namespace":
        s.client.get(k, name)                             # NotFound before anything stops
        for key in [key for key in s.st.pods if podspec.split_ref(key)[0] == name]:
            pods.remove(s, *podspec.split_ref(key))
        s.client.delete(k, name)
    else:
        s.client.delete(k, name, namespace)


def delete_named(s: Session, word: str, names: list[str], namespace: str | None) -> Outcome:
    """`delete KIND NAME...`: kubectl's `service "web" deleted`, or its NotFound line."""
    k = kinds.lookup(word)
    out = Outcome()
    for name in names:
        try:
            delete(s, k, name, namespace)
        except errors.NotFound as exc:
            out.err.append(f"Error from server (NotFound): {exc.msg}")
            out.failed = True
            continue
        out.out.append(f"{ref_form(k, name)} deleted")
    return out
