"""`tulle lab get KIND [NAME] [-n NS | -A] [-l SELECTOR] [-o wide|json|yaml|name]`, as kubectl answers.

A table (tulle.lab.tables) by default; `-o json|yaml` prints the object itself for
one NAME and a `List` with `items` otherwise, keys sorted and indented as kubectl
prints them (4 spaces in JSON); `-o name` prints `kind[.group]/name` lines. An
empty answer is kubectl's `No resources found in default namespace.` on stderr.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tulle.cluster import kinds
from tulle.cluster.kinds import Kind
from tulle.errors import ConfigError
from tulle.lab import tables

if TYPE_CHECKING:
    from tulle.cluster.api import Client

OUTPUTS = ("wide", "json", "yaml", "name")


@dataclass(frozen=True)
class Answer:
    stdout: str = ""
    stderr: str = ""


def name_form(kind: Kind, name: str) -> str:
    """`pod/web-1`, `deployment.apps/web`: how kubectl names an object in -o name and apply."""
    return f"{kind.singular}.{kind.group}/{name}" if kind.group else f"{kind.singular}/{name}"


def ref_form(kind: Kind, name: str) -> str:
    """`deployment.apps "web"`: how kubectl names an object in `deleted` and errors."""
    return f'{kind.singular}.{kind.group} "{name}"' if kind.group else f'{kind.singular} "{name}"'


def as_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def dump(body: dict, output: str) -> str:
    if output == "json":
        return json.dumps(body, indent=4, sort_keys=True)
    import yaml

    class Dumper(yaml.SafeDumper):
        """Quotes like kubectl's YAML (double quotes where a plain scalar would be misread)."""

        def choose_scalar_style(self):  # type: ignore[no-untyped-def]
            style = super().choose_scalar_style()
            return '"' if style == "'" else style

    return yaml.dump(body, Dumper=Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True).rstrip("\n")


def nothing_found(kind: Kind, namespace: str | None) -> str:
    if kind.namespaced and namespace:
        return f"No resources found in {namespace} namespace."
    return "No resources found"


def get(client: "Client", word: str, name: str | None = None, namespace: str = "default",
        all_namespaces: bool = False, selector: str | None = None, output: str | None = None,
        now: datetime.datetime | None = None) -> Answer:
    """What `kubectl get` would print; NotFound (in kubectl's words) for a missing NAME."""
    if output is not None and output not in OUTPUTS:
        raise ConfigError(f"unable to match a printer suitable for the output format {output!r}, "
                          f"allowed formats are: {','.join(OUTPUTS)}")
    kind = kinds.lookup(word)
    ns = None if all_namespaces or not kind.namespaced else namespace
    if name and all_namespaces and kind.namespaced:
        raise ConfigError("a resource cannot be retrieved by name across all namespaces")
    if name:
        items = [client.get(kind, name, ns or namespace)]
    else:
        items = client.list(kind, ns, selector=selector)[0]
    if output in ("json", "yaml"):
        return Answer(dump(items[0] if name else as_list(items), output))
    if output == "name":
        return Answer("\n".join(name_form(kind, o["metadata"]["name"]) for o in items))
    if not items:
        return Answer(stderr=nothing_found(kind, ns))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Answer(tables.render(kind.kind, items, now, wide=output == "wide",
                                all_namespaces=all_namespaces and kind.namespaced))
