"""Label selectors: both kinds of matching, kubectl's -l syntax, table formatting."""

from __future__ import annotations

import pytest

from tulle.cluster import errors
from tulle.cluster.labels import format_labels, map_matches, parse_selector, selector_matches

WEB = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize("selector, labels, expected", [
    (None, WEB, False),                                         # no selector: nothing
    ({}, WEB, True),                                            # empty selector: everything
    ({}, {}, True),
    ({"matchLabels": {"app": "web"}}, WEB, True),
    ({"matchLabels": {"app": "web", "tier": "back"}}, WEB, False),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, WEB, False),
    ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, WEB, False),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, WEB, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, WEB, True),
    ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, WEB, False),
    ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, WEB, True),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, WEB, False),
    ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}, WEB, False),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]},
     WEB, False),                                               # AND of both parts
])
def test_selector_matches(selector, labels, expected):
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize("selector, labels, expected", [
    ({"app": "web"}, WEB, True),
    ({"app": "web", "env": "dev"}, WEB, False),
    ({}, WEB, False),                                           # a Service without selector selects nothing
    (None, WEB, False),
    ({"app": "web"}, None, False),
])
def test_map_matches(selector, labels, expected):
    assert map_matches(selector, labels) is expected


def test_parse_selector_knows_every_form():
    assert parse_selector("app=web,tier!=db,env in (a,b),!legacy,release, zone notin ( x , y ),v==1") == {
        "matchLabels": {"app": "web", "v": "1"},
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "env", "operator": "In", "values": ["a", "b"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "release", "operator": "Exists"},
            {"key": "zone", "operator": "NotIn", "values": ["x", "y"]},
        ]}


@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("app=", {"matchLabels": {"app": ""}}),
    ("example.com/app=web", {"matchLabels": {"example.com/app": "web"}}),
    ("a=b,a=c", {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["c"]}]}),
])
def test_parse_selector_edge_cases(text, expected):
    assert parse_selector(text) == expected


def test_a_parsed_selector_matches_as_kubectl_means_it():
    sel = parse_selector("app=web,env notin (dev),!legacy")
    assert selector_matches(sel, WEB)
    assert not selector_matches(sel, {**WEB, "legacy": "yes"})
    assert not selector_matches(parse_selector("a=b,a=c"), {"a": "b"})


@pytest.mark.parametrize("text, message", [
    ("=web", "found '=', expected a label key"),
    ("app web", "found 'web' after 'app', expected one of '=', '==', '!=', 'in', 'notin', ','"),
    ("env in (a,b", "expected ')' to close the value list"),
    ("env in a", "expected '(' after in/notin"),
    ("app=web,", "expected a requirement after ','"),
    ("!", "expected a label key at the end"),
    ("bad/key/x=1", "key 'bad/key/x': a valid label key must consist of"),
    ("app=-web", "value '-web': a valid label must be an empty string or consist of"),
])
def test_parse_selector_errors_name_the_selector_and_the_problem(text, message):
    with pytest.raises(errors.BadRequest) as e:
        parse_selector(text)
    assert str(e.value).startswith(f'unable to parse label selector "{text}": {message}')


def test_format_labels():
    assert format_labels({"tier": "front", "app": "web"}) == "app=web,tier=front"
    assert format_labels({}) == "<none>" and format_labels(None) == "<none>"
