"""Reading manifests the way `kubectl apply -f` does.

A file holds YAML documents (`---` separated) or a stream of JSON objects; empty
documents are skipped; a `kind: List` (or a typed list such as `ServiceList`) is
expanded into its items, whose kind and apiVersion a typed list may leave out.
Every object must be a mapping with string `apiVersion` and `kind`; anything else
is BadRequest naming the source and the document (`error parsing web.yaml:
document 2: Object 'Kind' is missing in '{...}'`).

YAML is read as kubectl's YAML→JSON conversion reads it: timestamps stay strings
(a label value `2024-01-01` is text, not a date) and mapping keys become strings.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterator

import yaml

from tulle.cluster.errors import BadRequest

_SUFFIXES = (".json", ".yaml", ".yml")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when there, as kubectl's Go YAML is a libyaml port)
    without the timestamp rule: JSON has no dates."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in rules if tag != "tag:yaml.org,2002:timestamp"]
    for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _json_key(k: Any) -> str:
    """A YAML mapping key as JSON text: `true`, `null`, `1` (what sigs.k8s.io/yaml writes)."""
    if isinstance(k, bool):
        return "true" if k else "false"
    return "null" if k is None else str(k)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_json_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class _DocumentError(Exception):
    """A document that cannot be read or is not an API object (`number` counts from 1)."""

    def __init__(self, number: int, detail: str) -> None:
        super().__init__(detail)
        self.number, self.detail = number, detail


def _yaml_documents(text: str) -> Iterator[tuple[int, Any]]:
    n = 0
    try:
        for n, doc in enumerate(yaml.load_all(text, Loader=_Loader), start=1):
            yield n, _jsonable(doc)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise _DocumentError(n + 1, f"error converting YAML to JSON: yaml: {where}{problem}") from None


def _json_documents(text: str) -> Iterator[tuple[int, Any]]:
    decoder, pos, n = json.JSONDecoder(), 0, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return
        n += 1
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise _DocumentError(n, f"json: line {e.lineno}: {e.msg}") from None
        yield n, doc


def _compact(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def _type_meta_problem(obj: Any) -> str:
    """Why `obj` is not an API object ("" when it is one), in the API machinery's words."""
    if not isinstance(obj, dict):
        got = "a list" if isinstance(obj, list) else f"a {type(obj).__name__}" if obj is not None else "null"
        return f"expected an object with apiVersion and kind, got {got}"
    for field, shown in (("kind", "Kind"), ("apiVersion", "apiVersion")):
        value = obj.get(field)
        if value in (None, ""):
            return f"Object '{shown}' is missing in '{_compact(obj)}'"
        if not isinstance(value, str):
            return f"'{field}' must be a string, got {_compact(value)}"
    return ""


def _is_list(obj: dict[str, Any]) -> bool:
    return obj["kind"] == "List" or (obj["kind"].endswith("List") and "items" in obj)


def _objects(obj: Any, where: str) -> list[dict[str, Any]]:
    """`obj` checked, or its items when it is a list (typed lists lend items their kind)."""
    problem = _type_meta_problem(obj)
    if problem:
        raise _DocumentError(0, f"{where}{problem}")
    if not _is_list(obj):
        return [obj]
    items = obj.get("items") or []
    if not isinstance(items, list):
        raise _DocumentError(0, f"{where}items must be a list, got {_compact(items)}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and obj["kind"] != "List" and not item.get("kind"):
            item = {"apiVersion": obj["apiVersion"], **item, "kind": obj["kind"][:-len("List")]}
        out += _objects(item, f"{where}items[{i}]: ")
    return out


def load(text: str | bytes, source: str = "-") -> list[dict[str, Any]]:
    """Every API object in `text` (YAML or JSON), in order; BadRequest when unreadable."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise BadRequest(f"error parsing {source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    text = text.lstrip("\ufeff")
    try:
        return _read_documents(text)
    except _DocumentError as e:
        raise BadRequest(f"error parsing {source}: document {e.number}: {e.detail}") from None


def _read_documents(text: str) -> list[dict[str, Any]]:
    if text.lstrip().startswith("{"):
        try:
            return _checked(_json_documents(text))
        except _DocumentError as not_json:      # perhaps a YAML flow mapping: `{kind: Pod, ...}`
            try:
                return _checked(_yaml_documents(text))
            except _DocumentError:
                raise not_json from None
    return _checked(_yaml_documents(text))


def _checked(documents: Iterator[tuple[int, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n, doc in documents:
        if doc is not None:
            try:
                out += _objects(doc, "")
            except _DocumentError as e:
                raise _DocumentError(n, e.detail) from None
    return out


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise BadRequest(f'the path "{path}" does not exist') from None
    except OSError as e:
        raise BadRequest(f'error reading "{path}": {e.strerror}') from None


def load_file(path: str) -> list[dict[str, Any]]:
    """`-f PATH`: a file, `-` for stdin, or a directory (its .json/.yaml/.yml files, by name)."""
    if path == "-":
        return load(sys.stdin.buffer.read(), "STDIN")
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(_SUFFIXES))
        return [obj for f in files for obj in load(_read(os.path.join(path, f)), os.path.join(path, f))]
    return load(_read(path), path)
