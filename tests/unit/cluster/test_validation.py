"""Validation shared by every kind (names, metadata, updates), `prepare`, and the
Kubernetes docs' own manifests passing with no errors and no warnings.
Kind-specific rules: test_validation_core.py, test_validation_groups.py."""

from __future__ import annotations

import os

import pytest

from tests.unit.cluster.objects import (DNS1035, DNS_LABEL, DNS_SUBDOMAIN, KEY_NAME, LABEL_VALUE, changed,
                                        messages, namespace, pod, service, stored)
from tulle.cluster import errors, manifest, names
from tulle.cluster.prepare import prepare

MANIFESTS = os.path.join(os.path.dirname(__file__), "manifests")


def _docs_objects() -> list[dict]:
    out = []
    for obj in manifest.load_file(MANIFESTS):
        if obj["kind"] != "Namespace":              # the object API fills the namespace in
            obj["metadata"].setdefault("namespace", "default")
        out.append(obj)
    return out


@pytest.mark.parametrize("obj", _docs_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_the_docs_manifests_pass_without_errors_or_warnings(obj):
    ready, warnings = prepare(obj)
    assert warnings == []
    assert ready["metadata"]["name"] == obj["metadata"]["name"]


# -- the name rules -----------------------------------------------------------------

@pytest.mark.parametrize("check, good, bad", [
    (names.is_dns1123_label, ["a", "my-name", "123-abc", "a" * 63], ["", "A", "-a", "a-", "a.b", "a" * 64]),
    (names.is_dns1123_subdomain, ["example.com", "a", "1.2.3"], ["", "a..b", ".a", "A.com", "a" * 254]),
    (names.is_dns1035_label, ["my-name", "a1"], ["1a", "", "a_b", "a-"]),
    (names.is_iana_svc_name, ["http", "h2c", "web-http", "a" * 15], ["", "80", "a--b", "-a", "HTTP", "a" * 16]),
    (names.is_qualified_name, ["app", "example.com/app", "My_Name.x"], ["", "/app", "a/b/c", "example.com/", "-a"]),
    (names.is_label_value, ["", "v1", "my_value", "a" * 63], ["-a", "a b", "a" * 64]),
])
def test_name_rules(check, good, bad):
    assert [v for v in good if not check(v)] == []
    assert [v for v in bad if check(v)] == []


def test_generate_name_may_end_in_a_dash():
    assert names.name_is_dns_subdomain("web-", True) == []
    assert names.name_is_dns_subdomain("web-", False) != []


# -- metadata ------------------------------------------------------------------------

def _meta(**md):
    return lambda o: o["metadata"].update(md)


@pytest.mark.parametrize("obj, change, expected", [
    (namespace(), _meta(name="Web"), [f'metadata.name: Invalid value: "Web": {DNS_LABEL}']),
    (namespace(), _meta(name="a.b"), ['metadata.name: Invalid value: "a.b": must not contain dots']),
    (namespace(), _meta(name="a" * 64), [       # the name is also the value of the namespace's name label
        f'metadata.name: Invalid value: "{"a" * 64}": must be no more than 63 characters',
        f'metadata.labels: Invalid value: "{"a" * 64}": must be no more than 63 bytes']),
    (service(), _meta(name="1web"), [f'metadata.name: Invalid value: "1web": {DNS1035}']),
    (pod(), _meta(name="web_1"), [f'metadata.name: Invalid value: "web_1": {DNS_SUBDOMAIN}']),
    (pod(), lambda o: o["metadata"].pop("name"), ["metadata.name: Required value: name or generateName is required"]),
    (pod(), _meta(namespace=""), ["metadata.namespace: Required value"]),
    (pod(), _meta(namespace="Prod"), [f'metadata.namespace: Invalid value: "Prod": {DNS_LABEL}']),
    (namespace(), _meta(namespace="default"), ["metadata.namespace: Forbidden: not allowed on this type"]),
    (pod(), _meta(generateName="Web-"), [f'metadata.generateName: Invalid value: "Web-": {DNS_SUBDOMAIN}']),
    (pod(), _meta(labels={"bad key": "x"}), [f'metadata.labels: Invalid value: "bad key": {KEY_NAME}']),
    (pod(), _meta(labels={"Example.com/app": "x"}),
     [f'metadata.labels: Invalid value: "Example.com/app": prefix part {DNS_SUBDOMAIN}']),
    (pod(), _meta(labels={"/app": "x"}), ['metadata.labels: Invalid value: "/app": prefix part must be non-empty']),
    (pod(), _meta(labels={"app": "-web"}), [f'metadata.labels: Invalid value: "-web": {LABEL_VALUE}']),
    (pod(), _meta(labels={"app": "v" * 64}),
     [f'metadata.labels: Invalid value: "{"v" * 64}": must be no more than 63 bytes']),
    (pod(), _meta(annotations={"a/b/c": "x"}),
     ['metadata.annotations: Invalid value: "a/b/c": a valid label key must consist of alphanumeric characters, '
      "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
      "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS "
      "subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
    (pod(), _meta(annotations={"x": "v" * (256 * 1024)}),
     ["metadata.annotations: Too long: may not be more than 262144 bytes"]),
    (pod(), _meta(finalizers=["foo"]),
     ['metadata.finalizers[0]: Invalid value: "foo": name is neither a standard finalizer name nor is it '
      'fully qualified']),
    (pod(), _meta(ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1"}]),
     ["metadata.ownerReferences[0].uid: Required value: must not be empty"]),
    (pod(), _meta(generation=-1), ["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]),
])
def test_metadata_rules(obj, change, expected):
    assert messages(changed(obj, change)) == expected


def test_metadata_that_passes():
    ok = changed(pod(), _meta(generateName="web-", labels={"example.com/app": "web", "tier": ""},
                              annotations={"Example.com/Owner": "me"}, finalizers=["example.com/cleanup", "orphan"]))
    ok["metadata"].pop("name")
    assert messages(ok) == []


@pytest.mark.parametrize("change, expected", [
    (_meta(name="other"), ['metadata.name: Invalid value: "other": field is immutable']),
    (_meta(namespace="prod"), ['metadata.namespace: Invalid value: "prod": field is immutable']),
    (_meta(uid="u2"), ['metadata.uid: Invalid value: "u2": field is immutable']),
    (_meta(creationTimestamp="2025-01-01T00:00:00Z"),
     ['metadata.creationTimestamp: Invalid value: "2025-01-01T00:00:00Z": field is immutable']),
])
def test_metadata_update_rules(change, expected):
    old = stored(pod())
    assert messages(changed(old, change), old) == expected


def test_update_may_leave_server_fields_out_and_change_labels():
    old = stored(pod())
    assert messages(changed(pod(), _meta(labels={"v": "2"})), old) == []


def test_no_new_finalizers_once_deleting():
    old = changed(stored(pod()), _meta(deletionTimestamp="2024-05-02T00:00:00Z", finalizers=["example.com/a"]))
    new = changed(old, _meta(finalizers=["example.com/a", "example.com/b"]))
    assert messages(new, old) == ['metadata.finalizers: Forbidden: no new finalizers can be added if the object '
                                  'is being deleted, found new finalizers ["example.com/b"]']


# -- prepare ---------------------------------------------------------------------------

def test_prepare_prunes_defaults_and_validates():
    obj = service()
    obj["spec"]["ports"][0]["bogus"] = 1
    ready, warnings = prepare(obj)
    assert warnings == ['unknown field "spec.ports[0].bogus"']
    assert ready["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert "bogus" in obj["spec"]["ports"][0]            # the input is not changed


def test_prepare_raises_invalid_with_every_error():
    bad = changed(service(), lambda o: (o["metadata"].update(name="Web"),
                                        o["spec"]["ports"][0].update(port=70000, targetPort=8080)))
    with pytest.raises(errors.Invalid) as e:
        prepare(bad)
    assert e.value.kind == "Service" and e.value.name == "Web" and len(e.value.errors) == 2
    assert str(e.value) == (f'The Service "Web" is invalid: [metadata.name: Invalid value: "Web": {DNS1035}, '
                            'spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive]')
    assert e.value.status()["reason"] == "Invalid" and e.value.status()["code"] == 422


def test_prepare_refuses_wrong_types_before_defaulting():
    bad = changed(service(), lambda o: o["spec"]["ports"][0].update(port="80"))
    with pytest.raises(errors.Invalid, match=r'^The Service "web" is invalid: spec\.ports\[0\]\.port: Invalid value: '
                                             r'"80": must be an integer$'):
        prepare(bad)


def test_prepare_refuses_an_unknown_kind():
    with pytest.raises(errors.BadRequest, match='no matches for kind "Gadget" in version "v1"'):
        prepare({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}})
    served = r'no matches for kind "Deployment" in version "v1" \(served: apps/v1\)'
    with pytest.raises(errors.BadRequest, match=served):
        prepare({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "d"}})
