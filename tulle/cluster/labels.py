"""Label selectors: matching, kubectl's `-l` syntax, and labels as tables print them.

Two selector forms exist in the API and they disagree about "empty":
- metav1.LabelSelector (Deployments, NetworkPolicy peers): `{}` selects
  everything, a missing (None) selector selects nothing — `selector_matches`.
- a Service's `spec.selector` map: empty or absent selects nothing (the
  endpoints controller leaves such a Service alone) — `map_matches`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from tulle.cluster import names
from tulle.cluster.errors import BadRequest

Labels = Mapping[str, str]


def _requirement_matches(expr: Mapping[str, Any], labels: Labels) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False                     # an operator the API would have refused


def selector_matches(selector: Mapping[str, Any] | None, labels: Labels | None) -> bool:
    """metav1.LabelSelector semantics: matchLabels AND every matchExpression."""
    if selector is None:
        return False
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_requirement_matches(e, labels) for e in selector.get("matchExpressions") or [])


def map_matches(selector: Labels | None, labels: Labels | None) -> bool:
    """A Service selector: every pair present in `labels`; empty selects nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def format_labels(labels: Labels | None) -> str:
    """`a=b,c=d` sorted by key, `<none>` when empty (kubectl's --show-labels)."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


# -- kubectl's -l syntax ---------------------------------------------------------------

_TOKEN = re.compile(r"\s*(==|!=|=|!|,|\(|\)|[^\s,=!()]+)")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:                # only whitespace can be left, and rstrip removed it
            break
        out.append(m.group(1))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the tokens of `app=web,tier!=db,env in (a,b),!legacy,release`."""

    def __init__(self, text: str) -> None:
        self.text, self.toks, self.i = text, _tokens(text), 0

    def fail(self, detail: str) -> BadRequest:
        return BadRequest(f'unable to parse label selector "{self.text}": {detail}')

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.i += tok is not None
        return tok

    def ident(self, what: str) -> str:
        tok = self.take()
        if tok is None or tok in ("==", "!=", "=", "!", ",", "(", ")"):
            raise self.fail(f"found {tok!r}, expected {what}" if tok else f"expected {what} at the end")
        return tok

    def key(self) -> str:
        k = self.ident("a label key")
        problems = names.qualified_name_errors(k)
        if problems:
            raise self.fail(f"key {k!r}: {problems[0]}")
        return k

    def value(self) -> str:
        tok = self.peek()
        v = "" if tok in (None, ",", ")") else self.ident("a label value")
        problems = names.label_value_errors(v)
        if problems:
            raise self.fail(f"value {v!r}: {problems[0]}")
        return v

    def values(self) -> list[str]:
        if self.take() != "(":
            raise self.fail("expected '(' after in/notin")
        out = [self.value()]
        while self.peek() == ",":
            self.take()
            out.append(self.value())
        if self.take() != ")":
            raise self.fail("expected ')' to close the value list")
        return out

    def requirement(self) -> dict[str, Any]:
        if self.peek() == "!":
            self.take()
            return {"key": self.key(), "operator": "DoesNotExist"}
        k = self.key()
        op = self.peek()
        if op in (None, ","):
            return {"key": k, "operator": "Exists"}
        self.take()
        if op in ("=", "=="):
            return {"key": k, "operator": "Equals", "values": [self.value()]}
        if op == "!=":
            return {"key": k, "operator": "NotIn", "values": [self.value()]}
        if op in ("in", "notin"):
            return {"key": k, "operator": "In" if op == "in" else "NotIn", "values": self.values()}
        raise self.fail(f"found {op!r} after {k!r}, expected one of '=', '==', '!=', 'in', 'notin', ','")

    def parse(self) -> list[dict[str, Any]]:
        out = []
        while self.peek() is not None:
            out.append(self.requirement())
            sep = self.take()
            if sep not in (None, ","):
                raise self.fail(f"found {sep!r}, expected ','")
            if sep == "," and self.peek() is None:
                raise self.fail("expected a requirement after ','")
        return out


def parse_selector(text: str) -> dict[str, Any]:
    """kubectl's `-l` text as a metav1.LabelSelector; `""` selects everything.
    BadRequest, naming the selector and the spot, when it cannot be read."""
    match_labels: dict[str, str] = {}
    exprs: list[dict[str, Any]] = []
    for req in _Parser(text).parse():
        if req["operator"] == "Equals" and req["key"] not in match_labels:
            match_labels[req["key"]] = req["values"][0]
        elif req["operator"] == "Equals":          # a=b,a=c: both must hold, as kubectl ANDs them
            exprs.append({"key": req["key"], "operator": "In", "values": req["values"]})
        else:
            exprs.append(req)
    out: dict[str, Any] = {}
    if match_labels:
        out["matchLabels"] = match_labels
    if exprs:
        out["matchExpressions"] = exprs
    return out
