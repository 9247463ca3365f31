"""Reading manifests as `kubectl apply -f` does."""

from __future__ import annotations

import io
import json

import pytest

from tulle.cluster import errors, manifest

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}}


def test_yaml_documents_in_order_empty_ones_skipped():
    text = "---\n# only a comment\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\n---\n" \
           "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n...\n"
    assert manifest.load(text) == [POD, SVC]


def test_json_object_and_json_stream():
    assert manifest.load(json.dumps(POD)) == [POD]
    assert manifest.load(json.dumps(POD) + "\n  " + json.dumps(SVC, indent=2)) == [POD, SVC]


def test_bytes_with_a_byte_order_mark():
    assert manifest.load(b"\xef\xbb\xbfapiVersion: v1\nkind: Pod\nmetadata: {name: a}\n") == [POD]


def test_a_list_is_expanded():
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [POD, SVC]})
    assert manifest.load(text) == [POD, SVC]
    assert manifest.load("apiVersion: v1\nkind: List\nitems: []\n") == []


def test_a_typed_list_lends_its_items_kind_and_api_version():
    text = ("apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: b}\n"
            "- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n")
    assert manifest.load(text) == [SVC, POD]


def test_yaml_is_read_as_kubectl_converts_it_to_json():
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels:\n    built: 2024-05-01\n    1: one\n" \
           "  annotations:\n    at: 2024-05-01T10:00:00Z\n"
    [obj] = manifest.load(text)
    assert obj["metadata"]["labels"] == {"built": "2024-05-01", "1": "one"}
    assert obj["metadata"]["annotations"] == {"at": "2024-05-01T10:00:00Z"}


@pytest.mark.parametrize("text, message", [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: x}\n",
     "error parsing web.yaml: document 2: Object 'Kind' is missing in "
     '\'{"apiVersion":"v1","metadata":{"name":"x"}}\''),
    ("kind: Pod\nmetadata: {name: x}\n",
     "error parsing web.yaml: document 1: Object 'apiVersion' is missing in "
     '\'{"kind":"Pod","metadata":{"name":"x"}}\''),
    ("apiVersion: v1\nkind: 3\n", "error parsing web.yaml: document 1: 'kind' must be a string, got 3"),
    ("apiVersion: v1\nkind: Pod\n---\n- a\n- b\n",
     "error parsing web.yaml: document 2: expected an object with apiVersion and kind, got a list"),
    ("just words\n", "error parsing web.yaml: document 1: expected an object with apiVersion and kind, got a str"),
    ("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n- {kind: Pod}\n",
     "error parsing web.yaml: document 1: items[1]: Object 'apiVersion' is missing in '{\"kind\":\"Pod\"}'"),
    ("apiVersion: v1\nkind: List\nitems: {a: 1}\n",
     'error parsing web.yaml: document 1: items must be a list, got {"a":1}'),
    ('{"apiVersion": "v1", "kind": "Pod"}\n{"apiVersion": }',
     "error parsing web.yaml: document 2: json: line 2: Expecting value"),
])
def test_what_cannot_be_read_is_bad_request_naming_source_and_document(text, message):
    with pytest.raises(errors.BadRequest) as e:
        manifest.load(text, "web.yaml")
    assert str(e.value) == message and e.value.code == 400


def test_a_yaml_syntax_error_names_document_and_line():
    with pytest.raises(errors.BadRequest) as e:
        manifest.load("apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\n  metadata: x\n", "web.yaml")
    assert str(e.value).startswith("error parsing web.yaml: document 2: error converting YAML to JSON: yaml: line 6: "
                                   "mapping values are not allowed")    # "... in this context" (libyaml) or "here"


def test_a_yaml_flow_mapping_is_not_mistaken_for_json():
    assert manifest.load("{apiVersion: v1, kind: Pod, metadata: {name: a}}") == [POD]


def test_not_utf8():
    with pytest.raises(errors.BadRequest, match=r"error parsing x.yaml: not UTF-8 text"):
        manifest.load(b"kind: \xff\n", "x.yaml")


def test_load_file_path_directory_and_stdin(tmp_path, monkeypatch):
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: b}\n")
    (tmp_path / "a.json").write_text(json.dumps(POD))
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert manifest.load_file(str(tmp_path / "b.yaml")) == [SVC]
    assert manifest.load_file(str(tmp_path)) == [POD, SVC]            # by file name, .txt ignored
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(SVC).encode())))
    assert manifest.load_file("-") == [SVC]


def test_load_file_errors_name_the_file(tmp_path):
    with pytest.raises(errors.BadRequest, match=r'the path ".*nope.yaml" does not exist'):
        manifest.load_file(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("kind: Pod\n")
    with pytest.raises(errors.BadRequest, match=r"error parsing .*bad.yaml: document 1: Object 'apiVersion'"):
        manifest.load_file(str(tmp_path / "bad.yaml"))
