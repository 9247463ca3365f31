"""Unknown fields (pruned, with the API server's warning) and wrong JSON types."""

from __future__ import annotations

import pytest

from tests.unit.cluster.objects import (changed, deployment, ingress, lease, network_policy, pod, secret, service)
from tulle.cluster import errors, schema
from tulle.cluster.fieldtypes import base64_error_offset


def test_unknown_fields_are_dropped_with_warnings_that_name_them():
    obj = changed(service(), lambda o: (o["spec"]["ports"][0].update(bogus=1), o["spec"].update(foo="x"),
                                        o["metadata"].update(colour="red"), o.update(extra={"a": 1})))
    clean, warnings = schema.prune(obj)
    assert warnings == ['unknown field "metadata.colour"', 'unknown field "spec.ports[0].bogus"',
                        'unknown field "spec.foo"', 'unknown field "extra"']
    assert clean == service()
    assert obj["spec"]["foo"] == "x"                      # a copy: the input keeps everything


def test_deeply_nested_unknown_fields_get_full_paths():
    obj = changed(deployment(), lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePolicy="x"))
    assert schema.prune(obj)[1] == ['unknown field "spec.template.spec.containers[0].imagePolicy"']


def test_unmodelled_parts_are_kept_whole_and_quiet():
    extra = {"volumes": [{"name": "v", "csi": {"driver": "x", "volumeAttributes": {"k": "v"}}}],
             "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}
    obj = changed(pod(**extra), lambda o: o["spec"]["containers"][0].update(
        resources={"limits": {"cpu": 1, "nvidia.com/gpu": "1"}}, livenessProbe={"exec": {"command": ["true"]}}))
    clean, warnings = schema.prune(obj)
    assert warnings == [] and clean == obj


def test_nulls_are_dropped_as_unset():
    obj = changed(pod(), lambda o: (o["metadata"].update(creationTimestamp=None, labels={"a": None}),
                                    o["spec"].update(nodeName=None)))
    clean, warnings = schema.prune(obj)
    assert warnings == [] and clean == changed(pod(), lambda o: o["metadata"].update(labels={}))


def test_integral_floats_are_integers():
    clean, _ = schema.prune(changed(service(), lambda o: o["spec"]["ports"][0].update(port=80.0)))
    assert clean["spec"]["ports"][0]["port"] == 80 and isinstance(clean["spec"]["ports"][0]["port"], int)


@pytest.mark.parametrize("obj, expected", [
    (changed(service(), lambda o: o["spec"]["ports"][0].update(port="80")),
     'spec.ports[0].port: Invalid value: "80": must be an integer'),
    (changed(service(), lambda o: o["spec"]["ports"][0].update(port=True)),
     "spec.ports[0].port: Invalid value: true: must be an integer"),
    (changed(service(), lambda o: o["spec"]["ports"][0].update(targetPort=[80])),
     "spec.ports[0].targetPort: Invalid value: [80]: must be an integer or a string"),
    (changed(service(), lambda o: o["spec"].update(ports={"port": 80})),
     'spec.ports: Invalid value: {"port":80}: must be a list'),
    (changed(service(), lambda o: o["spec"].update(selector=["app"])),
     'spec.selector: Invalid value: ["app"]: must be an object'),
    (changed(pod(), lambda o: o["metadata"].update(labels={"version": 1.5})),
     "metadata.labels[version]: Invalid value: 1.5: must be a string"),
    (changed(pod(), lambda o: o["spec"].update(hostNetwork="yes")),
     'spec.hostNetwork: Invalid value: "yes": must be a boolean'),
    (changed(pod(), lambda o: o["metadata"].update(creationTimestamp="yesterday")),
     'metadata.creationTimestamp: Invalid value: "yesterday": must be an RFC 3339 time (e.g. 2006-01-02T15:04:05Z)'),
    (network_policy(ingress=[{"ports": [{"port": 80.5}]}]),
     "spec.ingress[0].ports[0].port: Invalid value: 80.5: must be an integer or a string"),
    (ingress(defaultBackend={"service": {"name": "web", "port": {"number": "80"}}}),
     'spec.defaultBackend.service.port.number: Invalid value: "80": must be an integer'),
    (ingress(defaultBackend={"service": {"name": "web", "port": {"name": 80}}}),
     "spec.defaultBackend.service.port.name: Invalid value: 80: must be a string"),
    (secret(data={"key": "not base64!"}),
     'data[key]: Invalid value: "<secret contents redacted>": illegal base64 data at input byte 3'),
    (secret(data={"key": 42}),
     'data[key]: Invalid value: "<secret contents redacted>": must be a base64-encoded string'),
    (lease(acquireTime="2024-13-01T00:00:00.000000Z"),
     'spec.acquireTime: Invalid value: "2024-13-01T00:00:00.000000Z": must be an RFC 3339 time with microseconds '
     "(e.g. 2006-01-02T15:04:05.000000Z)"),
])
def test_wrong_json_types_are_field_errors(obj, expected):
    assert [str(e) for e in schema.check_types(obj)] == [expected]


@pytest.mark.parametrize("target", [8080, "http"])
def test_int_or_string_takes_both(target):
    assert schema.check_types(changed(service(), lambda o: o["spec"]["ports"][0].update(targetPort=target))) == []


def test_inspect_does_both_in_one_pass():
    obj = changed(service(), lambda o: o["spec"]["ports"][0].update(port="80", bogus=1))
    clean, warnings, wrong = schema.inspect(obj)
    assert warnings == ['unknown field "spec.ports[0].bogus"'] and [e.path for e in wrong] == ["spec.ports[0].port"]


def test_unknown_kind_is_bad_request():
    with pytest.raises(errors.BadRequest, match='no matches for kind "ConfigMap" in version "v1"'):
        schema.prune({"apiVersion": "v1", "kind": "ConfigMap"})


@pytest.mark.parametrize("text, offset", [
    ("YWJj", None), ("YWI=", None), ("YQ==", None), ("YW\nJj\n", None), ("", None),
    ("Y", 0), ("YWJ", 0), ("YQ=", 3), ("YW!j", 2), ("YQ=a", 2), ("YQ==x", 4), ("=AAA", 0),
])
def test_base64_errors_name_gos_offset(text, offset):
    assert base64_error_offset(text) == offset
