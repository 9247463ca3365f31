"""The runtime's GC is libcni's: DEL of every cached attachment that is not valid (with its
cached result, args and capabilities), then GC of each plugin; it keeps going past errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.unit.cni.test_runtime import ATT, CONFLIST, calls, rt  # noqa: F401 - rt is a fixture
from tulle.cni.errors import CNIError


def test_gc_dels_stale_cached_attachments_first(rt):  # noqa: F811
    other = dataclasses.replace(ATT, container_id="c2", args=[("K8S_POD_NAME", "b")])
    rt.add(CONFLIST, ATT)
    rt.add(CONFLIST, other)
    assert sorted(a.container_id for a in rt.cached_attachments(CONFLIST)) == ["c1", "c2"]
    assert rt.cached_attachments({**CONFLIST, "name": "othernet"}) == []
    n = len(calls(rt))
    rt.gc(CONFLIST, [("c1", "eth0")])
    made = calls(rt)[n:]
    assert [(c["type"], e.split("CNI_COMMAND=")[1].split()[0]) for c, e in made] == \
        [("two", "DEL"), ("one", "DEL"), ("one", "GC"), ("two", "GC")]
    (del2, env2), _ = made[0], made[1]
    assert "CNI_CONTAINERID=c2" in env2 and "CNI_NETNS=/run/netns/x" in env2 and "CNI_ARGS=K8S_POD_NAME=b" in env2
    assert del2["prevResult"]["seen"] == ["one", "two"]
    assert del2["runtimeConfig"] == {"portMappings": ATT.capability_args["portMappings"]}
    assert [a.container_id for a in rt.cached_attachments(CONFLIST)] == ["c1"]


def test_gc_reads_result_only_caches_and_goes_on_past_errors(rt, tmp_path):  # noqa: F811
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "net-old-eth0").write_text(json.dumps({"cniVersion": "1.0.0", "ips": []}))
    assert rt.cached_attachments(CONFLIST) == []                 # an older cache names no attachment
    assert rt._cache_read(CONFLIST, dataclasses.replace(ATT, container_id="old")) == {"cniVersion": "1.0.0", "ips": []}
    broken = {**CONFLIST, "plugins": [{"type": "missing"}, *CONFLIST["plugins"]]}
    with pytest.raises(CNIError, match="failed to find plugin 'missing'"):
        rt.gc(broken, [])
    assert [c["type"] for c, _ in calls(rt)] == ["one", "two"]  # the others were still collected
